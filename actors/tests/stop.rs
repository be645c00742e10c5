//! Issue 16: a cancel that confirms the stop, hard stops after the grace
//! period, timeouts, and the fencing of executions stopped hard.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use groundcrew_actors::{
    AwaitRunEnd, Cancel, EntityName, EntityWriter, FsSink, KindOptions, Manifest, MemoryStore,
    Metrics, PublishError, Registry, Supervisor, SupervisorBuilder, TaskContext, TaskState,
    TaskStore,
};
use tokio::sync::oneshot;

/// A task that never looks at its cancellation: it sleeps forever.
async fn oblivious(_ctx: TaskContext) -> groundcrew_actors::TaskResult {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// A supervisor builder for `registry` on `store`, pool `background` at 1.
fn one_worker(registry: Registry, store: &MemoryStore) -> SupervisorBuilder {
    Supervisor::builder()
        .registry(registry)
        .store(Arc::new(store.clone()))
        .pool("background", 1)
}

fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

#[actix_rt::test]
async fn a_task_ignoring_its_cancel_is_stopped_hard_after_the_grace_period() {
    let mut registry = Registry::new();
    registry.register("oblivious", oblivious).unwrap();
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "oblivious", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;

    let asked = Instant::now();
    let reply = sup
        .send(Cancel::new(t.id).with_grace(Duration::from_millis(300)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.state, TaskState::Canceling);
    assert_eq!(
        store.get(t.id).await.unwrap().unwrap().state,
        TaskState::Canceling,
        "canceling at once, not canceled before the run ended"
    );
    let ended = sup.send(AwaitRunEnd(t.id)).await.unwrap();
    assert_eq!(ended, Some(TaskState::Canceled));
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "not before the grace"
    );
    // Answered only once durable.
    let r = store.get(t.id).await.unwrap().unwrap();
    assert_eq!(r.state, TaskState::Canceled);
    assert_eq!(
        r.error.as_deref(),
        Some("canceled while running; stopped hard after the grace period")
    );
    assert_eq!(
        panel(&sup).await.workers.active,
        0,
        "the worker is free again"
    );
    assert_eq!(sup.send(AwaitRunEnd(t.id)).await.unwrap(), None);
}

#[actix_rt::test]
async fn a_second_cancel_with_a_shorter_grace_stops_sooner() {
    let mut registry = Registry::new();
    registry.register("oblivious", oblivious).unwrap();
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "oblivious", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let first = sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    assert_eq!(first.state, TaskState::Canceling);
    // The default grace is 10 s; this one ends it now.
    let second = sup
        .send(Cancel::new(t.id).with_grace(Duration::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.state, TaskState::Canceling);
    let r = tokio::time::timeout(Duration::from_secs(5), wait_ended(&store, t.id))
        .await
        .expect("stopped well before the pool's grace of 10 s");
    assert_eq!(r.state, TaskState::Canceled);
}

#[actix_rt::test]
async fn the_pool_grace_applies_when_the_cancel_names_none() {
    let mut registry = Registry::new();
    registry.register("oblivious", oblivious).unwrap();
    let store = MemoryStore::new();
    let sup = one_worker(registry, &store)
        .cancel_grace("background", Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let t = submit(&sup, "oblivious", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), wait_ended(&store, t.id))
        .await
        .expect("stopped after the pool's 100 ms");
    assert_eq!(r.state, TaskState::Canceled);
}

#[actix_rt::test]
async fn a_task_past_its_timeout_fails_and_is_retried_while_attempts_remain() {
    let mut registry = Registry::new();
    let options = KindOptions {
        max_attempts: 2,
        backoff_base: Duration::from_millis(10),
        timeout: Some(Duration::from_millis(200)),
        ..KindOptions::default()
    };
    registry
        .register_with("oblivious", oblivious, options)
        .unwrap();
    let store = MemoryStore::new();
    let sup = one_worker(registry, &store)
        .cancel_grace("background", Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let t = submit(&sup, "oblivious", "asn:1").await;
    let r = wait_ended(&store, t.id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Failed, 2));
    assert_eq!(r.error.as_deref(), Some("timed out after 0.2 s"));
    assert_eq!(r.errors.len(), 2);
    // A run token per claim.
    assert_eq!(r.run, Some(groundcrew_actors::RunToken(2)));
}

#[actix_rt::test]
async fn a_task_that_stops_on_its_own_after_a_timeout_still_fails() {
    let mut registry = Registry::new();
    let options = KindOptions {
        max_attempts: 1,
        timeout: Some(Duration::from_millis(100)),
        ..KindOptions::default()
    };
    registry
        .register_with(
            "polite",
            |ctx: TaskContext| async move {
                ctx.canceled().await;
                Err(groundcrew_actors::TaskError::Canceled)
            },
            options,
        )
        .unwrap();
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "polite", "asn:1").await;
    let r = wait_ended(&store, t.id).await;
    assert_eq!(r.state, TaskState::Failed, "a timeout is no cancel: {r:?}");
    assert_eq!(r.error.as_deref(), Some("timed out after 0.1 s"));
}

/// A run stopped hard can no longer publish: what it still sends (here from
/// a thread it left behind) is refused as stale, counted, and the artifact
/// is not written.
#[actix_rt::test]
async fn a_publish_from_a_run_stopped_hard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FsSink::open(dir.path()).unwrap());
    let manifest = Arc::new(MemoryStore::new());
    let prometheus = prometheus::Registry::new();
    let metrics = Metrics::register(&prometheus).unwrap();
    let writer = EntityWriter::start(sink, manifest.clone(), metrics.clone());

    let (late_tx, late_rx) = oneshot::channel::<Result<(), PublishError>>();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let late_tx = std::sync::Mutex::new(Some((late_tx, ready_tx, go_rx)));
    let mut registry = Registry::new();
    registry
        .register_with(
            "leaky",
            move |ctx: TaskContext| {
                let (late, ready, go) = late_tx.lock().unwrap().take().expect("one run");
                async move {
                    let entity: EntityName = "asn:1".parse().unwrap();
                    ctx.publish(entity.clone(), "first\n", None).await?;
                    // Work it hands off and forgets, then it never checks its
                    // cancel: the spawned work outlives the hard stop.
                    let leaked = ctx.clone();
                    tokio::spawn(async move {
                        let _ = go.await;
                        let result = leaked.publish(entity, "late\n", None).await;
                        let _ = late.send(result.map(|_| ()));
                    });
                    let _ = ready.send(());
                    oblivious(ctx).await
                }
            },
            KindOptions {
                max_attempts: 1,
                ..KindOptions::default()
            },
        )
        .unwrap();
    let store = MemoryStore::new();
    let sup = one_worker(registry, &store)
        .writer(writer)
        .metrics(metrics)
        .start()
        .await
        .unwrap();
    let t = submit(&sup, "leaky", "asn:1").await;
    ready_rx.await.expect("the first publish went through");
    sup.send(Cancel::new(t.id).with_grace(Duration::from_millis(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sup.send(AwaitRunEnd(t.id)).await.unwrap(),
        Some(TaskState::Canceled)
    );
    go_tx.send(()).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), late_rx).await {
        Ok(Ok(Err(PublishError::StaleRun {
            task,
            stale,
            current,
            ..
        }))) => {
            assert_eq!((task, stale.0, current), (t.id, 1, None));
        }
        other => panic!("the late publish must be refused as stale: {other:?}"),
    }
    let entity: EntityName = "asn:1".parse().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("asn/1")).unwrap(),
        "first\n"
    );
    assert_eq!(store.get(t.id).await.unwrap().unwrap().attempts, 1);
    let record = manifest.artifact(&entity).await.unwrap().unwrap();
    assert_eq!(
        (record.task, record.run.map(|r| r.0)),
        (Some(t.id), Some(1))
    );
    assert_eq!(metric(&prometheus, "groundcrew_stale_runs_total"), 1.0);
    assert_eq!(metric(&prometheus, "groundcrew_task_hard_stops_total"), 1.0);
}

/// A run stopped hard after its timeout has lost its claim too.
#[actix_rt::test]
async fn a_publish_from_a_timed_out_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FsSink::open(dir.path()).unwrap());
    let manifest = Arc::new(MemoryStore::new());
    let writer = EntityWriter::start(sink, manifest.clone(), Metrics::unregistered().unwrap());
    let (leak_tx, leak_rx) = oneshot::channel::<TaskContext>();
    let leak_tx = std::sync::Mutex::new(Some(leak_tx));
    let mut registry = Registry::new();
    let options = KindOptions {
        max_attempts: 1,
        timeout: Some(Duration::from_millis(100)),
        ..KindOptions::default()
    };
    registry
        .register_with(
            "slow",
            move |ctx: TaskContext| {
                let leak = leak_tx.lock().unwrap().take().expect("one run");
                let _ = leak.send(ctx.clone());
                oblivious(ctx)
            },
            options,
        )
        .unwrap();
    let store = MemoryStore::new();
    let sup = one_worker(registry, &store)
        .writer(writer)
        .cancel_grace("background", Duration::ZERO)
        .start()
        .await
        .unwrap();
    let t = submit(&sup, "slow", "asn:1").await;
    let leaked = leak_rx.await.unwrap();
    let r = wait_ended(&store, t.id).await;
    assert_eq!(r.state, TaskState::Failed);
    let entity: EntityName = "asn:1".parse().unwrap();
    let late = leaked.publish(entity.clone(), "late\n", None).await;
    assert!(
        matches!(late, Err(PublishError::StaleRun { task, .. }) if task == t.id),
        "{late:?}"
    );
    assert!(leaked.is_canceled(), "a refused run is told to stop");
    assert_eq!(manifest.artifact(&entity).await.unwrap(), None);
}
