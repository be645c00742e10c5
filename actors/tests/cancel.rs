//! Cancel of queued, running and follow-up work.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use groundcrew_actors::{
    Cancel, CancelError, Drain, Registry, SubmitOutcome, TaskError, TaskId, TaskState, TaskStore,
};

#[actix_rt::test]
async fn canceling_a_queued_task_removes_it_and_records_it_canceled() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 0).await;
    let t = submit(&sup, "refresh", "asn:1").await;
    let reply = sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    assert_eq!(reply.state, TaskState::Canceled);
    assert_eq!(panel(&sup).await.pending_total, 0);
    let r = store.get(t.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.attempts), (TaskState::Canceled, 0));
    // A new request for the key queues afresh; the canceled task never runs.
    let again = submit(&sup, "refresh", "asn:1").await;
    assert_eq!(again.outcome, SubmitOutcome::Queued);
    assert_ne!(again.id, t.id);
    assert!(matches!(
        sup.send(Cancel::new(t.id)).await.unwrap(),
        Err(CancelError::AlreadyEnded {
            state: TaskState::Canceled,
            ..
        })
    ));
    assert!(matches!(
        sup.send(Cancel::new(TaskId(999))).await.unwrap(),
        Err(CancelError::NotFound(_))
    ));
}

#[actix_rt::test]
async fn canceling_a_running_task_ends_it_canceled_and_cancels_its_follow_up() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 2).await;
    let t = submit(&sup, "refresh", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let f = submit(&sup, "refresh", "asn:1").await;
    assert!(matches!(f.outcome, SubmitOutcome::FollowUp { .. }));
    let reply = sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    assert_eq!(reply.state, TaskState::Canceling);
    assert_eq!(reply.canceled_follow_ups, [f.id]);
    assert_eq!(wait_ended(&store, t.id).await.state, TaskState::Canceled);
    assert_eq!(wait_ended(&store, f.id).await.state, TaskState::Canceled);
    let p = wait_panel(&sup, "idle", |p| p.running.is_empty()).await;
    assert_eq!(p.pending_total, 0);
    assert_eq!(
        gate.started.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the follow-up never ran"
    );
}

#[actix_rt::test]
async fn canceling_a_follow_up_leaves_the_running_task_alone() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 2).await;
    let t = submit(&sup, "refresh", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let f = submit(&sup, "refresh", "asn:1").await;
    assert_eq!(
        sup.send(Cancel::new(f.id)).await.unwrap().unwrap().state,
        TaskState::Canceled
    );
    gate.open(1);
    assert_eq!(wait_ended(&store, t.id).await.state, TaskState::Succeeded);
    assert_eq!(
        store.get(f.id).await.unwrap().unwrap().state,
        TaskState::Canceled
    );
    // With the follow-up gone, a new request after the run queues afresh.
    wait_panel(&sup, "idle", |p| p.running.is_empty()).await;
    assert_eq!(
        submit(&sup, "refresh", "asn:1").await.outcome,
        SubmitOutcome::Queued
    );
}

#[actix_rt::test]
async fn built_in_test_kind_honors_cancel_between_rounds() {
    let mut registry = Registry::new();
    registry
        .register("test", groundcrew_actors::TestKind)
        .unwrap();
    let (sup, store) = start(registry, 1).await;
    let spec = spec("test", "asn:1").with_params(serde_json::json!({"times": 1000, "round_ms": 5}));
    let t = sup
        .send(groundcrew_actors::Submit(spec))
        .await
        .unwrap()
        .unwrap();
    let p = wait_panel(&sup, "progress", |p| {
        p.running
            .first()
            .and_then(|t| t.progress)
            .is_some_and(|pr| pr.done >= 2)
    })
    .await;
    assert_eq!(p.running[0].progress.unwrap().total, 1000);
    assert_eq!(p.running[0].stage.as_deref(), Some("counting"));
    sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    let r = wait_ended(&store, t.id).await;
    assert_eq!(r.state, TaskState::Canceled);
    assert!(r.progress.unwrap().done < 1000);
}

/// A kind that, once canceled, waits at `gate` and then returns an error
/// other than `TaskError::Canceled`: `retryable` or fatal.
fn errs_on_cancel(
    registry: &mut Registry,
    name: &str,
    retryable: bool,
    gate: Gate,
) -> Arc<AtomicUsize> {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    registry
        .register(name, move |ctx: groundcrew_actors::TaskContext| {
            let (s, gate) = (s.clone(), gate.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                ctx.canceled().await;
                gate.permits.acquire().await.unwrap().forget();
                let message = "connection reset while stopping";
                Err(if retryable {
                    TaskError::retryable(message)
                } else {
                    TaskError::fatal(message)
                })
            }
        })
        .unwrap();
    started
}

/// Issue 15, item 8: whatever error a canceled task returns, it ends
/// canceled: not retried, not failed.
#[actix_rt::test]
async fn a_canceled_task_that_returns_any_error_ends_canceled() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    let retried = errs_on_cancel(&mut registry, "flaky", true, gate.clone());
    let failing = errs_on_cancel(&mut registry, "fatal", false, gate.clone());
    let (sup, store) = start(registry, 2).await;
    let a = submit(&sup, "flaky", "asn:1").await;
    let b = submit(&sup, "fatal", "asn:1").await;
    wait_panel(&sup, "both running", |p| p.running.len() == 2).await;
    for id in [a.id, b.id] {
        sup.send(Cancel::new(id)).await.unwrap().unwrap();
    }
    gate.open(2);
    for id in [a.id, b.id] {
        let r = wait_ended(&store, id).await;
        assert_eq!((r.state, r.attempts), (TaskState::Canceled, 1), "{r:?}");
        assert!(
            r.error.as_deref().unwrap().contains("connection reset"),
            "{:?}",
            r.error
        );
    }
    wait_panel(&sup, "idle", |p| {
        p.running.is_empty() && p.pending_total == 0
    })
    .await;
    assert_eq!(retried.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(failing.load(Ordering::SeqCst), 1);
}

/// Issue 15, item 8: an operator's cancel stands when a drain begins before
/// the task has stopped; it is not queued again for the next start.
#[actix_rt::test]
async fn an_operator_cancel_stands_through_a_drain() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    errs_on_cancel(&mut registry, "flaky", true, gate.clone());
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "flaky", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    let drain = sup.send(Drain {
        timeout: Duration::from_millis(10),
        grace: Duration::from_secs(10),
    });
    let opener = async {
        // Past the drain's deadline, where it cancels what still runs.
        tokio::time::sleep(Duration::from_millis(300)).await;
        gate.open(1);
    };
    let (report, ()) = tokio::join!(drain, opener);
    assert_eq!(report.unwrap().requeued, 0);
    let r = store.get(t.id).await.unwrap().unwrap();
    assert_eq!(r.state, TaskState::Canceled);
}

/// A canceled run that has not stopped yet is `canceling` in the store and
/// the panel, not `canceled`: the cancel is confirmed only by the run's end.
#[actix_rt::test]
async fn a_running_task_is_canceling_until_its_run_has_ended() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let mut registry = Registry::new();
    let r = Arc::clone(&release);
    registry
        .register("stubborn", move |_ctx: groundcrew_actors::TaskContext| {
            let release = Arc::clone(&r);
            // Ignores its cancellation until released.
            async move {
                release.acquire().await.expect("open").forget();
                Err::<serde_json::Value, _>(TaskError::fatal("stopped late"))
            }
        })
        .unwrap();
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "stubborn", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let reply = sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    assert_eq!(reply.state, TaskState::Canceling);
    // Durable before the answer, and shown on the panel.
    assert_eq!(
        store.get(t.id).await.unwrap().unwrap().state,
        TaskState::Canceling
    );
    let p = wait_panel(&sup, "canceling", |p| {
        p.running.iter().any(|r| r.state == TaskState::Canceling)
    })
    .await;
    assert_eq!(
        p.workers.active, 1,
        "a canceling run still holds its worker"
    );
    // A second cancel confirms the same state.
    let again = sup.send(Cancel::new(t.id)).await.unwrap().unwrap();
    assert_eq!(again.state, TaskState::Canceling);
    release.add_permits(1);
    let ended = wait_ended(&store, t.id).await;
    assert_eq!(ended.state, TaskState::Canceled);
    wait_panel(&sup, "idle", |p| p.running.is_empty()).await;
}
