//! SIGKILL at random points under a mixed workload: test tasks, entity
//! refreshes, full and selected rebuilds, cancels and feed edits. After the
//! restarts every accepted task reaches exactly one terminal state, no id
//! is given twice, no temp file is left, and the artifacts equal a clean
//! rebuild of the final feed on a fresh data directory, byte for byte.
//!
//! 20 kills by default, 100 with `LONG_TESTS=1`; the seed is printed and
//! `CRASH_LOOP_SEED=N` replays it (the kill points, not the timing).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{change_one_line, try_call, Daemon};
use groundcrew::feed::{build_artifacts, generate_ip2asn, parse, FeedFormat};
use serde_json::{json, Value};

/// Lines of the generated feed: enough entities for selected rebuilds and
/// 100 one-line edits, few enough for a full rebuild to take a moment.
const FEED_LINES: usize = 1500;

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

/// A data directory with the feed `geo` at `feeds/geo.tsv`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(feed: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("feeds")).unwrap();
        std::fs::write(dir.path().join("feeds/geo.tsv"), feed).unwrap();
        let config = dir.path().join("groundcrew.yaml");
        std::fs::write(
            &config,
            "feeds:\n  - name: geo\n    path: feeds/geo.tsv\n    format: ip2asn\nfeed_poll_ms: 100\n",
        )
        .unwrap();
        Self { dir, config }
    }

    fn start(&self) -> Daemon {
        Daemon::start_with_feeds(
            self.dir.path(),
            &["--config", self.config.to_str().unwrap()],
        )
    }

    fn feed_path(&self) -> PathBuf {
        self.dir.path().join("feeds/geo.tsv")
    }

    fn artifacts(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }
}

/// Replaces the feed atomically with one line changed, as a publisher does.
fn edit_feed(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, change_one_line(&text)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The entity names of a feed text.
fn entities_of(text: &str) -> Vec<String> {
    let parsed = parse(FeedFormat::Ip2asn, text.as_bytes()).unwrap();
    build_artifacts(&parsed)
        .into_keys()
        .map(|e| e.to_string())
        .collect()
}

/// What the load generator saw answered.
#[derive(Default)]
struct Accepted {
    /// Every id an accepted request named, with its kind and target.
    tasks: BTreeMap<u64, (String, String)>,
    /// Ids whose cancel was accepted (202).
    canceled: BTreeSet<u64>,
    /// Ids removed from the history by a DELETE (204).
    removed: BTreeSet<u64>,
    /// Ids whose DELETE got no answer (the daemon died meanwhile): it may
    /// have canceled or removed the task, or not.
    unanswered: BTreeSet<u64>,
    /// Every DELETE sent: the id, and the status answered (0: none).
    deletes: Vec<(u64, u16)>,
    /// Accepted entity refreshes (their replies name no ids).
    refreshes: usize,
    /// Feed edits made.
    edits: usize,
}

impl Accepted {
    /// Records a submit's reply. A new task (queued or follow-up) must have
    /// an id never seen before; a merged request names a known task of its
    /// kind, for its target or `all` (a full rebuild absorbs refreshes),
    /// or one the daemon queued itself (a feed change), not recorded.
    fn reply(&mut self, kind: &str, target: &str, reply: &Value, seed: u64) {
        let id = reply["id"].as_u64().expect("an accepted submit has an id");
        let merged = reply["outcome"] == "merged";
        let known = (kind.to_owned(), target.to_owned());
        match self.tasks.get(&id) {
            Some(first) => assert!(
                merged && first.0 == kind && (first.1 == target || first.1 == "all"),
                "id {id} given twice: {first:?}, then {known:?} ({reply}; seed {seed})"
            ),
            None if merged => {}
            None => {
                self.tasks.insert(id, known);
            }
        }
    }
}

/// One load generator: random requests until the daemon stops answering
/// or `stop` is set.
struct Load {
    base: String,
    token: String,
    feed: PathBuf,
    entities: Vec<String>,
    rng: Rng,
    seed: u64,
}

impl Load {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        try_call(&self.base, Some(&self.token), method, path, body).ok()
    }

    fn some_entities(&mut self) -> Vec<String> {
        let n = 1 + self.rng.below(4);
        (0..n)
            .map(|_| {
                let i = self.rng.below(self.entities.len() as u64) as usize;
                self.entities[i].clone()
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// One request; `None` once the daemon is gone.
    fn step(&mut self, seen: &Mutex<Accepted>) -> Option<()> {
        let choice = self.rng.below(100);
        let seen_now = |f: &mut dyn FnMut(&mut Accepted)| f(&mut seen.lock().unwrap());
        match choice {
            0..=44 => {
                let target = format!("asn:{}", self.rng.below(300));
                let body = json!({
                    "kind": "test",
                    "target": target,
                    "params": {"times": 1 + self.rng.below(3), "round_ms": 2 + self.rng.below(20)},
                });
                let (status, reply) = self.call("POST", "/api/v1/tasks", Some(body))?;
                assert_eq!(status, 202, "submit refused: {reply}");
                let seed = self.seed;
                seen_now(&mut |a| a.reply("test", &target, &reply, seed));
            }
            45..=54 => {
                let targets = self.some_entities();
                let (status, reply) = self.call(
                    "POST",
                    "/api/v1/entities/rebuild",
                    Some(json!({"entities": targets})),
                )?;
                assert_eq!(status, 202, "entity refresh refused: {reply}");
                seen_now(&mut |a| a.refreshes += 1);
            }
            55..=61 => self.rebuild(json!({"all": true}), seen)?,
            62..=76 => {
                let targets = self.some_entities();
                self.rebuild(json!({ "targets": targets }), seen)?;
            }
            77..=97 => {
                // The newest ids are the likeliest to be still pending.
                let id = {
                    let a = seen.lock().unwrap();
                    let newest: Vec<u64> = a.tasks.keys().rev().take(5).copied().collect();
                    if newest.is_empty() {
                        return Some(());
                    }
                    newest[self.rng.below(newest.len() as u64) as usize]
                };
                let path = format!("/api/v1/tasks/{id}");
                let Some((status, reply)) = self.call("DELETE", &path, None) else {
                    seen_now(&mut |a| {
                        a.unanswered.insert(id);
                        a.deletes.push((id, 0));
                    });
                    return None;
                };
                seen_now(&mut |a| a.deletes.push((id, status)));
                match status {
                    // Canceling a running task cancels its follow-up too.
                    202 => seen_now(&mut |a| {
                        a.canceled.insert(id);
                        let follow_ups = reply["canceled_follow_ups"].as_array().unwrap();
                        a.canceled
                            .extend(follow_ups.iter().map(|f| f.as_u64().unwrap()));
                    }),
                    204 => seen_now(&mut |a| {
                        a.removed.insert(id);
                    }),
                    // Already removed, or ending right now.
                    404 | 409 => {}
                    other => panic!("DELETE of task {id} answered {other}: {reply}"),
                }
            }
            _ => {
                edit_feed(&self.feed);
                seen_now(&mut |a| a.edits += 1);
            }
        }
        Some(())
    }

    fn rebuild(&mut self, body: Value, seen: &Mutex<Accepted>) -> Option<()> {
        let (status, reply) = self.call("POST", "/api/v1/rebuild", Some(body))?;
        assert_eq!(status, 202, "rebuild refused: {reply}");
        let mut a = seen.lock().unwrap();
        for task in reply["tasks"].as_array().unwrap() {
            if task.get("id").is_some() {
                let target = task["target"].as_str().unwrap();
                a.reply("artifact", target, task, self.seed);
            }
        }
        Some(())
    }

    fn run(mut self, seen: Arc<Mutex<Accepted>>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            if self.step(&seen).is_none() {
                break;
            }
        }
    }
}

/// Every file under `root` by relative path, with its content.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
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
                !name.starts_with('.') && !name.contains(".tmp-"),
                "temporary file left behind: {}",
                path.display()
            );
            let relative = path.strip_prefix(root).unwrap().to_owned();
            files.insert(relative, std::fs::read(&path).unwrap());
        }
    }
    files
}

/// Every task in the history, by id: nothing pending, and each id listed
/// once over the two categories of ended tasks (one terminal state).
fn history(daemon: &Daemon) -> BTreeMap<u64, Value> {
    let (_, pending) = daemon.call("GET", "/api/v1/tasks?status=pending", None);
    assert_eq!(pending["total"], 0, "tasks left pending: {pending}");
    let mut all = BTreeMap::new();
    for category in ["finished", "failed"] {
        let mut offset = 0;
        loop {
            let path = format!("/api/v1/tasks?status={category}&limit=1000&offset={offset}");
            let (status, page) = daemon.call("GET", &path, None);
            assert_eq!(status, 200, "{page}");
            let tasks = page["tasks"].as_array().unwrap();
            for task in tasks {
                let id = task["id"].as_u64().unwrap();
                if let Some(first) = all.insert(id, task.clone()) {
                    panic!("task {id} listed twice: {first} and {task}");
                }
            }
            offset += tasks.len();
            if tasks.is_empty() || offset as u64 >= page["total"].as_u64().unwrap() {
                break;
            }
        }
    }
    all
}

/// Checks the one terminal state of accepted task `id`.
fn check_terminal(id: u64, task: &Value, all: &BTreeMap<u64, Value>, seen: &Accepted) {
    let ended = |t: &Value| {
        matches!(
            t["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        )
    };
    match task["state"].as_str() {
        Some("succeeded") => {}
        Some("merged") => {
            let into = task["merged_into"]
                .as_u64()
                .unwrap_or_else(|| panic!("merged task names its target: {task}"));
            // The task it merged into may itself have been removed by a
            // DELETE (or merged on): follow while it is listed.
            if let Some(target) = all.get(&into) {
                assert!(
                    ended(target) || target["state"] == "merged",
                    "task {id} merged into {into}, which did not end: {target}"
                );
            }
        }
        Some("canceled") => assert!(
            seen.canceled.contains(&id) || seen.unanswered.contains(&id),
            "task {id} canceled though nobody canceled it: {task}; deletes of it: {:?}",
            seen.deletes
                .iter()
                .filter(|d| d.0 == id)
                .collect::<Vec<_>>()
        ),
        // Interrupted by a crash on each of its attempts: a legitimate end.
        Some("failed") => assert!(
            task["error"]
                .as_str()
                .is_some_and(|e| e.contains("interrupted")),
            "task {id} failed: {task}"
        ),
        _ => panic!("task {id} did not end: {task}"),
    }
}

fn seed() -> u64 {
    match std::env::var("CRASH_LOOP_SEED") {
        Ok(s) => s.parse().expect("CRASH_LOOP_SEED is a u64"),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

#[test]
fn sigkill_under_a_mixed_workload_loses_no_task_and_leaves_artifacts_of_a_clean_rebuild() {
    let seed = seed();
    let long = std::env::var("LONG_TESTS").is_ok_and(|v| v == "1");
    let kills = if long { 100 } else { 20 };
    eprintln!("crash test seed {seed} (replay with CRASH_LOOP_SEED={seed}), {kills} kills");
    let mut rng = Rng(seed | 1);
    let setup = Setup::new(&generate_ip2asn(FEED_LINES, seed));
    let entities = entities_of(&std::fs::read_to_string(setup.feed_path()).unwrap());
    let seen = Arc::new(Mutex::new(Accepted::default()));
    for round in 0..kills {
        let daemon = setup.start();
        let stop = Arc::new(AtomicBool::new(false));
        let load = Load {
            base: daemon.base.clone(),
            token: daemon.token.clone(),
            feed: setup.feed_path(),
            entities: entities.clone(),
            rng: Rng(rng.next() | 1),
            seed,
        };
        let generator = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || load.run(seen, stop))
        };
        std::thread::sleep(Duration::from_millis(100 + rng.below(700)));
        daemon.kill9();
        stop.store(true, Ordering::SeqCst);
        generator.join().unwrap();
        // Feeds change while the daemon is down, too.
        if rng.below(4) == 0 {
            edit_feed(&setup.feed_path());
            seen.lock().unwrap().edits += 1;
        }
        eprintln!(
            "round {round}: {} task ids accepted so far",
            seen.lock().unwrap().tasks.len()
        );
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "accepted {} task ids, {} cancels, {} removals, {} entity refreshes; {} feed edits",
        seen.tasks.len(),
        seen.canceled.len(),
        seen.removed.len(),
        seen.refreshes,
        seen.edits
    );
    let kinds: BTreeSet<&str> = seen.tasks.values().map(|(k, _)| k.as_str()).collect();
    assert!(
        seen.tasks.len() > 20 && kinds.len() == 2 && seen.edits > 0,
        "the workload was too small to prove anything (seed {seed})"
    );

    let daemon = setup.start();
    daemon.wait_artifacts_ok(300, 1);
    let all = history(&daemon);
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for (&id, (kind, target)) in &seen.tasks {
        if seen.removed.contains(&id) {
            let (status, body) = daemon.call("GET", &format!("/api/v1/tasks/{id}"), None);
            assert_eq!(status, 404, "removed task {id} is back: {body}");
            continue;
        }
        let Some(task) = all.get(&id) else {
            assert!(
                seen.unanswered.contains(&id),
                "accepted task {id} was lost (seed {seed}): {:?}",
                daemon.call("GET", &format!("/api/v1/tasks/{id}"), None)
            );
            continue;
        };
        assert_eq!(
            (task["kind"].as_str(), task["target"].as_str()),
            (Some(kind.as_str()), Some(target.as_str())),
            "task {id} is not the one accepted (seed {seed}): {task}"
        );
        check_terminal(id, task, &all, &seen);
        *states
            .entry(task["state"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    eprintln!("terminal states of the accepted tasks: {states:?}");
    let artifacts = tree(&setup.artifacts());
    drop(daemon);

    // A fresh daemon on a new data directory from the final feed.
    let clean = Setup::new(&std::fs::read_to_string(setup.feed_path()).unwrap());
    let fresh = clean.start();
    fresh.wait_artifacts_ok(120, 1);
    let rebuilt = tree(&clean.artifacts());
    drop(fresh);
    let final_entities = entities_of(&std::fs::read_to_string(clean.feed_path()).unwrap());
    assert_eq!(
        rebuilt.len(),
        final_entities.len(),
        "one artifact per entity"
    );
    let differing: Vec<&PathBuf> = rebuilt
        .keys()
        .chain(artifacts.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|p| artifacts.get(*p) != rebuilt.get(*p))
        .collect();
    assert!(
        differing.is_empty(),
        "{} artifacts differ from a clean rebuild (seed {seed}), e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
}
