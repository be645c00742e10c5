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
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(nodes: Vec<(String, String, String)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let seen: Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>> = Arc::default();
        let thread = {
            let (stop, overlaps, seen) = (stop.clone(), overlaps.clone(), seen.clone());
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
    let limit = [("GROUNDCREW_POOLS__BACKGROUND__CLUSTER_LIMIT", "3")];
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
