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

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use groundcrew::store::SqliteStore;
use groundcrew_actors::prelude::*;
use groundcrew_actors::{EntityName, MemoryStore, PanelSnapshot, SubmitMany, TaskStore};
use tokio::sync::{Notify, Semaphore};

const TASKS: usize = 10_000;
const DUPLICATES: usize = 1_000_000;
/// Duplicates for the one-message-per-request variant.
const SINGLE_DUPLICATES: usize = 100_000;
const TARGETS: usize = 1_000;

fn targets() -> Vec<Target> {
    (0..TARGETS)
        .map(|i| Target::Entity(EntityName::new(&format!("asn:{i}")).unwrap()))
        .collect()
}

/// Submits `TASKS` no-op tasks with distinct targets and waits until all ran.
async fn groundcrew_drain(limit: usize, store: Arc<dyn TaskStore>) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let mut kinds = Registry::new();
    let (d, n) = (done.clone(), all_done.clone());
    kinds
        .register("noop", move |_ctx: TaskContext| {
            let (d, n) = (d.clone(), n.clone());
            async move {
                if d.fetch_add(1, Ordering::SeqCst) + 1 == TASKS {
                    n.notify_one();
                }
                Ok(serde_json::Value::Null)
            }
        })
        .unwrap();
    let sup = Supervisor::builder()
        .registry(kinds)
        .store(store)
        .pool("background", limit)
        .start()
        .await
        .unwrap();
    let specs: Vec<TaskSpec> = (0..TASKS)
        .map(|i| {
            TaskSpec::new(
                "noop",
                Target::Entity(EntityName::new(&format!("asn:{i}")).unwrap()),
                Trigger::Api,
            )
        })
        .collect();
    let start = Instant::now();
    for chunk in specs.chunks(1000) {
        let replies =
            futures::future::join_all(chunk.iter().map(|s| sup.send(Submit(s.clone())))).await;
        assert!(replies.into_iter().all(|r| r.unwrap().is_ok()));
    }
    all_done.notified().await;
    let elapsed = start.elapsed();
    actix::System::current().stop();
    elapsed
}

/// The floor: a tokio task per job under a semaphore of `limit` permits.
async fn tokio_drain(limit: usize) -> Duration {
    let permits = Arc::new(Semaphore::new(limit));
    let start = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let permits = permits.clone();
            tokio::spawn(async move {
                let _p = permits.acquire().await.unwrap();
                std::hint::black_box(i);
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

/// `duplicates` requests over [`TARGETS`], 1,000 at a time: one `Submit`
/// each, or one `SubmitMany` per 1,000 with `many`.
async fn groundcrew_coalesce(duplicates: usize, many: bool) -> Duration {
    let mut kinds = Registry::new();
    kinds
        .register("refresh", |_ctx: TaskContext| async {
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    let sup = Supervisor::builder()
        .registry(kinds)
        .pool("background", 0)
        .start()
        .await
        .unwrap();
    let targets = targets();
    let start = Instant::now();
    for round in 0..duplicates / 1000 {
        let specs = (0..1000).map(|i| {
            let t = targets[(round * 1000 + i) % TARGETS].clone();
            TaskSpec::new("refresh", t, Trigger::FeedUpdate)
        });
        if many {
            let replies = sup.send(SubmitMany(specs.collect())).await.unwrap();
            assert!(replies.iter().all(Result::is_ok));
        } else {
            let replies = futures::future::join_all(specs.map(|s| sup.send(Submit(s)))).await;
            assert!(replies.into_iter().all(|r| r.unwrap().is_ok()));
        }
    }
    let elapsed = start.elapsed();
    let panel = sup.send(PanelSnapshot { pending_limit: 0 }).await.unwrap();
    assert_eq!(panel.pending_total, TARGETS);
    actix::System::current().stop();
    elapsed
}

fn hashmap_coalesce() -> Duration {
    let targets = targets();
    let start = Instant::now();
    let mut counts: HashMap<(String, Target), u64> = HashMap::new();
    for i in 0..DUPLICATES {
        *counts
            .entry(("refresh".to_owned(), targets[i % TARGETS].clone()))
            .or_default() += 1;
    }
    std::hint::black_box(&counts);
    start.elapsed()
}

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
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(TASKS as u64));
    for limit in [2, 16] {
        g.bench_with_input(
            BenchmarkId::new("groundcrew", format!("limit_{limit}")),
            &limit,
            |b, &l| {
                b.iter_custom(|iters| {
                    in_actix(
                        move || groundcrew_drain(l, Arc::new(MemoryStore::new())),
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
                b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(tokio_drain(l))).sum())
            },
        );
    }
    g.finish();
}

fn durable_submit_to_complete(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_submit_to_complete");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(TASKS as u64));
    g.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            in_actix(|| groundcrew_drain(16, Arc::new(MemoryStore::new())), iters)
        })
    });
    g.bench_function("sqlite", |b| {
        b.iter_custom(|iters| {
            in_actix(
                || async {
                    let dir = tempfile::tempdir().unwrap();
                    let store = SqliteStore::open(dir.path().join("bench.db")).unwrap();
                    groundcrew_drain(16, Arc::new(store)).await
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
        b.iter_custom(|iters| in_actix(|| groundcrew_coalesce(DUPLICATES, true), iters))
    });
    g.bench_function("hashmap_floor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| hashmap_coalesce()).sum())
    });
    g.throughput(Throughput::Elements(SINGLE_DUPLICATES as u64));
    g.bench_function("submit", |b| {
        b.iter_custom(|iters| in_actix(|| groundcrew_coalesce(SINGLE_DUPLICATES, false), iters))
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
