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
use groundcrew_actors::{
    Change, Priority, TaskId, TaskRecord, TaskSpec, TaskState, TaskStore, Timestamp, Trigger,
};

/// Concurrent writers, like task actors reporting at once.
const WRITERS: u64 = 256;

fn record(id: TaskId, state: TaskState) -> TaskRecord {
    let target = format!("bench:t{}", id.0).parse().unwrap();
    let mut r = TaskRecord::new_queued(
        id,
        TaskSpec::new("noop", target, Trigger::Api),
        "default".into(),
        Priority::AUTOMATIC,
        Timestamp::now(),
    );
    r.state = state;
    r.attempts = 1;
    r.result = Some(serde_json::Value::Null);
    r.finished_at = state.is_terminal().then(Timestamp::now);
    r
}

/// Queues and finishes `tasks` tasks from [`WRITERS`] concurrent writers,
/// awaiting each write's durability.
async fn drain(store: Arc<PostgresStore>, tasks: u64) {
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            let count = tasks / WRITERS + u64::from(w < tasks % WRITERS);
            tokio::spawn(async move {
                for _ in 0..count {
                    let id = store.allocate_id();
                    for state in [TaskState::Queued, TaskState::Succeeded] {
                        let change = Change::Put(Box::new(record(id, state)));
                        TaskStore::write(&*store, vec![change]).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}

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
