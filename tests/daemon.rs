//! The real `groundcrew` binary end to end: start-up on embedded defaults,
//! auth, configuration reload (API and SIGHUP), refusal of unsafe binds and
//! broken files, and SIGTERM drain.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{binary, Daemon, SIGHUP, SIGTERM};
use serde_json::json;

const OPERATE: &str = "operate-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";

fn config_file(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("groundcrew.yaml");
    std::fs::write(
        &path,
        format!(
            "pools:\n  background: 2\ntokens:\n  - name: ops\n    token: {OPERATE}\n    role: operate\n  - name: viewer\n    token: {READ}\n    role: read\n{extra}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn first_start_generates_a_private_token_and_prints_only_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let token_file = dir.path().join("admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(daemon.token.len(), 64);
    let mut printed = daemon.printed.clone();
    while let Ok(line) = daemon.stdout.recv_timeout(Duration::from_millis(200)) {
        printed.push(line);
    }
    assert!(
        printed
            .iter()
            .any(|l| l.contains(&token_file.display().to_string())),
        "{printed:?}"
    );
    assert!(
        printed.iter().all(|l| !l.contains(&daemon.token)),
        "the token itself was printed"
    );
    let (status, body) = daemon.call("GET", "/healthz", None);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, panel) = daemon.call("GET", "/api/v1/panel", None);
    assert_eq!(status, 200);
    assert_eq!(panel["state"], "idle");
    assert_eq!(
        panel["workers"]["limit"], 2,
        "embedded default worker limit"
    );
}

#[test]
fn tokens_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let daemon = Daemon::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let submit = json!({"kind": "test", "target": "asn:1", "params": {"times": 1, "round_ms": 1}});
    let (status, body) = daemon.call_as(None, "GET", "/api/v1/panel", None);
    assert_eq!((status, body["error"]["code"].is_string()), (401, true));
    let (status, _) = daemon.call_as(Some("wrong-token-0123456789"), "GET", "/api/v1/panel", None);
    assert_eq!(status, 401);
    let (status, _) = daemon.call_as(Some(READ), "GET", "/api/v1/panel", None);
    assert_eq!(status, 200);
    let (status, body) = daemon.call_as(Some(READ), "POST", "/api/v1/tasks", Some(submit.clone()));
    assert_eq!(status, 403, "{body}");
    let (status, body) = daemon.call_as(Some(OPERATE), "POST", "/api/v1/tasks", Some(submit));
    assert_eq!(status, 202, "{body}");
    // No token file is generated when tokens are configured.
    assert!(!dir.path().join("admin.token").exists());
}

#[test]
fn non_loopback_bind_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("non-loopback"), "{stderr}");
}

#[test]
fn broken_config_file_at_start_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(&path, "pools:\n  background: 2\n  fast: 99999\n").unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("g.yaml:3:") && stderr.contains("pools.fast"),
        "{stderr}"
    );
}

#[test]
fn reload_keeps_the_old_config_on_error_and_applies_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let daemon = Daemon::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let limit = |d: &Daemon| {
        d.call_as(Some(OPERATE), "GET", "/api/v1/panel", None).1["workers"]["limit"].as_u64()
    };

    std::fs::write(&config, "pools:\n  background: [oops\n").unwrap();
    let (status, body) = daemon.call_as(Some(OPERATE), "POST", "/api/v1/reload", None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    assert!(body["error"]["line"].as_u64().is_some(), "{body}");
    assert!(
        body["error"]["file"]
            .as_str()
            .unwrap()
            .ends_with("groundcrew.yaml"),
        "{body}"
    );
    assert_eq!(
        limit(&daemon),
        Some(2),
        "the old configuration stays in force"
    );

    config_file(dir.path(), "");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("background: 2", "background: 3"),
    )
    .unwrap();
    let (status, body) = daemon.call_as(Some(OPERATE), "POST", "/api/v1/reload", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(limit(&daemon), Some(3));

    // SIGHUP does the same.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("background: 3", "background: 5"),
    )
    .unwrap();
    daemon.signal(SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while limit(&daemon) != Some(5) {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_running_work_finish_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let body = json!({"kind": "test", "target": "asn:1", "params": {"times": 3, "round_ms": 200}});
    let (status, reply) = daemon.call("POST", "/api/v1/tasks", Some(body));
    assert_eq!(status, 202);
    let id = reply["id"].as_u64().unwrap();
    daemon.wait_panel("task running", 10, |p| {
        p["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    let started = Instant::now();
    let status = daemon.signal_and_wait(SIGTERM);
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let daemon = Daemon::start(dir.path(), &[]);
    let (_, task) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(
        task["state"], "succeeded",
        "the running task finished during the drain: {task}"
    );
}

#[test]
fn sigterm_past_the_drain_timeout_queues_running_work_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(
        &path,
        "shutdown:\n  drain_timeout_s: 1\n  cancel_grace_s: 5\n",
    )
    .unwrap();
    let args = ["--config", path.to_str().unwrap()];
    let daemon = Daemon::start(dir.path(), &args);
    let body =
        json!({"kind": "test", "target": "asn:1", "params": {"times": 100, "round_ms": 100}});
    let id = daemon.call("POST", "/api/v1/tasks", Some(body)).1["id"]
        .as_u64()
        .unwrap();
    daemon.wait_panel("task running", 10, |p| {
        p["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert!(daemon.signal_and_wait(SIGTERM).success());
    let daemon = Daemon::start(dir.path(), &args);
    let (_, task) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert!(
        matches!(
            task["state"].as_str(),
            Some("queued" | "running" | "canceling")
        ),
        "{task}"
    );
    assert!(
        task["errors"].as_array().unwrap().is_empty(),
        "a drain is not a failed attempt: {task}"
    );
    daemon.wait_panel("resumed", 10, |p| {
        p["running"][0]["id"].as_u64() == Some(id)
    });
}

#[test]
fn coalescing_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    // No worker: everything stays queued across the crash.
    std::fs::write(&path, "pools:\n  background: 0\n").unwrap();
    let args = ["--config", path.to_str().unwrap()];
    let daemon = Daemon::start(dir.path(), &args);
    let body =
        json!({"kind": "test", "target": "country:DE", "params": {"times": 1, "round_ms": 1}});
    let (status, first) = daemon.call("POST", "/api/v1/tasks", Some(body.clone()));
    assert_eq!((status, first["outcome"].as_str()), (202, Some("queued")));
    daemon.kill9();
    let daemon = Daemon::start(dir.path(), &args);
    let (status, again) = daemon.call("POST", "/api/v1/tasks", Some(body));
    assert_eq!(status, 202);
    assert_eq!(
        (again["outcome"].as_str(), &again["id"]),
        (Some("merged"), &first["id"]),
        "{again}"
    );
    let panel = daemon.wait_panel("recovered queue", 5, |p| p["pending_total"] == 1);
    assert_eq!(panel["pending"][0]["merged"], 1);
}

/// Raw request with a body that is not JSON or too large.
fn raw_post(d: &Daemon, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}{path}", d.base))
        .header("Authorization", format!("Bearer {}", d.token))
        .header("Content-Type", "application/json")
        .body(body)
        .unwrap();
    let resp = Daemon::agent().run(req).unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.into_body().read_to_string().unwrap()).unwrap(),
    )
}

#[test]
fn the_binary_serves_metrics_openapi_history_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let body = json!({"kind": "test", "target": "asn:1", "params": {"times": 1, "round_ms": 1}});
    let id = daemon.call("POST", "/api/v1/tasks", Some(body)).1["id"]
        .as_u64()
        .unwrap();
    daemon.wait_panel("idle", 10, |p| p["state"] == "idle");

    let metrics = Daemon::agent()
        .get(format!("{}/metrics", daemon.base))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("groundcrew_tasks_finished_total{kind=\"test\",outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    if let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        assert!(
            promtool.wait().unwrap().success(),
            "promtool check metrics failed"
        );
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is required under CI"
        );
    }
    let (status, doc) = daemon.call_as(None, "GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/tasks/{id}"]["delete"].is_object());

    let (status, _) = daemon.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(status, 204, "a finished task is removed from the history");
    let (status, body) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("task_not_found"))
    );

    let (status, body) = raw_post(&daemon, "/api/v1/tasks", b"{not json".to_vec());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (status, body) = raw_post(&daemon, "/api/v1/tasks", vec![b' '; 200_000]);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
}

/// Issue 16: in-process kinds have timeouts too. The built-in `test` kind
/// with `builtin_kinds.test.timeout_s: 1` fails an attempt that runs longer
/// (and retries it), and the pool's grace comes from the long form of
/// `pools`.
#[test]
fn a_builtin_kind_past_its_timeout_fails_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        "pools:\n  background: {limit: 1, cancel_grace_s: 1}\nbuiltin_kinds:\n  test:\n    timeout_s: 1\n",
    )
    .unwrap();
    let daemon = Daemon::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let (status, body) = daemon.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"kind": "test", "target": "asn:1", "params": {"times": 30, "round_ms": 1000}})),
    );
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, t) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
        if let Some(first) = t["errors"].as_array().and_then(|e| e.first()) {
            assert_eq!(first["message"], "timed out after 1 s", "{t:#}");
            assert_eq!(first["attempt"], 1, "{t:#}");
            break;
        }
        assert!(Instant::now() < deadline, "no timeout: {t:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
