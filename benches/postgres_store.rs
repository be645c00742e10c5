//! Durable task throughput of the PostgreSQL store: group commit (one
//! statement per batch) against one statement per write, on one throwaway
//! PostgreSQL 15 server with `fsync=on`, in the same run.
//!
//! As in `sqlite_store`, each task is two durable writes (queued, then
//! succeeded) and many writers run at once. Without PostgreSQL installed
//! the bench prints why and measures nothing.

#[path = "../tests/common/pg.rs"]
mod pg;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use groundcrew::store::PostgresStore;

#[path = "common/durable.rs"]
mod durable;

use durable::drain;

fn durable_tasks(c: &mut Criterion) {
    let Some(cluster) = pg::PgCluster::start_durable() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("postgres_store");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    for (name, max_batch, tasks) in [
        ("group_commit", groundcrew::store::DEFAULT_MAX_BATCH, 20_000),
        ("statement_per_write", 1, 1_000),
    ] {
        let url = cluster.create_database();
        let store = Arc::new(PostgresStore::open_with_max_batch(&url, max_batch).unwrap());
        group.throughput(Throughput::Elements(tasks));
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| drain(Arc::clone(&store), tasks))
        });
        eprintln!("{name}: {} commits in all", store.commits());
    }
    group.finish();
}

criterion_group!(benches, durable_tasks);
criterion_main!(benches);
