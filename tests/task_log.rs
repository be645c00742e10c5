//! A task's own log against the real daemon binary: a command's stderr and
//! the daemon's events about the task come back from
//! `GET /api/v1/tasks/{id}/log`, oldest first, and survive a restart.

mod common;

use common::pg::PgCluster;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{json, Value};

/// Starts the daemon with one command kind `noisy` running `body` in
/// `/bin/sh`.
fn start(dir: &Path, body: &str) -> Daemon {
    start_on(dir, body, &[("GROUNDCREW_FEEDS", "[]")])
}

/// Like [`start`], with environment variables (a store).
fn start_on(dir: &Path, body: &str, env: &[(&str, &str)]) -> Daemon {
    let script = dir.join("noisy.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("groundcrew.yaml");
    let kinds = format!(
        "kinds:\n  - name: noisy\n    command: [{}]\n",
        script.display()
    );
    std::fs::write(&config, kinds).unwrap();
    let args = ["--config", config.to_str().unwrap()];
    Daemon::start_with_env(&dir.join("data"), &args, env)
}

fn submit_noisy(daemon: &Daemon) -> u64 {
    let (status, body) = daemon.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"kind": "noisy", "target": "all"})),
    );
    assert_eq!(status, 202, "{body}");
    body["id"].as_u64().unwrap()
}

fn log(daemon: &Daemon, id: u64) -> Vec<Value> {
    let (status, body) = daemon.call("GET", &format!("/api/v1/tasks/{id}/log"), None);
    assert_eq!(status, 200, "{body}");
    body["lines"].as_array().unwrap().clone()
}

/// Polls the task's log until `cond` holds; panics after `secs`.
fn wait_log(daemon: &Daemon, id: u64, secs: u64, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let lines = log(daemon, id);
        if cond(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "task {id} log: {lines:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn messages<'a>(lines: &'a [Value], source: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l["source"] == source)
        .map(|l| l["message"].as_str().unwrap())
        .collect()
}

fn ended(lines: &[Value]) -> bool {
    lines.iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("task ended"))
    })
}

#[test]
fn a_commands_stderr_and_its_end_are_in_the_task_log_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(
        dir.path(),
        "echo 'fetching feed' >&2\necho 'disk full: /var/x' >&2\nexit 3\n",
    );
    let id = submit_noisy(&daemon);
    // The daemon logs at `warn` (tests' default); the task log still takes
    // `info`.
    let lines = wait_log(&daemon, id, 20, ended);
    assert_eq!(
        messages(&lines, "stderr"),
        ["fetching feed", "disk full: /var/x"],
        "{lines:#?}"
    );
    for line in &lines {
        assert_eq!(
            line.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["level", "message", "source", "time"],
            "{line}"
        );
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    let end = lines
        .iter()
        .find(|l| ended(std::slice::from_ref(l)))
        .unwrap();
    assert_eq!(end["level"], "info");
    assert!(
        end["message"].as_str().unwrap().contains("state=failed"),
        "{end}"
    );
    let stderr_at = lines.iter().position(|l| l["source"] == "stderr").unwrap();
    let end_at = lines
        .iter()
        .position(|l| ended(std::slice::from_ref(l)))
        .unwrap();
    assert!(stderr_at < end_at, "oldest first: {lines:#?}");

    let data = daemon.data_dir.clone();
    assert!(daemon.signal_and_wait(libc::SIGTERM).success());
    let config = dir.path().join("groundcrew.yaml");
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    assert_eq!(log(&daemon, id), lines, "the log survives a restart");
}

#[test]
fn the_log_of_an_unknown_task_is_a_json_404_and_a_bad_id_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), "exit 0\n");
    let (status, body) = daemon.call("GET", "/api/v1/tasks/987654/log", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "task_not_found", "{body}");
    let (status, body) = daemon.call("GET", "/api/v1/tasks/nope/log", None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
    let (status, body) = daemon.call_as(None, "GET", "/api/v1/tasks/1/log", None);
    assert_eq!(status, 401, "{body}");
}

#[test]
fn lines_logged_just_before_a_shutdown_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), "echo 'last words' >&2\nexit 0\n");
    let id = submit_noisy(&daemon);
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.call("GET", &format!("/api/v1/tasks/{id}"), None).1["state"] != "succeeded" {
        assert!(Instant::now() < deadline, "task {id} did not succeed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // At once: the lines may still wait for the shipper's next append,
    // which the shutdown makes.
    let data = daemon.data_dir.clone();
    assert!(daemon.signal_and_wait(libc::SIGTERM).success());
    let config = dir.path().join("groundcrew.yaml");
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let lines = log(&daemon, id);
    assert_eq!(messages(&lines, "stderr"), ["last words"], "{lines:#?}");
    assert!(ended(&lines), "{lines:#?}");
}

/// On PostgreSQL (the cluster path: the database owns the queue) the log
/// is in the database: a daemon on a fresh data directory reads it.
#[test]
fn on_postgresql_the_log_is_kept_in_the_database() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let env = [
        ("GROUNDCREW_FEEDS", "[]"),
        ("GROUNDCREW_STORE", url.as_str()),
    ];
    let first = tempfile::tempdir().unwrap();
    let daemon = start_on(first.path(), "echo 'from postgres' >&2\nexit 0\n", &env);
    let id = submit_noisy(&daemon);
    let lines = wait_log(&daemon, id, 20, ended);
    assert_eq!(messages(&lines, "stderr"), ["from postgres"], "{lines:#?}");
    assert!(daemon.signal_and_wait(libc::SIGTERM).success());

    let second = tempfile::tempdir().unwrap();
    let daemon = start_on(second.path(), "exit 0\n", &env);
    assert_eq!(log(&daemon, id), lines);
}
