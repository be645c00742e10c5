//! Processes that leave a command's process group (`setsid`, a double
//! fork into a daemon) do not outlive its task, in both isolation modes,
//! against the real daemon binary.
//!
//! The subreaper tests always run. The cgroup tests need root: when not
//! root and not in CI they are skipped with a message; under `CI=true`
//! they run and fail without root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{json, Value};

/// Whether the cgroup tests run here; see the module docs.
fn cgroup_tests_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root, and CI=true must run it"
    );
    eprintln!("skipping {test}: cgroup isolation needs root");
    false
}

/// A marker unique to this test process and call, for `sleep`'s argument:
/// `1001.<pid>0<n>` is a valid duration no other test uses.
fn marker() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    format!(
        "1001.{}0{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Live processes whose command line holds `marker` as an argument.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        // A zombie has an empty command line: it has exited.
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == marker.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "still not {what} after {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A script that starts a `setsid` sleeper (holding stdout) and a
/// double-forked, daemonized one, reports stage `started`, then runs
/// `rest`.
fn escaping_script(dir: &Path, markers: &[String; 2], rest: &str) -> PathBuf {
    let path = dir.join("escape.sh");
    let [setsid, daemonized] = markers;
    let body = format!(
        "#!/bin/sh\n\
         setsid sleep {setsid} &\n\
         ( setsid sh -c 'sleep {daemonized} </dev/null >/dev/null 2>&1 &' & )\n\
         echo '{{\"stage\": \"started\"}}'\n\
         {rest}\n"
    );
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The config file for one `escape` kind running `program`, with
/// `kinds_isolation: mode`.
fn config(dir: &Path, mode: &str, program: &Path) -> PathBuf {
    let path = dir.join("groundcrew.yaml");
    std::fs::write(
        &path,
        format!(
            "kinds_isolation: {mode}\nkinds:\n  - name: escape\n    command: [{}]\n    timeout_s: 120\n    max_attempts: 1\n",
            program.display()
        ),
    )
    .unwrap();
    path
}

fn start(dir: &Path, mode: &str, program: &Path) -> Daemon {
    let config = config(dir, mode, program);
    Daemon::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

fn submit(daemon: &Daemon) -> u64 {
    let (status, body) = daemon.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"kind": "escape", "target": "all"})),
    );
    assert_eq!(status, 202, "{body}");
    body["id"].as_u64().unwrap()
}

fn wait_state(daemon: &Daemon, id: u64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, t) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
        if t["state"] == state {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} not {state}: {t:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_started(markers: &[String; 2]) {
    for m in markers {
        wait_for(&format!("running sleep {m}"), 30, || {
            !processes_with(m).is_empty()
        });
    }
}

/// The task group a cgroup-mode run's sleeper is in; `None` in subreaper
/// mode.
fn task_group(mode: &str, markers: &[String; 2]) -> Option<PathBuf> {
    (mode == "cgroup").then(|| {
        let group = cgroup_dir_of(processes_with(&markers[0])[0]);
        let name = group.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("task-"), "{}", group.display());
        group
    })
}

/// Waits until the run's task group (if any) is removed.
fn wait_removed(group: Option<PathBuf>) {
    if let Some(group) = group {
        wait_for(&format!("removed: {}", group.display()), 20, || {
            !group.exists()
        });
    }
}

fn wait_gone(markers: &[String; 2]) {
    for m in markers {
        wait_for(&format!("gone: sleep {m}"), 20, || {
            processes_with(m).is_empty()
        });
    }
}

fn escaped_children_die_when_the_task_is_canceled(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let markers = [marker(), marker()];
    let program = escaping_script(dir.path(), &markers, "sleep 300");
    let daemon = start(dir.path(), mode, &program);
    let id = submit(&daemon);
    wait_started(&markers);
    let group = task_group(mode, &markers);
    wait_state(&daemon, id, "running");
    let (status, body) = daemon.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(status, 202, "{body}");
    wait_state(&daemon, id, "canceled");
    wait_gone(&markers);
    wait_removed(group);
}

fn escaped_children_die_when_the_task_succeeds(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let markers = [marker(), marker()];
    // The setsid sleeper holds stdout open: unless it is killed when the
    // script exits, the task never ends.
    let program = escaping_script(
        dir.path(),
        &markers,
        "sleep 0.5\necho '{\"result\": {\"done\": true}}'",
    );
    let daemon = start(dir.path(), mode, &program);
    let (_, system) = daemon.call("GET", "/api/v1/system", None);
    assert_eq!(system["kinds_isolation"], mode, "{system}");
    let id = submit(&daemon);
    let t = wait_state(&daemon, id, "succeeded");
    assert_eq!(t["result"], json!({"done": true}), "{t:#}");
    wait_gone(&markers);
}

/// A run that ignores SIGTERM is stopped hard after a 1 s grace (shorter
/// than the kind's own SIGTERM-to-SIGKILL step): its execution is dropped,
/// and what escaped its group dies all the same.
fn escaped_children_die_when_a_run_is_stopped_hard(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let markers = [marker(), marker()];
    let program = escaping_script(dir.path(), &markers, "sleep 300");
    let body = std::fs::read_to_string(&program).unwrap().replacen(
        "#!/bin/sh\n",
        "#!/bin/sh\ntrap '' TERM\n",
        1,
    );
    std::fs::write(&program, body).unwrap();
    let daemon = start(dir.path(), mode, &program);
    let id = submit(&daemon);
    wait_started(&markers);
    let group = task_group(mode, &markers);
    wait_state(&daemon, id, "running");
    let path = format!("/api/v1/tasks/{id}?grace_s=1&wait=true");
    let (status, body) = daemon.call("DELETE", &path, None);
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("canceled")),
        "{body}"
    );
    let t = wait_state(&daemon, id, "canceled");
    assert!(
        t["error"].as_str().unwrap().contains("stopped hard"),
        "{t:#}"
    );
    wait_gone(&markers);
    wait_removed(group);
}

#[test]
fn subreaper_kills_escaped_children_of_a_run_stopped_hard() {
    escaped_children_die_when_a_run_is_stopped_hard("subreaper");
}

#[test]
fn cgroup_kills_escaped_children_of_a_run_stopped_hard() {
    if cgroup_tests_run("cgroup_kills_escaped_children_of_a_run_stopped_hard") {
        escaped_children_die_when_a_run_is_stopped_hard("cgroup");
    }
}

#[test]
fn subreaper_kills_escaped_children_of_a_canceled_task() {
    escaped_children_die_when_the_task_is_canceled("subreaper");
}

#[test]
fn subreaper_kills_escaped_children_when_the_task_succeeds() {
    escaped_children_die_when_the_task_succeeds("subreaper");
}

#[test]
fn cgroup_kills_escaped_children_of_a_canceled_task() {
    if cgroup_tests_run("cgroup_kills_escaped_children_of_a_canceled_task") {
        escaped_children_die_when_the_task_is_canceled("cgroup");
    }
}

#[test]
fn cgroup_kills_escaped_children_when_the_task_succeeds() {
    if cgroup_tests_run("cgroup_kills_escaped_children_when_the_task_succeeds") {
        escaped_children_die_when_the_task_succeeds("cgroup");
    }
}

/// Where the cgroup2 hierarchy is mounted.
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
        })
        .expect("a cgroup2 mount")
}

/// The cgroup2 directory `pid` is in (tests and daemon share the mount).
fn cgroup_dir_of(pid: u32) -> PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    cgroup2_mount().join(own.trim_start_matches('/'))
}

#[test]
fn a_cgroup_left_by_a_killed_daemon_is_killed_at_the_next_start() {
    if !cgroup_tests_run("a_cgroup_left_by_a_killed_daemon_is_killed_at_the_next_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let markers = [marker(), marker()];
    // Only the first run escapes: the restart may run the task again.
    let flag = dir.path().join("ran");
    let program = escaping_script(
        dir.path(),
        &markers,
        &format!("touch {}\nsleep 300", flag.display()),
    );
    let body = std::fs::read_to_string(&program).unwrap().replacen(
        "#!/bin/sh\n",
        &format!("#!/bin/sh\n[ -e {} ] && exit 0\n", flag.display()),
        1,
    );
    std::fs::write(&program, body).unwrap();
    let daemon = start(dir.path(), "cgroup", &program);
    let id = submit(&daemon);
    wait_started(&markers);
    daemon.kill9();
    // The daemon took the script along (PR_SET_PDEATHSIG), not the
    // sleepers: they left its process group and are orphans now.
    let sleeper = processes_with(&markers[0])[0];
    let group = cgroup_dir_of(sleeper);
    assert!(
        group
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("task-"),
        "sleeper not in a task group: {}",
        group.display()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !processes_with(&markers[0]).is_empty(),
        "the sleeper died with the daemon; nothing left to prove"
    );

    let daemon = start(dir.path(), "cgroup", &program);
    wait_gone(&markers);
    assert!(!group.exists(), "{} was not removed", group.display());
    // Interrupted on its only attempt: not run again.
    let t = wait_state(&daemon, id, "failed");
    assert!(
        t["error"].as_str().unwrap().contains("interrupted"),
        "{t:#}"
    );
}

fn start_logging(dir: &Path, mode: &str) -> (Daemon, mpsc::Receiver<String>) {
    let program = escaping_script(dir, &[marker(), marker()], "");
    let config = config(dir, mode, &program);
    Daemon::start_logging(
        &dir.join("data"),
        &["--config", config.to_str().unwrap()],
        "info",
    )
}

/// The first log line holding `needle`, within a bounded wait.
fn log_line(log: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn the_isolation_in_force_is_logged_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, log) = start_logging(dir.path(), "subreaper");
    let line = log_line(&log, "subreaper");
    assert!(line.contains("configured"), "{line}");
    let (status, system) = daemon.call("GET", "/api/v1/system", None);
    assert_eq!(status, 200, "{system}");
    assert_eq!(system["kinds_isolation"], "subreaper", "{system}");
}

/// The cgroup2 hierarchy made read-only for one daemon: a private mount
/// namespace with a read-only bind remount of the cgroup2 mount.
fn start_without_writable_cgroup(dir: &Path, mode: &str) -> std::process::Output {
    let program = escaping_script(dir, &[marker(), marker()], "");
    let config = config(dir, mode, &program);
    let script = format!(
        "mount -o remount,bind,ro {mount} && exec timeout 5 {bin} serve --bind 127.0.0.1:0 --data-dir {data} --config {config}",
        mount = cgroup2_mount().display(),
        bin = common::binary(),
        data = dir.join("data").display(),
        config = config.display(),
    );
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("GROUNDCREW_FEEDS", "[]")
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn cgroup_mode_refuses_to_start_without_a_writable_hierarchy_and_auto_falls_back() {
    if !cgroup_tests_run("cgroup_mode_refuses_to_start_without_a_writable_hierarchy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = start_without_writable_cgroup(dir.path(), "cgroup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(
        stderr.contains("no writable cgroup2 hierarchy") && stderr.contains("not writable"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = start_without_writable_cgroup(dir.path(), "auto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listening on"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("subreaper") && stderr.contains("Read-only file system"),
        "{stderr}"
    );
}
