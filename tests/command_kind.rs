//! Command kinds against the real daemon binary: small `/bin/sh` scripts
//! configured under `kinds` report, publish, fail, time out and are
//! canceled, and their process groups do not outlive their tasks.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
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
    assert_eq!(t["error"], "timed out after 1 s");
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

/// Starts the daemon like [`start`], with its log as a channel of lines.
fn start_logging(dir: &Path, kinds: &str, rust_log: &str) -> (Daemon, mpsc::Receiver<String>) {
    let config = dir.join("groundcrew.yaml");
    std::fs::write(&config, format!("kinds:\n{kinds}")).unwrap();
    let data = dir.join("data");
    Daemon::start_logging(&data, &["--config", config.to_str().unwrap()], rust_log)
}

/// `line` without its terminal colours.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Collects log lines (without colours) into `seen` until `done(seen)` holds; panics after
/// `secs`.
fn read_log_until(
    log: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    secs: u64,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => seen.push(plain(&line)),
            Err(_) => panic!("log incomplete after {secs} s: {seen:#?}"),
        }
    }
}

#[test]
fn stdout_line_over_the_limit_fails_as_soon_as_the_limit_is_passed() {
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB without a newline, then the command waits: the line never ends.
    let long = script(
        dir.path(),
        "long_line.sh",
        "head -c 2097152 /dev/zero | tr '\\0' x\nsleep 300\n",
    );
    let daemon = start(
        dir.path(),
        &format!("  - name: long-line\n    command: [{}]\n", long.display()),
    );
    let id = submit(&daemon, "long-line", "all", Value::Null);
    let t = wait_ended(&daemon, id, 30);
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(
        t["error"],
        "command output line 1: line longer than 1048576 bytes"
    );
}

#[test]
fn stage_lines_are_coalesced_and_the_last_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let stages = script(
        dir.path(),
        "stages.sh",
        "i=0\nwhile [ $i -lt 3000 ]; do echo \"{\\\"stage\\\": \\\"s$i\\\"}\"; i=$((i+1)); done\necho '{\"stage\": \"last\"}'\n",
    );
    let (daemon, log) = start_logging(
        dir.path(),
        &format!("  - name: stages\n    command: [{}]\n", stages.display()),
        "warn,groundcrew_actors=debug",
    );
    let started = Instant::now();
    let id = submit(&daemon, "stages", "all", Value::Null);
    let t = wait_ended(&daemon, id, 60);
    let elapsed = started.elapsed();
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert_eq!(t["stage"], "last", "the last stage is never lost");
    // The supervisor logs each stage report it receives (at debug).
    let is_report = |l: &String| l.contains("stage=") && l.contains(&format!("task={id}"));
    let mut seen = Vec::new();
    read_log_until(&log, &mut seen, 20, |seen| {
        seen.iter()
            .any(|l| is_report(l) && l.contains("stage=last"))
    });
    let reports = seen.iter().filter(|l| is_report(l)).count();
    // At most one report per 100 ms interval, plus the first and the last.
    let bound = elapsed.as_millis() / 100 + 2;
    assert!(
        (reports as u128) <= bound,
        "{reports} stage reports in {elapsed:?} (at most {bound})"
    );
}

#[test]
fn stderr_is_logged_up_to_a_rate_with_the_count_of_dropped_lines() {
    let dir = tempfile::tempdir().unwrap();
    let noisy = script(
        dir.path(),
        "noisy.sh",
        "i=0\nwhile [ $i -lt 3000 ]; do echo \"line $i\" >&2; i=$((i+1)); done\nexit 3\n",
    );
    let (daemon, log) = start_logging(
        dir.path(),
        &format!("  - name: noisy\n    command: [{}]\n", noisy.display()),
        "info",
    );
    let started = Instant::now();
    let id = submit(&daemon, "noisy", "all", Value::Null);
    let t = wait_ended(&daemon, id, 60);
    let elapsed = started.elapsed();
    assert_eq!(t["state"], "failed", "{t:#}");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .ends_with("line 2998\nline 2999"),
        "the failure quotes the last lines whatever the rate: {t:#}"
    );
    let dropped_of = |l: &String| -> Option<u64> {
        let (_, rest) = l.split_once("dropped=")?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let task = format!("task={id}");
    let count = |seen: &[String]| -> (u64, u64) {
        let ours = seen.iter().filter(|l| l.contains(&task));
        ours.fold((0, 0), |(logged, dropped), l| match dropped_of(l) {
            Some(n) => (logged, dropped + n),
            None if l.contains("command stderr") => (logged + 1, dropped),
            None => (logged, dropped),
        })
    };
    let mut seen = Vec::new();
    read_log_until(&log, &mut seen, 20, |seen| {
        let (logged, dropped) = count(seen);
        logged + dropped == 3000
    });
    let (logged, dropped) = count(&seen);
    // A burst of 100, then 50 a second.
    let bound = 100 + 50 * elapsed.as_secs() + 50;
    assert!(
        logged <= bound,
        "{logged} lines logged in {elapsed:?} (at most {bound})"
    );
    assert!(dropped > 0, "{dropped}");
}

/// Whether no live (non-zombie) process is left in process group `pgid`.
fn group_gone(pgid: u32) -> bool {
    let entries = std::fs::read_dir("/proc").unwrap();
    !entries.filter_map(Result::ok).any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        // After the command name: state, ppid, pgrp.
        let fields: Vec<&str> = rest.split_whitespace().take(3).collect();
        matches!(fields[..], [state, _, pgrp] if state != "Z" && pgrp == pgid.to_string())
    })
}

#[test]
fn command_process_group_dies_with_a_killed_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("leader.pid");
    let looping = script(
        dir.path(),
        "loop.sh",
        "echo $$ > \"$PID_FILE\"\nwhile :; do sleep 1; done\n",
    );
    let daemon = start(
        dir.path(),
        &format!(
            "  - name: looping\n    command: [{}]\n    env: {{PID_FILE: {}}}\n",
            looping.display(),
            pid_file.display()
        ),
    );
    submit(&daemon, "looping", "all", Value::Null);
    // The script leads its own process group.
    let pgid = read_pid(&pid_file);
    assert!(!group_gone(pgid));
    daemon.kill9();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !group_gone(pgid) {
        assert!(
            Instant::now() < deadline,
            "process group {pgid} outlived the killed daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The empty task cgroup is for a next start, which never comes here.
    common::remove_cgroups(&dir.path().join("data"));
}

/// A script that ignores SIGTERM, as its child does, and reports a stage
/// once both run; it writes its group id (its own pid) to `$PGID_FILE`.
const STUBBORN: &str = "trap '' TERM\n(trap '' TERM; sleep 300) &\necho $$ > \"$PGID_FILE\"\n\
    echo '{\"stage\": \"stubborn\"}'\nwhile true; do sleep 1; done\n";

fn start_stubborn(dir: &Path) -> (Daemon, PathBuf) {
    let pgid_file = dir.join("group.pid");
    let stubborn = script(dir, "stubborn.sh", STUBBORN);
    let daemon = start(
        dir,
        &format!(
            "  - name: stubborn\n    command: [{}]\n    env: {{PGID_FILE: {}}}\n",
            stubborn.display(),
            pgid_file.display()
        ),
    );
    (daemon, pgid_file)
}

/// Issue 16: a command that ignores SIGTERM and has a child is stopped
/// hard once the cancel's grace is over (here 1 s, shorter than the kind's
/// own 2 s SIGTERM-to-SIGKILL step): `canceling` at once, `canceled` within
/// 4 s, nothing of its group left; `wait=true` answers with the final state.
#[test]
fn cancel_with_a_grace_stops_a_command_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, pgid_file) = start_stubborn(dir.path());
    let id = submit(&daemon, "stubborn", "all", Value::Null);
    let pgid = read_pid(&pgid_file);
    wait_task(&daemon, id, 20, |t| t["stage"] == "stubborn");

    let asked = Instant::now();
    let path = format!("/api/v1/tasks/{id}?grace_s=1&wait=true");
    let (status, body) = daemon.call("DELETE", &path, None);
    let waited = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "canceled", "{body}");
    assert_eq!(body["grace_s"], 1.0, "{body}");
    assert!(
        waited >= Duration::from_secs(1),
        "answered before the grace: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "took {waited:?}");
    let t = task(&daemon, id);
    assert_eq!(t["state"], "canceled", "{t:#}");
    assert_eq!(
        t["error"],
        "canceled while running; stopped hard after the grace period"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_gone(pgid) {
        assert!(Instant::now() < deadline, "group {pgid} outlived its task");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cancel_without_wait_answers_canceling_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, pgid_file) = start_stubborn(dir.path());
    let id = submit(&daemon, "stubborn", "all", Value::Null);
    let pgid = read_pid(&pgid_file);
    wait_task(&daemon, id, 20, |t| t["stage"] == "stubborn");
    let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks/{id}?grace_s=1"), None);
    assert_eq!(
        (status, body["state"].as_str()),
        (202, Some("canceling")),
        "{body}"
    );
    assert_eq!(task(&daemon, id)["state"], "canceling");
    let t = wait_ended(&daemon, id, 4);
    assert_eq!(t["state"], "canceled", "{t:#}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_gone(pgid) {
        assert!(Instant::now() < deadline, "group {pgid} outlived its task");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cancel_parameters_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _) = start_stubborn(dir.path());
    for (query, parameter) in [
        ("grace_s=-1", "grace_s"),
        ("grace_s=soon", "grace_s"),
        ("grace_s=86401", "grace_s"),
        ("wait=yes", "wait"),
    ] {
        let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks/1?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_parameter",
            "{query}: {body}"
        );
        assert_eq!(body["error"]["parameter"], parameter, "{query}: {body}");
    }
    // A queued task is canceled at once, so waiting is immediate.
    let (status, body) = daemon.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200, "{body}");
    let id = submit(&daemon, "stubborn", "all", Value::Null);
    let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks/{id}?wait=true"), None);
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("canceled")),
        "{body}"
    );
}

#[test]
fn cli_cancel_waits_for_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, pgid_file) = start_stubborn(dir.path());
    let id = submit(&daemon, "stubborn", "all", Value::Null);
    read_pid(&pgid_file);
    wait_task(&daemon, id, 20, |t| t["stage"] == "stubborn");
    let out = std::process::Command::new(common::binary())
        .args(["cancel", &id.to_string(), "--wait", "--grace", "1"])
        .args(["--url", &daemon.base, "--data-dir"])
        .arg(&daemon.data_dir)
        .env_remove("GROUNDCREW_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("task #{id} canceled"));
    assert_eq!(task(&daemon, id)["state"], "canceled");
}

/// Issue 16: a SIGTERM drain stops hard what is still running at the end
/// of `shutdown.cancel_grace_s`, even when that is shorter than the kind's
/// own SIGTERM-to-SIGKILL step: the daemon exits with nothing of the
/// command's group left, and the task is queued again for the next start.
#[test]
fn a_drain_with_a_short_grace_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pgid_file = dir.path().join("group.pid");
    let stubborn = script(dir.path(), "stubborn.sh", STUBBORN);
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        format!(
            "shutdown:\n  drain_timeout_s: 0\n  cancel_grace_s: 1\nkinds:\n  - name: stubborn\n    command: [{}]\n    env: {{PGID_FILE: {}}}\n",
            stubborn.display(),
            pgid_file.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let id = submit(&daemon, "stubborn", "all", Value::Null);
    let pgid = read_pid(&pgid_file);
    wait_task(&daemon, id, 20, |t| t["stage"] == "stubborn");
    let stopped = Instant::now();
    let status = daemon.signal_and_wait(common::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    assert!(group_gone(pgid), "group {pgid} outlived the daemon");
    std::fs::remove_file(&pgid_file).unwrap();
    // The next start runs it again.
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    read_pid(&pgid_file);
    let t = wait_task(&daemon, id, 20, |t| t["state"] == "running");
    assert_eq!(
        t["attempts"], 1,
        "the interrupted attempt is not counted: {t:#}"
    );
}
