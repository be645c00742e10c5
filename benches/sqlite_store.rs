//! Durable task throughput of the SQLite store: group commit against one
//! transaction (and one sync) per write, in the same run on the same disk.
//!
//! Each task is two durable writes, as the runtime makes them: the insert
//! when it is queued and the put of its terminal state. Many writers run at
//! once, as many task actors would. The baseline does fewer tasks because
//! every write pays a full WAL sync; criterion reports both in tasks/s.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use groundcrew::store::SqliteStore;

#[path = "common/durable.rs"]
mod durable;

use durable::drain;

fn durable_tasks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("sqlite_store");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));

    for (name, max_batch, tasks) in [
        ("group_commit", groundcrew::store::DEFAULT_MAX_BATCH, 20_000),
        ("transaction_per_write", 1, 400),
    ] {
        let store = Arc::new(
            SqliteStore::open_with_max_batch(dir.path().join(format!("{name}.db")), max_batch)
                .unwrap(),
        );
        group.throughput(Throughput::Elements(tasks));
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| drain(Arc::clone(&store), tasks))
        });
        let writes = store.commits();
        eprintln!("{name}: {writes} commits in all");
    }
    group.finish();
}

criterion_group!(benches, durable_tasks);
criterion_main!(benches);
