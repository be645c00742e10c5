//! The daemon on `store: postgres://…`, driven as an operator would: a
//! SIGKILL mid-run and a restart, a second daemon on the same database,
//! and PostgreSQL restarted under a running daemon. Every accepted task
//! ends once, and the feed's artifacts (recorded in the PostgreSQL
//! manifest) end up all `ok`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::pg::{PgCluster, PASSWORD};
use common::{try_call, Daemon};
use groundcrew::feed::generate_ip2asn;
use serde_json::{json, Value};

/// A data directory with one feed, and its config file.
fn data_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    std::fs::write(dir.path().join("feeds/geo.tsv"), generate_ip2asn(300, 7)).unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        "feeds:\n  - name: geo\n    path: feeds/geo.tsv\n    format: ip2asn\nfeed_poll_ms: 60000\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    (dir, config)
}

fn start(dir: &Path, config: &str, url: &str) -> (Daemon, mpsc::Receiver<String>) {
    Daemon::start_with_env_logging(
        dir,
        &["--config", config],
        &[("GROUNDCREW_STORE", url), ("RUST_LOG", "info")],
    )
}

fn test_task(n: u64) -> Value {
    json!({"kind": "test", "target": format!("asn:{n}"), "params": {"times": 4, "round_ms": 50}})
}

/// Submits distinct targets until `stop`; returns the accepted ids, and
/// counts them in `count` as they come. A refusal with 503 (the store is
/// away) is not an acceptance.
fn submit_until(
    base: String,
    token: String,
    first: u64,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> (Vec<u64>, usize) {
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut n = first;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        match try_call(
            &base,
            Some(&token),
            "POST",
            "/api/v1/tasks",
            Some(test_task(n)),
        ) {
            Ok((202, reply)) => {
                accepted.push(reply["id"].as_u64().expect("id"));
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok((503, reply)) => {
                assert_eq!(reply["error"]["code"], "store_unavailable", "{reply}");
                refused += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok((status, reply)) => panic!("submit answered {status}: {reply}"),
            Err(_) => break,
        }
    }
    (accepted, refused)
}

/// Every accepted task ended, once: a terminal state, and nothing pending.
fn assert_all_ended_once(d: &Daemon, accepted: &[u64]) {
    d.wait_panel("all work done", 180, |p| p["state"] == "idle");
    for &id in accepted {
        let (status, task) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
        assert_eq!(status, 200, "accepted task {id} was lost: {task}");
        match task["state"].as_str().unwrap() {
            "succeeded" => assert_eq!(task["result"]["rounds"], 4, "{task}"),
            "merged" => {}
            // Interrupted by the crash on each of its attempts.
            "failed" => assert!(
                task["error"].as_str().unwrap().contains("interrupted"),
                "{task}"
            ),
            other => panic!("task {id} ended {other}: {task}"),
        }
    }
    let (_, pending) = d.call("GET", "/api/v1/tasks?status=pending", None);
    assert_eq!(pending["total"], 0, "{pending}");
}

fn assert_no_password(log: &mpsc::Receiver<String>) -> Vec<String> {
    let lines: Vec<String> = log.try_iter().collect();
    for line in &lines {
        assert!(!line.contains(PASSWORD), "the password was logged: {line}");
    }
    lines
}

#[test]
fn sigkill_mid_run_then_restart_ends_every_accepted_task_once() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let (dir, config) = data_dir();
    let (d, log) = start(dir.path(), &config, &url);
    let mut accepted = Vec::new();
    for n in 0..40 {
        let (status, reply) = d.call("POST", "/api/v1/tasks", Some(test_task(n)));
        assert_eq!(status, 202, "{reply}");
        accepted.push(reply["id"].as_u64().unwrap());
    }
    d.wait_panel("a test task running", 30, |p| {
        p["running"]
            .as_array()
            .is_some_and(|running| running.iter().any(|t| t["kind"] == "test"))
    });
    d.kill9();
    let lines = assert_no_password(&log);
    assert!(
        lines.iter().any(|l| l.contains("task store on PostgreSQL")),
        "{lines:#?}"
    );

    let (d, log) = start(dir.path(), &config, &url);
    assert_all_ended_once(&d, &accepted);
    d.wait_artifacts_ok(120, 1000);
    assert_no_password(&log);
    // The journal is in PostgreSQL, not in a SQLite file.
    assert!(!dir.path().join("groundcrew.db").exists());
    let db = url.rsplit('/').next().unwrap();
    let rows = pg.psql_in(
        db,
        "SELECT count(*) FROM groundcrew.tasks WHERE kind = 'test'",
    );
    assert_eq!(rows, "40");
}

#[test]
fn a_second_daemon_with_the_same_node_name_refuses_to_start_one_with_its_own_joins() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let (dir, config) = data_dir();
    let (first, _log) = start(dir.path(), &config, &url);
    let other = tempfile::tempdir().unwrap();
    let second = |node: &str| {
        std::process::Command::new(common::binary())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(other.path())
            .env("GROUNDCREW_STORE", &url)
            .env("GROUNDCREW_FEEDS", "[]")
            .env("GROUNDCREW_NODE", node)
            .output()
            .unwrap()
    };
    // The first daemon took the host's name.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = second(host.trim());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second daemon started: {stderr}");
    assert!(
        stderr.contains(&format!(
            "another groundcrew node named {:?} runs on PostgreSQL postgres://postgres@127.0.0.1",
            host.trim()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    // The first one is unharmed.
    let (status, reply) = first.call("POST", "/api/v1/tasks", Some(test_task(1)));
    assert_eq!(status, 202, "{reply}");
    // With a name of its own it joins the cluster.
    let joined = Daemon::start_with_env(
        other.path(),
        &[],
        &[
            ("GROUNDCREW_STORE", url.as_str()),
            ("GROUNDCREW_FEEDS", "[]"),
            ("GROUNDCREW_NODE", "second"),
        ],
    );
    let (status, reply) = joined.call("POST", "/api/v1/tasks", Some(test_task(2)));
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn postgres_restarted_mid_run_loses_no_accepted_task_and_admits_again() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let (dir, config) = data_dir();
    let (d, log) = start(dir.path(), &config, &url);
    d.wait_artifacts_ok(120, 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (base, token, stop) = (d.base.clone(), d.token.clone(), stop.clone());
        std::thread::spawn(move || submit_until(base, token, 100_000, stop, Default::default()))
    };
    std::thread::sleep(Duration::from_millis(500));
    pg.restart();
    std::thread::sleep(Duration::from_millis(500));
    pg.restart();
    // Admits again: a new request is accepted and runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let (status, reply) = d.call("POST", "/api/v1/tasks", Some(test_task(1)));
        if status == 202 {
            break reply["id"].as_u64().unwrap();
        }
        assert_eq!(status, 503, "{reply}");
        assert!(Instant::now() < deadline, "never accepted again: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::SeqCst);
    let (mut accepted, refused) = submitter.join().unwrap();
    eprintln!(
        "{} accepted, {refused} refused while PostgreSQL restarted",
        accepted.len()
    );
    assert!(accepted.len() > 10, "too few accepted: {}", accepted.len());
    accepted.push(after);
    assert_all_ended_once(&d, &accepted);
    let (_, system) = d.call("GET", "/api/v1/system", None);
    assert_no_password(&log);
    assert!(!system.to_string().contains(PASSWORD), "{system}");
}

fn healthz(d: &Daemon) -> u16 {
    try_call(&d.base, None, "GET", "/healthz", None)
        .map(|(status, _)| status)
        .unwrap_or(0)
}

fn wait_healthz(d: &Daemon, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthz(d) != want {
        assert!(Instant::now() < deadline, "/healthz never answered {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn healthz_fails_while_postgres_is_down_and_recovers_by_itself() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_env(
        dir.path(),
        &[],
        &[("GROUNDCREW_FEEDS", "[]"), ("GROUNDCREW_STORE", &url)],
    );
    assert_eq!(healthz(&d), 200);
    pg.stop();
    wait_healthz(&d, 503);
    pg.start_again();
    // Nothing is written meanwhile: the store notices by itself.
    wait_healthz(&d, 200);
    let (status, reply) = d.call("POST", "/api/v1/tasks", Some(test_task(1)));
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn repeated_sigkills_never_repeat_an_id_and_lose_no_accepted_task() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GROUNDCREW_FEEDS", "[]"),
        ("GROUNDCREW_STORE", url.as_str()),
    ];
    let mut accepted = std::collections::BTreeSet::new();
    for round in 0..4u64 {
        let d = Daemon::start_with_env(dir.path(), &[], &env);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (base, token) = (d.base.clone(), d.token.clone());
            let (stop, count) = (stop.clone(), count.clone());
            // Targets of their own per round: a repeat would merge.
            std::thread::spawn(move || submit_until(base, token, round * 100_000, stop, count))
        };
        // Each round kills a node that has accepted work (however slow
        // the machine), at a different point of its submits.
        let since = std::time::Instant::now();
        while count.load(Ordering::SeqCst) < 8 {
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "round {round}: no submits accepted"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100 * round));
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        for id in submitter.join().unwrap().0 {
            assert!(accepted.insert(id), "id {id} was given twice");
        }
    }
    assert!(accepted.len() > 20, "too few accepted: {}", accepted.len());
    eprintln!("{} tasks accepted across the kills", accepted.len());
    let d = Daemon::start_with_env(dir.path(), &[], &env);
    assert_all_ended_once(&d, &accepted.into_iter().collect::<Vec<_>>());
}
