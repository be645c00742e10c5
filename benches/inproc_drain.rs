//! The groundcrew side of benches/compare/run.sh's in-process rows: each
//! workload once, printed as one JSON line per figure (`system`, `tasks`,
//! `limit`, `secs`, `per_s`), beside its floor from the same run. Not a
//! criterion bench: the harness wants one number per system and run.
//!
//! Usage: `cargo bench --bench inproc_drain -- [TASKS]` (default 10,000).

#[path = "common/drain.rs"]
mod drain;

use std::sync::Arc;
use std::time::Duration;

use groundcrew::store::SqliteStore;
use groundcrew_actors::MemoryStore;

const SUBMITS: usize = 1_000_000;
const OVER: usize = 1_000;

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
    report(
        "hashmap-floor-duplicates",
        SUBMITS,
        0,
        drain::hashmap_coalesce(SUBMITS, OVER),
    );
    let elapsed = actix::System::new().block_on(drain::groundcrew_coalesce(SUBMITS, OVER));
    report("groundcrew-duplicates", SUBMITS, 0, elapsed);
}
