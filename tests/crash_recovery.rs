//! SIGKILL at random points under a workload: every accepted task reaches
//! exactly one terminal state after restarts, none is lost, and no artifact
//! is ever torn, and no id is given twice.
//!
//! 20 kills by default, 100 with `LONG_TESTS=1`; the seed is printed and
//! `CRASH_LOOP_SEED=N` replays it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{try_call, Daemon};
use groundcrew_actors::check_test_artifact;
use serde_json::json;

/// xorshift64*: enough randomness for kill points, reproducible by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Submits test tasks until the daemon stops answering or `stop` is set;
/// returns the ids of the accepted ones with the target each was given for
/// (a submit for a target already waiting answers that task's id).
fn submit_until_gone(
    base: String,
    token: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, String)> {
    let mut rng = Rng(seed | 1);
    let mut accepted = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let target = format!("asn:{}", rng.below(300));
        let body = json!({
            "kind": "test",
            "target": target,
            "params": {"times": 1 + rng.below(3), "round_ms": 2 + rng.below(20), "artifact_bytes": 1000 + rng.below(300_000)},
        });
        match try_call(&base, Some(&token), "POST", "/api/v1/tasks", Some(body)) {
            Ok((202, reply)) => accepted.push((reply["id"].as_u64().expect("id"), target)),
            Ok((status, reply)) => panic!("submit refused with {status}: {reply}"),
            Err(_) => break,
        }
    }
    accepted
}

fn check_artifacts(root: &Path) -> usize {
    let mut complete = 0;
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "temporary file left behind: {}",
                path.display()
            );
            let content = std::fs::read(&path).unwrap();
            check_test_artifact(&content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            complete += 1;
        }
    }
    complete
}

#[test]
fn sigkill_at_random_points_loses_no_accepted_task_and_tears_no_artifact() {
    let seed = match std::env::var("CRASH_LOOP_SEED") {
        Ok(s) => s.parse().expect("CRASH_LOOP_SEED is a u64"),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let long = std::env::var("LONG_TESTS").is_ok_and(|v| v == "1");
    let kills = if long { 100 } else { 20 };
    eprintln!("crash test seed {seed} (replay with CRASH_LOOP_SEED={seed}), {kills} kills");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let mut accepted: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..kills {
        let daemon = Daemon::start(dir.path(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let submitter = {
            let (base, token, stop) = (daemon.base.clone(), daemon.token.clone(), stop.clone());
            let seed = rng.next();
            std::thread::spawn(move || submit_until_gone(base, token, seed, stop))
        };
        std::thread::sleep(Duration::from_millis(100 + rng.below(700)));
        daemon.kill9();
        stop.store(true, Ordering::SeqCst);
        let ids = submitter.join().unwrap();
        eprintln!("round {round}: {} tasks accepted before SIGKILL", ids.len());
        for (id, target) in ids {
            let first = accepted.entry(id).or_insert_with(|| target.clone());
            assert_eq!(
                *first, target,
                "id {id} was given to two different tasks (seed {seed})"
            );
        }
    }
    assert!(
        accepted.len() > 20,
        "the workload was too small to prove anything: {}",
        accepted.len()
    );

    let daemon = Daemon::start(dir.path(), &[]);
    daemon.wait_panel("all recovered work done", 300, |p| p["state"] == "idle");
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for (&id, target) in &accepted {
        let (status, task) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
        assert_eq!(status, 200, "accepted task {id} was lost: {task}");
        assert_eq!(
            task["target"].as_str(),
            Some(target.as_str()),
            "task {id} is not the one accepted (seed {seed}): {task}"
        );
        let state = task["state"].as_str().unwrap().to_owned();
        match state.as_str() {
            "succeeded" => {}
            "merged" => {
                let into = task["merged_into"]
                    .as_u64()
                    .expect("merged task names its target");
                let (_, target) = daemon.call("GET", &format!("/api/v1/tasks/{into}"), None);
                assert!(
                    matches!(target["state"].as_str(), Some("succeeded" | "failed")),
                    "task {id} merged into {into}, which did not end: {target}"
                );
            }
            // Interrupted by a crash on each of its attempts: a legitimate end.
            "failed" => assert!(
                task["error"].as_str().unwrap().contains("interrupted"),
                "{task}"
            ),
            other => panic!("task {id} ended {other}: {task}"),
        }
        *states.entry(state).or_default() += 1;
    }
    eprintln!(
        "terminal states of {} accepted tasks: {states:?}",
        accepted.len()
    );
    let (_, pending) = daemon.call("GET", "/api/v1/tasks?status=pending", None);
    assert_eq!(pending["total"], 0, "{pending}");
    let artifacts = check_artifacts(&dir.path().join("artifacts"));
    assert!(artifacts > 0, "no artifact was published");
}
