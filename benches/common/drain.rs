//! The in-process workloads the actor-core bench and the side-by-side
//! harness both run, so that their figures describe the same work: a drain
//! of no-op tasks with distinct targets through the Supervisor, its floor (a
//! tokio task per job under a semaphore), and a flood of duplicate submits
//! over a few targets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use groundcrew_actors::prelude::*;
use groundcrew_actors::{EntityName, PanelSnapshot, TaskStore};
use tokio::sync::{Notify, Semaphore};

/// `targets` distinct entity targets, `asn:0` on.
pub fn targets(targets: usize) -> Vec<Target> {
    (0..targets)
        .map(|i| Target::Entity(EntityName::new(&format!("asn:{i}")).unwrap()))
        .collect()
}

/// Submits `tasks` no-op tasks with distinct targets to a Supervisor with
/// `limit` workers on `store`, and waits until all ran. Runs inside an
/// actix system, which it stops.
pub async fn groundcrew_drain(tasks: usize, limit: usize, store: Arc<dyn TaskStore>) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let mut kinds = Registry::new();
    let (d, n) = (done.clone(), all_done.clone());
    kinds
        .register("noop", move |_ctx: TaskContext| {
            let (d, n) = (d.clone(), n.clone());
            async move {
                if d.fetch_add(1, Ordering::SeqCst) + 1 == tasks {
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
    let specs: Vec<TaskSpec> = targets(tasks)
        .into_iter()
        .map(|t| TaskSpec::new("noop", t, Trigger::Api))
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

/// The floor of [`groundcrew_drain`]: a tokio task per job under a
/// semaphore of `limit` permits.
pub async fn tokio_drain(tasks: usize, limit: usize) -> Duration {
    let permits = Arc::new(Semaphore::new(limit));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
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

/// Submits `submits` requests round-robin over `over` targets with no
/// worker free, so all but `over` merge; runs inside an actix system,
/// which it stops.
pub async fn groundcrew_coalesce(submits: usize, over: usize) -> Duration {
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
    let targets = targets(over);
    let start = Instant::now();
    for round in 0..submits / 1000 {
        let sends = (0..1000).map(|i| {
            let t = targets[(round * 1000 + i) % over].clone();
            sup.send(Submit(TaskSpec::new("refresh", t, Trigger::FeedUpdate)))
        });
        futures::future::join_all(sends).await;
    }
    let elapsed = start.elapsed();
    let panel = sup.send(PanelSnapshot { pending_limit: 0 }).await.unwrap();
    assert_eq!(panel.pending_total, over);
    actix::System::current().stop();
    elapsed
}

/// The floor of [`groundcrew_coalesce`]: counting the same requests in a
/// `HashMap`.
pub fn hashmap_coalesce(submits: usize, over: usize) -> Duration {
    let targets = targets(over);
    let start = Instant::now();
    let mut counts: HashMap<(String, Target), u64> = HashMap::new();
    for i in 0..submits {
        *counts
            .entry(("refresh".to_owned(), targets[i % over].clone()))
            .or_default() += 1;
    }
    std::hint::black_box(&counts);
    start.elapsed()
}
