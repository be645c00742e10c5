//! Throughput of the actor core, each figure beside a floor measured in the
//! same run (these machines are noisy; compare ratios, not seconds).
//!
//! - `submit_to_complete/{groundcrew,tokio_floor}/limit_{2,16}`: N no-op tasks
//!   submitted and run to completion, against a plain tokio task per job
//!   under a semaphore.
//! - `durable_submit_to_complete/{memory,sqlite}`: the same drain at limit 16
//!   with every request, start and end journaled to SQLite (WAL,
//!   synchronous=FULL, group commit), against the in-memory store.
//! - `coalesce_duplicates/{submit_many,hashmap_floor}`: 1,000,000 submits
//!   over 1,000 targets with no worker free, so all but 1,000 merge, sent as
//!   `SubmitMany` messages of 1,000; against counting the same requests in a
//!   `HashMap`. `coalesce_duplicates/submit` sends one `Submit` per request
//!   (1,000 in flight), 100,000 of them to keep the run short.
//!
//! Samples are few and warm-ups short so that all the criterion benches
//! finish in under 3 minutes (issue 19).

#[path = "common/drain.rs"]
mod drain;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use drain::{groundcrew_coalesce, groundcrew_drain, hashmap_coalesce, tokio_drain};
use groundcrew::store::SqliteStore;
use groundcrew_actors::MemoryStore;

const TASKS: usize = 10_000;
const DUPLICATES: usize = 1_000_000;
/// One `Submit` per request costs a mailbox round trip each: fewer of them.
const SINGLE_DUPLICATES: usize = 100_000;
const TARGETS: usize = 1_000;

fn in_actix<F: std::future::Future<Output = Duration> + 'static>(
    f: impl Fn() -> F,
    iters: u64,
) -> Duration {
    (0..iters).map(|_| actix::System::new().block_on(f())).sum()
}

fn submit_to_complete(c: &mut Criterion) {
    let mut g = c.benchmark_group("submit_to_complete");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(TASKS as u64));
    for limit in [2, 16] {
        g.bench_with_input(
            BenchmarkId::new("groundcrew", format!("limit_{limit}")),
            &limit,
            |b, &l| {
                b.iter_custom(|iters| {
                    in_actix(
                        move || groundcrew_drain(TASKS, l, Arc::new(MemoryStore::new())),
                        iters,
                    )
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tokio_floor", format!("limit_{limit}")),
            &limit,
            |b, &l| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .build()
                    .unwrap();
                b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(tokio_drain(TASKS, l))).sum())
            },
        );
    }
    g.finish();
}

fn durable_submit_to_complete(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_submit_to_complete");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(TASKS as u64));
    g.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            in_actix(
                || groundcrew_drain(TASKS, 16, Arc::new(MemoryStore::new())),
                iters,
            )
        })
    });
    g.bench_function("sqlite", |b| {
        b.iter_custom(|iters| {
            in_actix(
                || async {
                    let dir = tempfile::tempdir().unwrap();
                    let store = SqliteStore::open(dir.path().join("bench.db")).unwrap();
                    groundcrew_drain(TASKS, 16, Arc::new(store)).await
                },
                iters,
            )
        })
    });
    g.finish();
}

fn coalesce_duplicates(c: &mut Criterion) {
    let mut g = c.benchmark_group("coalesce_duplicates");
    g.sample_size(10)
        .throughput(Throughput::Elements(DUPLICATES as u64));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("submit_many", |b| {
        b.iter_custom(|iters| in_actix(|| groundcrew_coalesce(DUPLICATES, TARGETS, true), iters))
    });
    g.bench_function("hashmap_floor", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| hashmap_coalesce(DUPLICATES, TARGETS))
                .sum()
        })
    });
    g.throughput(Throughput::Elements(SINGLE_DUPLICATES as u64));
    g.bench_function("submit", |b| {
        b.iter_custom(|iters| {
            in_actix(
                || groundcrew_coalesce(SINGLE_DUPLICATES, TARGETS, false),
                iters,
            )
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    submit_to_complete,
    durable_submit_to_complete,
    coalesce_duplicates
);
criterion_main!(benches);
