//! A publication that fails on I/O (here: the class directory is a file)
//! is retried with backoff, and succeeds once the directory is usable.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use groundcrew::feed::generate_ip2asn;
use serde_json::{json, Value};

/// The operator's task for `target`, active or finished.
fn task_of(d: &Daemon, target: &str) -> Option<Value> {
    [
        "/api/v1/tasks?limit=1000",
        "/api/v1/tasks?status=finished&limit=1000",
        "/api/v1/tasks?status=failed&limit=1000",
    ]
    .iter()
    .find_map(|path| {
        let (_, page) = d.call("GET", path, None);
        page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == target && t["trigger"] == "operator")
            .cloned()
    })
}

fn wait_for(d: &Daemon, target: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = task_of(d, target).filter(|t| cond(t)) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            task_of(d, target)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A daemon with one feed whose artifacts are all published.
fn start_all_ok() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    std::fs::write(dir.path().join("feeds/geo.tsv"), generate_ip2asn(300, 7)).unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        "feeds:\n  - name: geo\n    path: feeds/geo.tsv\n    format: ip2asn\nfeed_poll_ms: 60000\n",
    )
    .unwrap();
    let d = Daemon::start_with_feeds(dir.path(), &["--config", config.to_str().unwrap()]);
    d.wait_artifacts_ok(60, 1);
    (dir, d)
}

#[test]
fn an_io_error_in_publishing_is_retried_until_it_succeeds() {
    let (dir, d) = start_all_ok();
    let (_, asns) = d.call("GET", "/api/v1/entities?limit=10000", None);
    let entity = asns["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap().to_owned())
        .find(|e| e.starts_with("asn:"))
        .unwrap();
    // The class directory becomes a file: every write under it fails.
    let class = dir.path().join("artifacts/asn");
    std::fs::remove_dir_all(&class).unwrap();
    std::fs::write(&class, "not a directory").unwrap();

    let (status, reply) = d.call(
        "POST",
        "/api/v1/entities/rebuild",
        Some(json!({"entities": [entity]})),
    );
    assert_eq!(status, 202, "{reply}");
    let retried = wait_for(&d, &entity, "the failed publication is not retried", |t| {
        t["attempts"].as_u64() >= Some(2) || t["state"] == "failed"
    });
    assert_ne!(
        retried["state"], "failed",
        "an I/O error failed the task: {retried}"
    );

    std::fs::remove_file(&class).unwrap();
    std::fs::create_dir(&class).unwrap();
    let done = wait_for(&d, &entity, "the retried publication never succeeds", |t| {
        t["state"] == "succeeded" || t["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done}");
}

/// A full rebuild goes on past the entities it cannot publish: the others
/// are made current, and it ends failed with the count and the first errors.
#[test]
fn a_full_rebuild_goes_on_past_failed_entities_and_names_them() {
    let (dir, d) = start_all_ok();
    // A country artifact to repair, and every ASN write failing.
    let (_, list) = d.call("GET", "/api/v1/entities?limit=10000", None);
    let country = list["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap().to_owned())
        .find(|e| e.starts_with("country:"))
        .unwrap();
    let country_file = dir
        .path()
        .join("artifacts/country")
        .join(format!("{}.txt", country.trim_start_matches("country:")));
    std::fs::remove_file(&country_file).unwrap();
    let class = dir.path().join("artifacts/asn");
    std::fs::remove_dir_all(&class).unwrap();
    std::fs::write(&class, "not a directory").unwrap();

    let (status, reply) = d.call("POST", "/api/v1/rebuild", Some(json!({"all": true})));
    assert_eq!(status, 202, "{reply}");
    let done = wait_for(&d, "all", "the full rebuild never ends", |t| {
        t["state"] == "succeeded" || t["state"] == "failed"
    });
    assert_eq!(done["state"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains(" entities failed; first: asn:"),
        "the error names the count and the first failed entities: {error}"
    );
    assert!(
        country_file.exists(),
        "the entities after the first failure were not published: {done}"
    );
}
