//! Noticing feed files change: each file feed's size and modification time
//! are polled; a change that has held still for one interval (so that a
//! file being written in place is not read half-way) triggers a
//! `feed_update` of that feed. Polling rather than inotify: it works the
//! same on every filesystem, including network mounts, and for files
//! replaced by rename.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use groundcrew_actors::Trigger;

use super::feeds::{FeedOrigin, Feeds};

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls every `interval` until the future is dropped.
pub async fn watch_feeds(feeds: Arc<Feeds>, interval: Duration) {
    // What each feed looked like when last read, and the last poll's view.
    let mut read: HashMap<String, Stamp> = HashMap::new();
    let mut last: HashMap<String, Stamp> = HashMap::new();
    for source in feeds.configured() {
        if let FeedOrigin::File(path) = &source.origin {
            read.insert(source.name.clone(), stamp(path));
        }
    }
    loop {
        tokio::time::sleep(interval).await;
        for source in feeds.configured() {
            let FeedOrigin::File(path) = &source.origin else {
                continue;
            };
            let now = stamp(path);
            let steady = last.insert(source.name.clone(), now) == Some(now);
            let known = read.entry(source.name.clone()).or_insert(now);
            if now.is_some() && now != *known && steady {
                *known = now;
                if let Err(e) = feeds.update(&source.name, Trigger::FeedUpdate).await {
                    tracing::warn!(feed = %source.name, error = %super::feeds::error_chain(&e), "feed update failed");
                }
            }
        }
    }
}
