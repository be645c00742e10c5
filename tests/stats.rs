//! `GET /api/v1/stats` of the real daemon: task ends per bucket, per kind
//! and pool, with queue wait and run time percentiles, for a read token;
//! a bad `window` is a 400 naming the parameter.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{json, Value};

const READ: &str = "stats-read-token-0123456789abcdef";
const OPERATE: &str = "stats-operate-token-0123456789abcdef";

/// A daemon with the `test` kind, a command kind `fail` that exits 3, an
/// operate token and a read token.
fn start(dir: &Path) -> Daemon {
    let fail = dir.join("fail.sh");
    std::fs::write(&fail, "#!/bin/sh\necho 'broken on purpose' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fail, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("groundcrew.yaml");
    std::fs::write(
        &config,
        format!(
            "pools:\n  background: 2\ntokens:\n  - name: ops\n    token: {OPERATE}\n    role: operate\n  - name: viewer\n    token: {READ}\n    role: read\nkinds:\n  - name: fail\n    command: [{}]\n",
            fail.display()
        ),
    )
    .unwrap();
    let data = dir.join("data");
    Daemon::start(&data, &["--config", config.to_str().unwrap()])
}

fn submit(daemon: &Daemon, kind: &str, target: &str, params: Value) -> u64 {
    let (status, body) = daemon.call_as(
        Some(OPERATE),
        "POST",
        "/api/v1/tasks",
        Some(json!({"kind": kind, "target": target, "params": params})),
    );
    assert_eq!(status, 202, "{body}");
    body["id"].as_u64().unwrap()
}

fn wait_task(daemon: &Daemon, id: u64, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, task) = daemon.call_as(Some(OPERATE), "GET", &format!("/api/v1/tasks/{id}"), None);
        if cond(&task) {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} not {what}: {task:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stats(daemon: &Daemon, query: &str) -> (u16, Value) {
    daemon.call_as(Some(READ), "GET", &format!("/api/v1/stats{query}"), None)
}

fn sum(buckets: &Value, field: &str) -> u64 {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[field].as_u64().unwrap())
        .sum()
}

fn series<'a>(stats: &'a Value, kind: &str) -> &'a Value {
    stats["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no series for {kind}: {stats:#}"))
}

#[test]
fn stats_count_each_end_by_kind_with_its_times() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());

    let (status, empty) = stats(&daemon, "");
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["window"], "1h");
    assert_eq!(empty["bucket_seconds"], 60);
    assert_eq!(empty["total"].as_array().unwrap().len(), 60);
    assert_eq!(empty["series"], json!([]));

    let quick = [
        submit(
            &daemon,
            "test",
            "asn:1",
            json!({"times": 1, "round_ms": 60}),
        ),
        submit(
            &daemon,
            "test",
            "asn:2",
            json!({"times": 1, "round_ms": 60}),
        ),
    ];
    let failing = submit(&daemon, "fail", "all", Value::Null);
    for id in quick.into_iter().chain([failing]) {
        wait_task(&daemon, id, "ended", |t| {
            matches!(t["state"].as_str(), Some("succeeded" | "failed"))
        });
    }
    let long = submit(
        &daemon,
        "test",
        "asn:3",
        json!({"times": 600, "round_ms": 100}),
    );
    wait_task(&daemon, long, "running", |t| t["state"] == "running");
    let (status, body) = daemon.call_as(
        Some(OPERATE),
        "DELETE",
        &format!("/api/v1/tasks/{long}"),
        None,
    );
    assert!(status < 300, "{status} {body}");
    wait_task(&daemon, long, "canceled", |t| t["state"] == "canceled");

    let (status, hour) = stats(&daemon, "?window=1h");
    assert_eq!(status, 200, "{hour}");
    let total = &hour["total"];
    assert_eq!(
        (
            sum(total, "succeeded"),
            sum(total, "failed"),
            sum(total, "canceled")
        ),
        (2, 1, 1),
        "{hour:#}"
    );
    let test = series(&hour, "test");
    assert_eq!(test["pool"], "background");
    assert_eq!(sum(&test["buckets"], "succeeded"), 2);
    assert_eq!(sum(&test["buckets"], "canceled"), 1);
    assert_eq!(sum(&series(&hour, "fail")["buckets"], "failed"), 1);

    // The two quick runs took a 60 ms round each (the canceled one ran
    // longer); every end ran, so each has a queue wait too. Percentiles
    // come from histogram bins, within 9 % of the exact value.
    let timed: Vec<&Value> = test["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| !b["duration"].is_null())
        .collect();
    let count: u64 = timed
        .iter()
        .map(|b| b["duration"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(count, 3, "{test:#}");
    for b in &timed {
        assert!(
            b["duration"]["p50"].as_f64().unwrap() >= 0.06 * 0.91,
            "{b:#}"
        );
        assert_eq!(b["queue_wait"]["count"], b["duration"]["count"], "{b:#}");
        assert!(b["duration"]["p95"].as_f64() >= b["duration"]["p50"].as_f64());
    }

    let (status, day) = stats(&daemon, "?window=24h");
    assert_eq!(status, 200, "{day}");
    assert_eq!(day["bucket_seconds"], 900);
    assert_eq!(day["total"].as_array().unwrap().len(), 96);
    assert_eq!(sum(&day["total"], "succeeded"), 2);
}

#[test]
fn a_window_other_than_1h_or_24h_is_a_400_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    for query in ["?window=7d", "?window=", "?window=1H"] {
        let (status, body) = stats(&daemon, query);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        assert_eq!(body["error"]["parameter"], "window", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1h, 24h"),
            "{body}"
        );
    }
    let (status, body) = daemon.call_as(None, "GET", "/api/v1/stats", None);
    assert_eq!(status, 401, "{body}");
}
