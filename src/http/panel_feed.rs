//! One panel snapshot shared by every event stream.
//!
//! The first open stream starts a poller that asks the supervisor for the
//! panel every [`POLL`] and publishes its JSON through a
//! `tokio::sync::watch` channel only when it changed; every stream
//! subscribes to that channel. So the supervisor builds one snapshot per
//! poll however many streams are open, and each change is encoded once.
//! The poller stops once the last stream has closed. At most
//! [`MAX_STREAMS`] streams are open at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use groundcrew_actors::{PanelSnapshot, Supervisor};
use tokio::sync::watch;

/// How often the poller asks for the panel.
pub(super) const POLL: Duration = Duration::from_millis(250);
/// Most pending tasks listed per event; `pending_total` counts them all.
pub(super) const PENDING_LIMIT: usize = 200;
/// Most event streams open at once; beyond, `503 too_many_streams`.
pub(super) const MAX_STREAMS: usize = 256;

/// The shared feed; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PanelFeed {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The channel while a poller runs.
    channel: Mutex<Option<watch::Receiver<Arc<str>>>>,
    open: AtomicUsize,
}

/// One stream's place in the feed: released when dropped.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) panel: watch::Receiver<Arc<str>>,
    inner: Arc<Inner>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a stream could not subscribe.
#[derive(Debug)]
pub(super) enum SubscribeError {
    /// [`MAX_STREAMS`] are open.
    Full,
    /// The supervisor did not answer.
    Gone,
}

impl PanelFeed {
    /// Subscribes a new stream; the receiver holds the current panel.
    pub(super) async fn subscribe(
        &self,
        supervisor: &Addr<Supervisor>,
    ) -> Result<Subscription, SubscribeError> {
        if self.inner.open.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
            self.inner.open.fetch_sub(1, Ordering::SeqCst);
            return Err(SubscribeError::Full);
        }
        let mut holder = Subscription {
            panel: watch::channel(Arc::from("")).1,
            inner: Arc::clone(&self.inner),
        };
        if let Some(rx) = self.inner.lock().clone() {
            holder.panel = rx;
            return Ok(holder);
        }
        // No poller: take the first snapshot here (so that a gone
        // supervisor shows as an error), then start one.
        let first = snapshot(supervisor).await.ok_or(SubscribeError::Gone)?;
        let mut channel = self.inner.lock();
        if let Some(rx) = channel.as_ref() {
            // Another stream started one meanwhile.
            holder.panel = rx.clone();
            return Ok(holder);
        }
        let (tx, rx) = watch::channel(first);
        *channel = Some(rx.clone());
        actix::spawn(poll(tx, supervisor.clone(), Arc::clone(&self.inner)));
        holder.panel = rx;
        Ok(holder)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<watch::Receiver<Arc<str>>>> {
        self.channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Publishes the panel while a stream is open. It ends (and clears the
/// feed's channel) under the feed's lock once none is: a stream counts
/// itself open before it looks for the channel, so none is left on a
/// channel whose poller ended.
async fn poll(tx: watch::Sender<Arc<str>>, supervisor: Addr<Supervisor>, inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let mut channel = inner.lock();
            if inner.open.load(Ordering::SeqCst) == 0 {
                *channel = None;
                return;
            }
        }
        let Some(panel) = snapshot(&supervisor).await else {
            inner.lock().take();
            return;
        };
        tx.send_if_modified(|last| {
            let changed = **last != *panel;
            if changed {
                *last = panel;
            }
            changed
        });
    }
}

/// The panel as compact JSON: one line, as an SSE `data` field needs.
async fn snapshot(supervisor: &Addr<Supervisor>) -> Option<Arc<str>> {
    let panel = supervisor
        .send(PanelSnapshot {
            pending_limit: PENDING_LIMIT,
        })
        .await
        .ok()?;
    serde_json::to_string(&panel).ok().map(Arc::from)
}
