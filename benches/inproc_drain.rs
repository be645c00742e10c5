//! The groundcrew side of benches/compare/run.sh's in-process rows: each
//! workload once, printed as one JSON line per figure (`system`, `tasks`,
//! `limit`, `secs`, `per_s`), beside its floor from the same run. Not a
//! criterion bench: the harness wants one number per system and run.
//!
//! `groundcrew-sqlite-history` is the SQLite drain again on a store that
//! already holds [`HISTORY`] finished tasks (the issue's "flat at 1M
//! finished tasks in history"), with the supervisor's start on that store
//! timed as `start_secs`.
//!
//! Usage: `cargo bench --bench inproc_drain -- [TASKS]` (default 10,000).

#[path = "common/drain.rs"]
mod drain;
// Only its record builder: the rest is the store benches' workload.
#[allow(dead_code)]
#[path = "common/durable.rs"]
mod durable;

use std::sync::Arc;
use std::time::{Duration, Instant};

use groundcrew::store::SqliteStore;
use groundcrew_actors::{Change, MemoryStore, TaskState, TaskStore};

const SUBMITS: usize = 1_000_000;
const OVER: usize = 1_000;
/// Finished tasks already in the store for `groundcrew-sqlite-history`.
const HISTORY: usize = 1_000_000;

/// Writes `n` finished no-op tasks into `store`, 10,000 per write.
fn fill_history(store: &SqliteStore, n: usize) {
    actix::System::new().block_on(async {
        for start in (0..n).step_by(10_000) {
            let changes = (start..n.min(start + 10_000))
                .map(|_| {
                    let record = durable::record(store.allocate_id(), TaskState::Succeeded);
                    Change::Put(record.into())
                })
                .collect();
            store.write(changes).await.unwrap();
        }
    });
}

fn report(system: &str, tasks: usize, limit: usize, elapsed: Duration) {
    println!(
        "{}",
        serde_json::json!({
            "system": system,
            "tasks": tasks,
            "limit": limit,
            "secs": elapsed.as_secs_f64(),
            "per_s": tasks as f64 / elapsed.as_secs_f64(),
        })
    );
}

fn main() {
    // `cargo bench` passes `--bench`; the one other argument is the count.
    let tasks = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("TASKS: a number of tasks"))
        .unwrap_or(10_000);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for limit in [2, 16] {
        let elapsed = tokio.block_on(drain::tokio_drain(tasks, limit));
        report("tokio-floor", tasks, limit, elapsed);
        let elapsed = actix::System::new().block_on(drain::groundcrew_drain(
            tasks,
            limit,
            Arc::new(MemoryStore::new()),
        ));
        report("groundcrew-memory", tasks, limit, elapsed);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("drain.db")).unwrap();
    let elapsed =
        actix::System::new().block_on(drain::groundcrew_drain(tasks, 16, Arc::new(store)));
    report("groundcrew-sqlite", tasks, 16, elapsed);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("drain.db")).unwrap();
    fill_history(&store, HISTORY);
    let whole = Instant::now();
    let elapsed =
        actix::System::new().block_on(drain::groundcrew_drain(tasks, 16, Arc::new(store)));
    let start = whole.elapsed() - elapsed;
    println!(
        "{}",
        serde_json::json!({
            "system": "groundcrew-sqlite-history",
            "tasks": tasks,
            "limit": 16,
            "history": HISTORY,
            "start_secs": start.as_secs_f64(),
            "secs": elapsed.as_secs_f64(),
            "per_s": tasks as f64 / elapsed.as_secs_f64(),
        })
    );
    report(
        "hashmap-floor-duplicates",
        SUBMITS,
        0,
        drain::hashmap_coalesce(SUBMITS, OVER),
    );
    let elapsed = actix::System::new().block_on(drain::groundcrew_coalesce(SUBMITS, OVER, true));
    report("groundcrew-duplicates", SUBMITS, 0, elapsed);
}
