//! Command kinds against the real daemon binary: small `/bin/sh` scripts
//! configured under `kinds` report, publish, fail, time out and are
//! canceled, and their process groups do not outlive their tasks.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{json, Value};

/// Writes an executable `/bin/sh` script named `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Starts the daemon with `kinds` (YAML list items) in its config file.
fn start(dir: &Path, kinds: &str) -> Daemon {
    let config = dir.join("groundcrew.yaml");
    std::fs::write(&config, format!("kinds:\n{kinds}")).unwrap();
    let data = dir.join("data");
    Daemon::start(&data, &["--config", config.to_str().unwrap()])
}

fn submit(daemon: &Daemon, kind: &str, target: &str, params: Value) -> u64 {
    let (status, body) = daemon.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"kind": kind, "target": target, "params": params})),
    );
    assert_eq!(status, 202, "{body}");
    body["id"].as_u64().unwrap()
}

fn task(daemon: &Daemon, id: u64) -> Value {
    let (status, body) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the task until `cond` holds; panics after `secs`.
fn wait_task(daemon: &Daemon, id: u64, secs: u64, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = task(daemon, id);
        if cond(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} still {t:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_ended(daemon: &Daemon, id: u64, secs: u64) -> Value {
    wait_task(daemon, id, secs, |t| {
        !matches!(
            t["state"].as_str(),
            Some("queued" | "running" | "canceling")
        )
    })
}

/// Whether `pid` is gone: no such process, or a zombie nobody reaped yet
/// (it has exited; only its table entry is left).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Reads the pid a script wrote, waiting for the file to appear.
fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} not written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_gone_soon(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} of the command's group still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn command_reports_publishes_and_returns_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let geo = script(
        dir.path(),
        "geo.sh",
        r#"params=$(cat)
flag=$1
shift
echo '{"stage": "fetching"}'
echo '{"progress": [1, 2]}'
echo "fetching $1" >&2
printf 'ranges of %s\n' "$1" > out.txt

echo "{\"publish\": {\"entity\": \"$1\", \"path\": \"out.txt\"}}"
echo '{"progress": [2, 2]}'
echo "{\"result\": {\"target\": \"$1\", \"params\": $params, \"id\": \"$GROUNDCREW_TASK_ID\", \"attempt\": \"$GROUNDCREW_ATTEMPT\", \"env_target\": \"$GROUNDCREW_TARGET\", \"mode\": \"$MODE\", \"flag\": \"$flag\", \"rest\": $#}}"
"#,
    );
    let daemon = start(
        dir.path(),
        &format!(
            "  - name: geo\n    command: [{}, --fast]\n    env: {{MODE: quick}}\n",
            geo.display()
        ),
    );
    let id = submit(&daemon, "geo", "country:DE", json!({"depth": 2}));
    let t = wait_ended(&daemon, id, 20);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    let result = &t["result"];
    assert_eq!(result["target"], "country:DE");
    assert_eq!(result["params"], json!({"depth": 2}));
    assert_eq!(result["id"], id.to_string());
    assert_eq!(result["attempt"], "1");
    assert_eq!(result["env_target"], "country:DE");
    assert_eq!(result["mode"], "quick");
    assert_eq!(result["flag"], "--fast", "configured arguments come first");
    assert_eq!(result["rest"], 1, "the target is the last argument");
    assert_eq!(t["stage"], "fetching");
    assert_eq!(t["progress"], json!({"done": 2, "total": 2}));
    let artifact = daemon.data_dir.join("artifacts/country/DE.txt");
    assert_eq!(
        std::fs::read_to_string(&artifact).unwrap(),
        "ranges of country:DE\n"
    );
}

#[test]
fn nonzero_exit_fails_with_the_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(
        dir.path(),
        "fail.sh",
        "echo 'starting' >&2\necho 'disk full: /var/x' >&2\nexit 3\n",
    );
    let daemon = start(
        dir.path(),
        &format!("  - name: fail\n    command: [{}]\n", fail.display()),
    );
    let id = submit(&daemon, "fail", "all", Value::Null);
    let t = wait_ended(&daemon, id, 20);
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 1, "status 3 is not retried: {t:#}");
    let error = t["error"].as_str().unwrap();
    assert!(
        error.starts_with("command exited with status 3: starting\ndisk full: /var/x"),
        "{error}"
    );
}

#[test]
fn exit_75_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = script(
        dir.path(),
        "flaky.sh",
        "if [ \"$GROUNDCREW_ATTEMPT\" = 1 ]; then echo busy >&2; exit 75; fi\necho '{\"result\": \"second\"}'\n",
    );
    let daemon = start(
        dir.path(),
        &format!(
            "  - name: flaky\n    command: [{}]\n    max_attempts: 2\n",
            flaky.display()
        ),
    );
    let id = submit(&daemon, "flaky", "all", Value::Null);
    let t = wait_task(&daemon, id, 30, |t| {
        t["state"] == "succeeded" || t["state"] == "failed"
    });
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert_eq!(t["attempts"], 2);
    assert_eq!(t["result"], "second");
    assert!(
        t["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("status 75: busy"),
        "{t:#}"
    );
}

#[test]
fn malformed_line_fails_naming_its_number_and_stops_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let bad = script(
        dir.path(),
        "bad.sh",
        "echo '{\"stage\": \"one\"}'\necho\necho '{\"stagee\": \"two\"}'\nsleep 30\n",
    );
    let daemon = start(
        dir.path(),
        &format!("  - name: bad\n    command: [{}]\n", bad.display()),
    );
    let started = Instant::now();
    let id = submit(&daemon, "bad", "all", Value::Null);
    let t = wait_ended(&daemon, id, 20);
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(
        t["error"],
        r#"command output line 3: unknown key "stagee"; expected stage, progress, publish or result"#
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the sleep was not killed"
    );
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let slow = script(
        dir.path(),
        "slow.sh",
        "sleep 300 &\necho $! > \"$PID_FILE\"\nsleep 30\n",
    );
    let daemon = start(
        dir.path(),
        &format!(
            "  - name: slow\n    command: [{}]\n    timeout_s: 1\n    max_attempts: 1\n    env: {{PID_FILE: {}}}\n",
            slow.display(),
            pid_file.display()
        ),
    );
    let id = submit(&daemon, "slow", "all", Value::Null);
    let pid = read_pid(&pid_file);
    let t = wait_ended(&daemon, id, 20);
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["error"], "command timed out after 1 s");
    assert_gone_soon(pid);
}

#[test]
fn cancel_of_a_running_command_kills_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let long = script(
        dir.path(),
        "long.sh",
        "sleep 300 &\necho $! > \"$PID_FILE\"\necho '{\"stage\": \"working\"}'\nsleep 300\n",
    );
    let daemon = start(
        dir.path(),
        &format!(
            "  - name: long\n    command: [{}]\n    env: {{PID_FILE: {}}}\n",
            long.display(),
            pid_file.display()
        ),
    );
    let id = submit(&daemon, "long", "all", Value::Null);
    let pid = read_pid(&pid_file);
    wait_task(&daemon, id, 20, |t| t["stage"] == "working");
    let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(status, 202, "{body}");
    let t = wait_ended(&daemon, id, 20);
    assert_eq!(t["state"], "canceled", "{t:#}");
    assert_gone_soon(pid);
}
