//! Every artifact records the feed version it is current for: after a full
//! rebuild, an artifact whose content did not change still names the feed
//! version the rebuild read, not the one it was first written from.

mod common;

use std::time::{Duration, Instant};

use common::{change_one_line, Daemon};
use groundcrew::feed::generate_ip2asn;
use serde_json::{json, Value};

fn wait_idle_all_ok(d: &Daemon, secs: u64) -> Value {
    d.wait_artifacts_ok(secs, 10_000)
}

fn feed_version(d: &Daemon) -> String {
    let (status, body) = d.call("GET", "/api/v1/feeds", None);
    assert_eq!(status, 200, "{body}");
    let feeds = body
        .as_array()
        .or(body["feeds"].as_array())
        .unwrap()
        .clone();
    let geo = feeds.iter().find(|f| f["name"] == "geo").unwrap();
    format!("geo@{}", geo["version"].as_str().unwrap())
}

#[test]
fn full_rebuild_records_the_current_feed_version_on_unchanged_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    let feed = dir.path().join("feeds/geo.tsv");
    let text = generate_ip2asn(2000, 7);
    std::fs::write(&feed, &text).unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        "feeds:\n  - name: geo\n    path: feeds/geo.tsv\n    format: ip2asn\nfeed_poll_ms: 100\n",
    )
    .unwrap();
    let d = Daemon::start_with_feeds(dir.path(), &["--config", config.to_str().unwrap()]);
    wait_idle_all_ok(&d, 60);
    let first = feed_version(&d);

    let tmp = feed.with_extension("tmp");
    std::fs::write(&tmp, change_one_line(&text)).unwrap();
    std::fs::rename(&tmp, &feed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while feed_version(&d) == first {
        assert!(Instant::now() < deadline, "feed change not read");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_idle_all_ok(&d, 60);

    let (status, reply) = d.call("POST", "/api/v1/rebuild", Some(json!({"all": true})));
    assert_eq!(status, 202, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, page) = d.call("GET", "/api/v1/tasks?status=finished&limit=20", None);
        let done = page["tasks"].as_array().unwrap().iter().any(|t| {
            t["target"] == "all" && t["trigger"] == "operator" && t["state"] == "succeeded"
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "rebuild did not finish: {page}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = wait_idle_all_ok(&d, 60);
    let current = feed_version(&d);
    let behind: Vec<&Value> = body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source_version"].as_str() != Some(current.as_str()))
        .collect();
    assert!(
        behind.is_empty(),
        "{} artifacts name an older version than {current}, e.g. {}",
        behind.len(),
        behind[0]
    );
}
