//! Cancel of queued, running and follow-up work.

mod common;

use common::*;
use groundcrew_actors::{
    Cancel, CancelError, Registry, SubmitOutcome, TaskId, TaskState, TaskStore,
};

#[actix_rt::test]
async fn canceling_a_queued_task_removes_it_and_records_it_canceled() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 0).await;
    let t = submit(&sup, "refresh", "asn:1").await;
    let reply = sup.send(Cancel(t.id)).await.unwrap().unwrap();
    assert_eq!(reply.state, TaskState::Canceled);
    assert_eq!(panel(&sup).await.pending_total, 0);
    let r = store.get(t.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.attempts), (TaskState::Canceled, 0));
    // A new request for the key queues afresh; the canceled task never runs.
    let again = submit(&sup, "refresh", "asn:1").await;
    assert_eq!(again.outcome, SubmitOutcome::Queued);
    assert_ne!(again.id, t.id);
    assert!(matches!(
        sup.send(Cancel(t.id)).await.unwrap(),
        Err(CancelError::AlreadyEnded {
            state: TaskState::Canceled,
            ..
        })
    ));
    assert!(matches!(
        sup.send(Cancel(TaskId(999))).await.unwrap(),
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
    let reply = sup.send(Cancel(t.id)).await.unwrap().unwrap();
    assert_eq!(reply.state, TaskState::Running);
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
        sup.send(Cancel(f.id)).await.unwrap().unwrap().state,
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
    sup.send(Cancel(t.id)).await.unwrap().unwrap();
    let r = wait_ended(&store, t.id).await;
    assert_eq!(r.state, TaskState::Canceled);
    assert!(r.progress.unwrap().done < 1000);
}
