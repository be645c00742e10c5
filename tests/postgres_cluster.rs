//! Several daemons on one PostgreSQL, driven as an operator would: three
//! nodes share the work, one is killed with SIGKILL mid-task and another
//! finishes its tasks, once; a node frozen with SIGSTOP past its lease
//! loses its task to the other node, and when it wakes its late
//! publication is refused. A sampler watches every node's panel all along:
//! no kind and target ever runs on two nodes at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::PgCluster;
use common::{try_call, Daemon};
use serde_json::{json, Value};

/// Lease of the test nodes: short, so that rescue comes quickly.
const LEASE_S: &str = "2";

fn node(dir: &Path, name: &str, url: &str, artifacts: &Path) -> Daemon {
    node_with(dir, name, url, artifacts, &[])
}

/// Lease of test nodes that lose no claim: long enough that a loaded
/// machine does not miss it.
const STEADY_LEASE_S: &str = "10";

fn node_with_lease(dir: &Path, name: &str, url: &str, artifacts: &Path, lease_s: &str) -> Daemon {
    node_with(
        dir,
        name,
        url,
        artifacts,
        &[("GROUNDCREW_LEASE_S", lease_s)],
    )
}

fn node_with(dir: &Path, name: &str, url: &str, artifacts: &Path, more: &[(&str, &str)]) -> Daemon {
    let mut vars = vec![
        ("GROUNDCREW_STORE", url),
        ("GROUNDCREW_FEEDS", "[]"),
        ("GROUNDCREW_NODE", name),
        ("GROUNDCREW_LEASE_S", LEASE_S),
        ("GROUNDCREW_POOLS__BACKGROUND", "2"),
        ("GROUNDCREW_ARTIFACTS__DIR", artifacts.to_str().unwrap()),
    ];
    vars.extend_from_slice(more);
    Daemon::start_with_env(dir, &[], &vars)
}

fn test_task(target: &str, times: u64, round_ms: u64) -> Value {
    json!({"kind": "test", "target": target,
           "params": {"times": times, "round_ms": round_ms, "artifact_bytes": 256}})
}

/// What each node runs now, by target.
fn running(base: &str, token: &str) -> Option<Vec<(String, u64)>> {
    let (status, panel) = try_call(base, Some(token), "GET", "/api/v1/panel", None).ok()?;
    (status == 200).then(|| {
        panel["running"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["target"].as_str().unwrap().to_owned(),
                    t["id"].as_u64().unwrap(),
                )
            })
            .collect()
    })
}

/// Polls every node's panel until stopped; fails the test (through the
/// returned list) if one target shows running on two nodes in one round.
struct Sampler {
    stop: Arc<AtomicBool>,
    overlaps: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>>,
    /// When each task was first seen running on each node.
    first_seen: Arc<Mutex<BTreeMap<(u64, String), Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(nodes: Vec<(String, String, String)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let seen: Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>> = Arc::default();
        let first_seen: Arc<Mutex<BTreeMap<(u64, String), Instant>>> = Arc::default();
        let thread = {
            let (stop, overlaps, seen) = (stop.clone(), overlaps.clone(), seen.clone());
            let first_seen = first_seen.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut at: BTreeMap<String, String> = BTreeMap::new();
                    for (name, base, token) in &nodes {
                        for (target, id) in running(base, token).unwrap_or_default() {
                            seen.lock()
                                .unwrap()
                                .entry(id)
                                .or_default()
                                .insert(name.clone());
                            first_seen
                                .lock()
                                .unwrap()
                                .entry((id, name.clone()))
                                .or_insert_with(Instant::now);
                            if let Some(other) = at.insert(target.clone(), name.clone()) {
                                overlaps
                                    .lock()
                                    .unwrap()
                                    .push(format!("{target} running on {other} and {name}"));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Sampler {
            stop,
            overlaps,
            seen,
            first_seen,
            thread: Some(thread),
        }
    }

    /// Stops; returns the nodes each task was seen running on.
    fn finish(mut self) -> BTreeMap<u64, BTreeSet<String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let overlaps = self.overlaps.lock().unwrap();
        assert!(
            overlaps.is_empty(),
            "a target ran on two nodes at once: {overlaps:#?}"
        );
        self.seen.lock().unwrap().clone()
    }

    /// The runs (task, node) first seen running between `from` and `to`.
    fn started_between(&self, from: Instant, to: Instant) -> Vec<(u64, String)> {
        self.first_seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| (from..to).contains(*at))
            .map(|(run, _)| run.clone())
            .collect()
    }
}

fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric(d: &Daemon, line_start: &str) -> f64 {
    let text = common::Daemon::agent()
        .get(format!("{}/metrics", d.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn three_nodes_share_the_work_and_a_killed_nodes_tasks_end_once_elsewhere() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<Daemon>> = ["n1", "n2", "n3"]
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| Some(node(dir.path(), name, &url, artifacts.path())))
        .collect();
    let sampler = Sampler::start(
        ["n1", "n2", "n3"]
            .iter()
            .zip(&nodes)
            .map(|(n, d)| {
                let d = d.as_ref().unwrap();
                (n.to_string(), d.base.clone(), d.token.clone())
            })
            .collect(),
    );

    // Requests arrive at every node; the same target asked of two nodes
    // while queued is one task cluster-wide.
    let mut accepted = BTreeSet::new();
    for n in 0..18u64 {
        let d = nodes[(n % 3) as usize].as_ref().unwrap();
        let (status, reply) = d.call(
            "POST",
            "/api/v1/tasks",
            Some(test_task(&format!("asn:{n}"), 10, 100)),
        );
        assert_eq!(status, 202, "{reply}");
        accepted.insert(reply["id"].as_u64().unwrap());
    }
    let (_, again) = nodes[1].as_ref().unwrap().call(
        "POST",
        "/api/v1/tasks",
        Some(test_task("asn:17", 10, 100)),
    );
    assert!(
        again["outcome"] == "merged" || again["outcome"] == "follow_up",
        "a repeated target is coalesced across nodes: {again}"
    );
    accepted.insert(again["id"].as_u64().unwrap());

    // Kill n3 while it runs something.
    let victim = nodes[2].as_ref().unwrap();
    let killed: Vec<u64> = wait_until("n3 running a task", 60, || {
        running(&victim.base, &victim.token)
            .filter(|r| !r.is_empty())
            .map(|r| r.into_iter().map(|(_, id)| id).collect())
    });
    nodes[2].take().unwrap().kill9();

    // Every accepted task ends once, the killed node's on another node.
    let d = nodes[0].as_ref().unwrap();
    let tasks: BTreeMap<u64, Value> = wait_until("every task ended", 120, || {
        let tasks: BTreeMap<u64, Value> = accepted
            .iter()
            .map(|&id| (id, d.call("GET", &format!("/api/v1/tasks/{id}"), None).1))
            .collect();
        tasks
            .values()
            .all(|t| ["succeeded", "merged"].contains(&t["state"].as_str().unwrap_or("")))
            .then_some(tasks)
    });
    let seen = sampler.finish();
    for id in &killed {
        let t = &tasks[id];
        assert_eq!(t["state"], "succeeded", "{t}");
        assert_eq!(t["attempts"], 2, "run again after the kill: {t}");
        assert!(
            t["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("lease expired on node n3"),
            "{t}"
        );
        let on = &seen[id];
        assert!(
            on.contains("n3") && on.len() == 2,
            "ran on n3, then on one other node: {on:?}"
        );
    }
    // The work was shared: each surviving node ran some of it.
    for name in ["n1", "n2"] {
        assert!(
            seen.values().any(|on| on.contains(name)),
            "{name} ran nothing: {seen:?}"
        );
    }
    // One record per task, none pending, and the history has every id once.
    let (_, pending) = d.call("GET", "/api/v1/tasks?status=pending", None);
    assert_eq!(pending["total"], 0, "{pending}");
    let db = url.rsplit('/').next().unwrap();
    let rows = pg.psql_in(
        db,
        "SELECT count(*), count(DISTINCT id) FROM groundcrew.tasks WHERE kind = 'test'",
    );
    assert_eq!(rows, format!("{0}|{0}", accepted.len()));
    // The panel shows the nodes; the dead one is not alive any more.
    let panel = d.wait_panel("n3 no longer alive", 30, |p| {
        p["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["node"] == "n3" && n["alive"] == false))
    });
    let names: Vec<&str> = panel["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{panel:#}");
    // So does the CLI.
    let out = std::process::Command::new(common::binary())
        .arg("status")
        .env("GROUNDCREW_URL", &d.base)
        .env("GROUNDCREW_TOKEN", &d.token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("node n1: alive, "), "{text}");
    assert!(text.contains("node n3: gone, "), "{text}");
}

#[test]
fn a_frozen_node_loses_its_task_and_its_late_publish_is_refused() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path(), "a", &url, artifacts.path());
    let b = node(dir_b.path(), "b", &url, artifacts.path());
    // Only node a has free workers for now.
    let (status, _) = b.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200);
    let (status, reply) = a.call(
        "POST",
        "/api/v1/tasks",
        Some(test_task("asn:64500", 40, 100)),
    );
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_u64().unwrap();
    wait_until("a running the task", 30, || {
        running(&a.base, &a.token).filter(|r| r.iter().any(|(_, t)| *t == id))
    });
    a.signal(libc::SIGSTOP);
    let (status, _) = b.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 2})),
    );
    assert_eq!(status, 200);
    // b rescues the task once a's lease expired and runs it again.
    wait_until("b running the task", 30, || {
        running(&b.base, &b.token).filter(|r| r.iter().any(|(_, t)| *t == id))
    });
    std::thread::sleep(Duration::from_millis(500));
    a.signal(libc::SIGCONT);
    let task = wait_until("the task ended", 60, || {
        let (_, t) = b.call("GET", &format!("/api/v1/tasks/{id}"), None);
        (t["state"] == "succeeded").then_some(t)
    });
    assert_eq!(task["attempts"], 2, "{task}");
    assert_eq!(task["run"], 2, "{task}");
    assert!(
        task["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("lease expired on node a"),
        "{task}"
    );
    // The resumed node knows it lost the claim.
    wait_until("a counting its stale run", 30, || {
        (metric(&a, "groundcrew_stale_runs_total{write=\"lease\"}") >= 1.0
            || metric(&a, "groundcrew_stale_runs_total{write=\"publish\"}") >= 1.0)
            .then_some(())
    });
    // The artifact is the second run's, in the manifest and on disk; the
    // resumed node's run had no chance to replace it.
    std::thread::sleep(Duration::from_secs(5));
    let file = std::fs::read_to_string(artifacts.path().join("asn/64500.txt")).unwrap();
    assert!(file.contains(&format!("task={id} run=2")), "{file}");
    let (_, entities) = b.call("GET", "/api/v1/entities?limit=10", None);
    let entry = entities["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"] == "asn:64500")
        .cloned();
    let entry = entry.unwrap_or_else(|| panic!("{entities:#}"));
    assert_eq!(entry["run"], 2, "{entry}");
    // One terminal record, and a is still a working node.
    let (_, again) = a.call("POST", "/api/v1/tasks", Some(test_task("asn:64501", 1, 10)));
    let again = again["id"].as_u64().unwrap();
    wait_until("a new task ends", 30, || {
        let (_, t) = a.call("GET", &format!("/api/v1/tasks/{again}"), None);
        (t["state"] == "succeeded").then_some(())
    });
}

#[test]
fn an_application_enqueues_in_its_own_transaction_with_the_sql_function() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = node(dir.path(), "solo", &url, artifacts.path());
    let db = url.rsplit('/').next().unwrap().to_owned();
    // Rolled back with the application's own work: nothing was requested.
    pg.psql_in(
        &db,
        "BEGIN; SELECT task FROM groundcrew.enqueue('test', 'asn:7', '{\"times\": 1, \"round_ms\": 10}'); ROLLBACK;",
    );
    // Committed: the cluster runs it; a second call while it is queued
    // merges into it, in the same transaction.
    let out = pg.psql_in(
        &db,
        "BEGIN; SELECT task, outcome FROM groundcrew.enqueue('test', 'asn:7', '{\"times\": 20, \"round_ms\": 100}', 'feed_update');
         SELECT task, outcome FROM groundcrew.enqueue('test', 'asn:7', '{}', 'operator'); COMMIT;",
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.contains('|')).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let id: u64 = lines[0].split('|').next().unwrap().parse().unwrap();
    assert_eq!(lines[0], format!("{id}|queued"), "{out}");
    assert_eq!(lines[1], format!("{id}|merged"), "{out}");
    let task = wait_until("the enqueued task ended", 60, || {
        let (_, t) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
        (t["state"] == "succeeded").then_some(t)
    });
    assert_eq!(task["merged"], 1, "{task}");
    assert_eq!(
        task["triggers"],
        json!(["feed_update", "operator"]),
        "{task}"
    );
    assert_eq!(task["result"]["rounds"], 20, "{task}");
    let (_, page) = d.call("GET", "/api/v1/tasks?status=finished", None);
    assert_eq!(
        page["total"], 1,
        "the rolled-back request left nothing: {page}"
    );
}

/// Submits distinct targets round-robin to `nodes` until `stop`; returns
/// the accepted ids and how many were refused. A refusal must say that
/// the store is away (503 `store_unavailable`); anything else fails.
fn submit_until(nodes: Vec<(String, String)>, stop: Arc<AtomicBool>) -> (Vec<u64>, usize) {
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (base, token) = &nodes[n as usize % nodes.len()];
        let task = test_task(&format!("asn:{}", 1000 + n), 2, 50);
        match try_call(base, Some(token), "POST", "/api/v1/tasks", Some(task)) {
            Ok((202, reply)) => accepted.push(reply["id"].as_u64().expect("an id")),
            Ok((503, reply)) => {
                assert_eq!(reply["error"]["code"], "store_unavailable", "{reply}");
                refused += 1;
            }
            Ok((status, reply)) => panic!("submit answered {status}: {reply}"),
            Err(e) => panic!("submit failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (accepted, refused)
}

#[test]
fn postgres_restarted_under_three_nodes_every_accepted_task_ends_once() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["n1", "n2", "n3"];
    let nodes: Vec<Daemon> = names
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| node(dir.path(), name, &url, artifacts.path()))
        .collect();
    let addresses: Vec<(String, String)> = nodes
        .iter()
        .map(|d| (d.base.clone(), d.token.clone()))
        .collect();
    let sampler = Sampler::start(
        names
            .iter()
            .zip(&addresses)
            .map(|(n, (base, token))| (n.to_string(), base.clone(), token.clone()))
            .collect(),
    );
    // Long tasks running on every node through the outage.
    let mut long = Vec::new();
    for n in 0..6u64 {
        let (status, reply) = nodes[(n % 3) as usize].call(
            "POST",
            "/api/v1/tasks",
            Some(test_task(&format!("asn:{}", 500 + n), 40, 500)),
        );
        assert_eq!(status, 202, "{reply}");
        long.push(reply["id"].as_u64().unwrap());
    }
    wait_until("every node running a task", 60, || {
        nodes
            .iter()
            .all(|d| running(&d.base, &d.token).is_some_and(|r| !r.is_empty()))
            .then_some(())
    });
    // Requests keep arriving at every node, through the restart.
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (addresses, stop) = (addresses.clone(), stop.clone());
        std::thread::spawn(move || submit_until(addresses, stop))
    };
    std::thread::sleep(Duration::from_secs(1));
    // Down for longer than the lease: every claim held then expires.
    let held: BTreeSet<u64> = nodes
        .iter()
        .flat_map(|d| running(&d.base, &d.token).unwrap_or_default())
        .map(|(_, id)| id)
        .filter(|id| long.contains(id))
        .collect();
    assert!(!held.is_empty());
    pg.stop();
    let stopped = Instant::now();
    for d in &nodes {
        wait_until("the node noticing the outage", 30, || {
            try_call(&d.base, None, "GET", "/healthz", None)
                .is_ok_and(|(s, _)| s == 503)
                .then_some(())
        });
    }
    std::thread::sleep(Duration::from_secs(4));
    let restarting = Instant::now();
    pg.start_again();
    // Admits again on every node.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (mut accepted, refused) = submitter.join().unwrap();
    accepted.extend(&long);
    eprintln!(
        "{} accepted, {refused} refused while PostgreSQL restarted",
        accepted.len()
    );
    assert!(refused > 0, "the outage refused nothing");
    // Every node admits again, by itself.
    for (base, token) in &addresses {
        let id = wait_until("the node accepting again", 60, || {
            let (status, reply) = try_call(
                base,
                Some(token),
                "POST",
                "/api/v1/tasks",
                Some(test_task("asn:1", 1, 10)),
            )
            .unwrap();
            assert!(status == 202 || status == 503, "{status} {reply}");
            (status == 202).then(|| reply["id"].as_u64().unwrap())
        });
        eprintln!(
            "{base} accepts again {:?} after the restart",
            restarting.elapsed()
        );
        accepted.push(id);
    }

    // Every accepted task ends once.
    let d = &nodes[0];
    let deadline = Instant::now() + Duration::from_secs(180);
    let tasks: BTreeMap<u64, Value> = loop {
        let tasks: BTreeMap<u64, Value> = accepted
            .iter()
            .map(|&id| (id, d.call("GET", &format!("/api/v1/tasks/{id}"), None).1))
            .collect();
        let open: Vec<&Value> = tasks
            .values()
            .filter(|t| !["succeeded", "merged"].contains(&t["state"].as_str().unwrap_or("")))
            .collect();
        if open.is_empty() {
            break tasks;
        }
        assert!(Instant::now() < deadline, "tasks never ended: {open:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for id in &long {
        let t = &tasks[id];
        assert_eq!(t["result"]["rounds"], 40, "{t}");
        if held.contains(id) {
            assert!(
                t["attempts"].as_u64() >= Some(2),
                "run again after the outage: {t}"
            );
        }
    }
    // Nothing started while the database was away (a claim committed
    // just before the stop may show on a panel a little later).
    let during = sampler.started_between(stopped + Duration::from_millis(500), restarting);
    assert!(
        during.is_empty(),
        "runs started during the outage: {during:?}"
    );
    sampler.finish();
    let (_, pending) = d.call("GET", "/api/v1/tasks?status=pending", None);
    assert_eq!(pending["total"], 0, "{pending}");
    let db = url.rsplit('/').next().unwrap();
    let open = pg.psql_in(
        db,
        "SELECT count(*) FROM groundcrew.tasks WHERE state NOT IN ('succeeded', 'merged')",
    );
    assert_eq!(open, "0", "every task in the history ended");
}

#[test]
fn a_waiting_cancel_of_a_task_on_another_node_answers_once_it_has_ended() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node_with_lease(dir_a.path(), "a", &url, artifacts.path(), STEADY_LEASE_S);
    let b = node_with_lease(dir_b.path(), "b", &url, artifacts.path(), STEADY_LEASE_S);
    let (status, reply) = b.call("POST", "/api/v1/tasks", Some(test_task("asn:9", 600, 100)));
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_u64().unwrap();
    // Whichever node runs it, the other one cancels it.
    let runs_on =
        |d: &Daemon| running(&d.base, &d.token).is_some_and(|r| r.iter().any(|(_, t)| *t == id));
    let (runner, other) = wait_until("a node running the task", 30, || {
        if runs_on(&a) {
            Some((&a, &b))
        } else if runs_on(&b) {
            Some((&b, &a))
        } else {
            None
        }
    });
    let (status, reply) = other.call("DELETE", &format!("/api/v1/tasks/{id}?wait=true"), None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["state"], "canceled", "{reply}");
    // The answer came once the end was in the store.
    let (_, task) = other.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(task["state"], "canceled", "{task}");
    assert!(!runs_on(runner));
}

fn set_limit(d: &Daemon, limit: u64) {
    let (status, reply) = d.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": limit})),
    );
    assert_eq!(status, 200, "{reply}");
}

#[test]
fn a_rescued_task_absorbs_the_follow_up_waiting_behind_it() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The task runs on a (short lease: it is killed and rescued); b joins
    // then, on a steady lease, so that its own run of the task is not
    // rescued again on a loaded machine.
    let a = node(dir_a.path(), "a", &url, artifacts.path());
    let (_, reply) = a.call("POST", "/api/v1/tasks", Some(test_task("asn:77", 30, 100)));
    let id = reply["id"].as_u64().unwrap();
    wait_until("node a running the task", 30, || {
        running(&a.base, &a.token)
            .is_some_and(|r| r.iter().any(|(_, t)| *t == id))
            .then_some(())
    });
    let b = node_with_lease(dir_b.path(), "b", &url, artifacts.path(), STEADY_LEASE_S);
    // A request for the same target waits behind the run.
    let (status, reply) = b.call("POST", "/api/v1/tasks", Some(test_task("asn:77", 30, 100)));
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["outcome"], "follow_up", "{reply}");
    let follow_up = reply["id"].as_u64().unwrap();
    a.kill9();
    // b rescues the run; its retry serves the follow-up's request too.
    let task = wait_until("the rescued task ended", 60, || {
        let (_, t) = b.call("GET", &format!("/api/v1/tasks/{id}"), None);
        (t["state"] == "succeeded").then_some(t)
    });
    assert_eq!(task["attempts"], 2, "{task}");
    assert_eq!(task["merged"], 1, "{task}");
    let (_, f) = b.call("GET", &format!("/api/v1/tasks/{follow_up}"), None);
    assert_eq!(f["state"], "merged", "{f}");
    assert_eq!(f["merged_into"], id, "{f}");
    assert!(f["waiting_behind"].is_null(), "{f}");
}

#[test]
fn a_follow_up_no_longer_waits_behind_a_task_that_ended() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = node_with_lease(dir.path(), "solo", &url, artifacts.path(), STEADY_LEASE_S);
    let (_, reply) = d.call("POST", "/api/v1/tasks", Some(test_task("asn:78", 20, 100)));
    let id = reply["id"].as_u64().unwrap();
    wait_until("the task running", 30, || {
        running(&d.base, &d.token).filter(|r| r.iter().any(|(_, t)| *t == id))
    });
    let (_, reply) = d.call("POST", "/api/v1/tasks", Some(test_task("asn:78", 1, 10)));
    assert_eq!(reply["outcome"], "follow_up", "{reply}");
    let follow_up = reply["id"].as_u64().unwrap();
    // Nothing is claimed for now: the follow-up stays queued.
    set_limit(&d, 0);
    wait_until("the task ended", 60, || {
        let (_, t) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
        (t["state"] == "succeeded").then_some(())
    });
    let (_, f) = d.call("GET", &format!("/api/v1/tasks/{follow_up}"), None);
    assert_eq!(f["state"], "queued", "{f}");
    assert!(f["waiting_behind"].is_null(), "released: {f}");
    let db = url.rsplit('/').next().unwrap();
    let stored = pg.psql_in(
        db,
        &format!("SELECT coalesce(waiting_behind::text, 'none') FROM groundcrew.tasks WHERE id = {follow_up}"),
    );
    assert_eq!(stored, "none");
    set_limit(&d, 2);
    wait_until("the follow-up ended", 60, || {
        let (_, t) = d.call("GET", &format!("/api/v1/tasks/{follow_up}"), None);
        (t["state"] == "succeeded").then_some(())
    });
}

/// Issue 17: a pool's `cluster_limit` holds across nodes. Three nodes with
/// two workers each may run six tasks at once; with `cluster_limit: 3`
/// the task history never has more than three running at one instant.
#[test]
fn a_cluster_limit_caps_a_pools_running_tasks_on_all_nodes_together() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let artifacts = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // A steady lease: a run lost to a loaded machine would run twice.
    let limit = [
        ("GROUNDCREW_POOLS__BACKGROUND__CLUSTER_LIMIT", "3"),
        ("GROUNDCREW_LEASE_S", STEADY_LEASE_S),
    ];
    let nodes: Vec<Daemon> = ["c1", "c2", "c3"]
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| node_with(dir.path(), name, &url, artifacts.path(), &limit))
        .collect();
    let (_, panel) = nodes[0].call("GET", "/api/v1/panel", None);
    let pool = panel["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "background")
        .cloned()
        .unwrap();
    assert_eq!(
        (&pool["limit"], &pool["cluster_limit"]),
        (&json!(2), &json!(3))
    );

    let mut accepted = BTreeSet::new();
    for n in 0..18u64 {
        let d = &nodes[(n % 3) as usize];
        let (status, reply) = d.call(
            "POST",
            "/api/v1/tasks",
            Some(test_task(&format!("asn:{n}"), 3, 100)),
        );
        assert_eq!(status, 202, "{reply}");
        accepted.insert(reply["id"].as_u64().unwrap());
    }
    let d = &nodes[0];
    wait_until("every task ended", 120, || {
        accepted
            .iter()
            .all(|id| {
                let (_, t) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
                t["state"] == "succeeded"
            })
            .then_some(())
    });
    // From the history: each task ran once, and at no instant did more
    // than three run (an end at the same instant as a start comes first).
    let db = url.rsplit('/').next().unwrap();
    let out = pg.psql_in(
        db,
        "SELECT id, attempts, (extract(epoch FROM started_at) * 1000000)::bigint,
                (extract(epoch FROM finished_at) * 1000000)::bigint
           FROM groundcrew.tasks WHERE kind = 'test' ORDER BY id",
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.contains('|'))
        .map(|l| l.split('|').collect())
        .collect();
    let ids: BTreeSet<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(ids, accepted, "{out}");
    let mut events = Vec::new();
    for r in &rows {
        assert_eq!(r[1], "1", "ran once: {r:?}");
        let (start, end): (i64, i64) = (r[2].parse().unwrap(), r[3].parse().unwrap());
        assert!(start <= end, "{r:?}");
        events.push((start, 1));
        events.push((end, -1));
    }
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    assert!(most <= 3, "{most} tasks ran at once: {out}");
}

/// A claim sent before the pool's limit was lowered to 0 answers after
/// it: the node hands the claimed task back to the queue (its attempt not
/// counted) instead of running it past the limit.
#[test]
fn a_claim_answered_after_the_limit_was_lowered_hands_its_task_back() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let artifacts = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = node_with(
        dir.path(),
        "solo",
        &url,
        artifacts.path(),
        &[
            ("GROUNDCREW_LEASE_S", STEADY_LEASE_S),
            ("GROUNDCREW_POOLS__BACKGROUND", "0"),
        ],
    );
    let (status, reply) = d.call("POST", "/api/v1/tasks", Some(test_task("asn:5", 1, 10)));
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_u64().unwrap();
    // Hold the tasks table so that the claim the next limit sends waits.
    let mut locker = pg.psql_command(
        &db,
        "BEGIN; LOCK TABLE groundcrew.tasks IN EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;",
    );
    let locker = std::thread::spawn(move || locker.output().unwrap());
    wait_until("the table lock", 10, || {
        (pg.psql_in(
            &db,
            "SELECT count(*) FROM pg_locks WHERE mode = 'ExclusiveLock' AND locktype = 'relation'",
        ) != "0")
            .then_some(())
    });
    set_limit(&d, 1);
    set_limit(&d, 0);
    assert!(locker.join().unwrap().status.success());
    // The claim went through (the task's run counted) and its outcome is
    // written: queued again, or (without the hand-back) run to its end.
    let sql =
        format!("SELECT state || ',' || coalesce(run, 0) FROM groundcrew.tasks WHERE id = {id}");
    let row = wait_until("the claim's outcome in the store", 30, || {
        let row = pg.psql_in(&db, &sql);
        (row != "queued,0" && !row.starts_with("running")).then_some(row)
    });
    assert_eq!(
        row, "queued,1",
        "the claimed task ran past the lowered limit"
    );
    let (_, task) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(task["state"], "queued", "{task}");
    assert_eq!(task["attempts"], 0, "{task}");
    set_limit(&d, 1);
    let task = wait_until("the task ran once the limit allowed", 30, || {
        let (_, t) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
        (t["state"] == "succeeded").then_some(t)
    });
    assert_eq!(task["attempts"], 1, "{task}");
}
