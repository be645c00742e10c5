//! Bulk retry and bulk delete of the history against the real daemon:
//! `POST /api/v1/tasks/retry` and `DELETE /api/v1/tasks?status=...` act on
//! the tasks a filter shows, newest first, at most `limit`.

mod common;

use common::Daemon;
use serde_json::{json, Value};

/// A daemon whose pool runs nothing, with tasks for `targets` (ids from 1,
/// in order) canceled while queued: the failed list.
fn with_canceled(dir: &std::path::Path, targets: &[&str]) -> Daemon {
    let daemon = Daemon::start(dir, &[]);
    let (status, body) = daemon.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200, "{body}");
    for target in targets {
        let (status, body) = daemon.call(
            "POST",
            "/api/v1/tasks",
            Some(json!({"kind": "test", "target": target})),
        );
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_u64().unwrap();
        let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
        assert_eq!(
            (status, &body["state"]),
            (202, &json!("canceled")),
            "{body}"
        );
    }
    daemon
}

fn ids(list: &Value, key: &str) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t[key].as_u64().unwrap())
        .collect()
}

fn list(daemon: &Daemon, query: &str) -> Value {
    let (status, body) = daemon.call("GET", &format!("/api/v1/tasks?{query}"), None);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn bulk_retry_requests_the_failed_tasks_a_filter_shows_again() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = with_canceled(dir.path(), &["asn:1", "asn:2", "country:DE"]);

    let (status, body) = daemon.call("POST", "/api/v1/tasks/retry?target=asn:", None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["matched"], 2, "{body}");
    assert_eq!(
        ids(&body["tasks"], "retry_of"),
        [2, 1],
        "newest first: {body}"
    );
    assert!(
        body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["outcome"] == "queued"),
        "{body}"
    );
    let pending = list(&daemon, "status=pending");
    assert_eq!(pending["total"], 2, "{pending}");
    for task in pending["tasks"].as_array().unwrap() {
        assert_eq!(task["trigger"], "operator", "{task}");
        assert!(task["name"].as_str().unwrap().starts_with("test asn:"));
    }
    let retried: Vec<u64> = ids(&pending["tasks"], "retry_of");
    assert_eq!(retried, [1, 2], "{pending}");

    // `limit` bounds it; again, the retries merge into the pending ones.
    let (status, body) = daemon.call("POST", "/api/v1/tasks/retry?limit=1", None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["matched"], ids(&body["tasks"], "retry_of")),
        (&json!(3), vec![3]),
        "{body}"
    );
    let (_, body) = daemon.call("POST", "/api/v1/tasks/retry?target=asn:2", None);
    assert_eq!(body["tasks"][0]["outcome"], "merged", "{body}");
    let (status, body) = daemon.call("POST", "/api/v1/tasks/retry?kind=nope", None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"matched": 0, "tasks": []}));

    for (query, parameter) in [
        ("status=finished", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
    ] {
        let (status, body) = daemon.call("POST", &format!("/api/v1/tasks/retry?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        assert_eq!(body["error"]["parameter"], parameter, "{body}");
    }
}

#[test]
fn bulk_delete_removes_the_tasks_a_filter_shows_from_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = with_canceled(dir.path(), &["asn:1", "asn:2", "country:DE", "asn:3"]);

    let (status, body) = daemon.call(
        "DELETE",
        "/api/v1/tasks?status=failed&target=asn:&limit=2",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"matched": 3, "deleted": [4, 2]}));
    let failed = list(&daemon, "status=failed");
    assert_eq!(ids(&failed["tasks"], "id"), [3, 1], "{failed}");
    for id in [4, 2] {
        let (status, _) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
        assert_eq!(status, 404);
    }

    for (query, why) in [
        ("", "is required"),
        ("status=pending", "canceled one by one"),
        ("status=nope", "not one of failed, finished"),
    ] {
        let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["parameter"], "status", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    // Pending tasks are never touched.
    let (status, body) = daemon.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"kind": "test", "target": "asn:9"})),
    );
    assert_eq!(status, 202, "{body}");
    let (_, body) = daemon.call("DELETE", "/api/v1/tasks?status=failed", None);
    assert_eq!(body, json!({"matched": 2, "deleted": [3, 1]}));
    assert_eq!(list(&daemon, "status=pending")["total"], 1);
    assert_eq!(list(&daemon, "status=failed")["total"], 0);
}

#[test]
fn bulk_operations_need_the_operate_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        "tokens:\n  - name: viewer\n    token: read-token-0123456789abcdef\n    role: read\n",
    )
    .unwrap();
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let read = Some("read-token-0123456789abcdef");
    for (method, path) in [
        ("POST", "/api/v1/tasks/retry"),
        ("DELETE", "/api/v1/tasks?status=failed"),
    ] {
        let (status, body) = daemon.call_as(read, method, path, None);
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
}
