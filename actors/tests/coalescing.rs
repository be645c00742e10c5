//! The coalescing matrix, driven through the supervisor's messages.

mod common;

use common::*;
use groundcrew_actors::{Registry, SubmitOutcome, TaskId, TaskState, TaskStore};

async fn gated(
    limit: usize,
) -> (
    actix::Addr<groundcrew_actors::Supervisor>,
    groundcrew_actors::MemoryStore,
    Gate,
) {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, limit).await;
    (sup, store, gate)
}

#[actix_rt::test]
async fn second_request_for_queued_target_is_merged_with_its_trigger_kept() {
    let (sup, store, gate) = gated(0).await;
    let first = submit(&sup, "refresh", "country:DE").await;
    assert_eq!(first.outcome, SubmitOutcome::Queued);
    let mut op = spec("refresh", "country:DE");
    op.trigger = groundcrew_actors::Trigger::Operator;
    let second = sup
        .send(groundcrew_actors::Submit(op))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.id, second.outcome),
        (first.id, SubmitOutcome::Merged)
    );
    let p = panel(&sup).await;
    assert_eq!(p.pending.len(), 1);
    assert_eq!(p.pending[0].merged, 1);
    assert_eq!(p.pending[0].triggers.len(), 2);
    // The operator's request raised the task's priority.
    assert_eq!(
        p.pending[0].priority,
        groundcrew_actors::Priority::INTERACTIVE
    );
    let stored = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(stored.merged, 1);
    drop(gate);
}

#[actix_rt::test]
async fn second_request_for_running_target_creates_one_follow_up() {
    let (sup, store, gate) = gated(2).await;
    let first = submit(&sup, "refresh", "asn:13335").await;
    wait_panel(&sup, "first running", |p| p.running.len() == 1).await;
    let second = submit(&sup, "refresh", "asn:13335").await;
    assert_eq!(second.outcome, SubmitOutcome::FollowUp { behind: first.id });
    let third = submit(&sup, "refresh", "asn:13335").await;
    assert_eq!(
        (third.id, third.outcome),
        (second.id, SubmitOutcome::Merged)
    );

    let p = panel(&sup).await;
    assert_eq!(
        p.running.len(),
        1,
        "the follow-up must not run beside its predecessor"
    );
    assert_eq!(p.pending[0].waiting_behind, Some(first.id));
    assert_eq!(p.pending[0].merged, 1);

    gate.open(1);
    wait_panel(&sup, "follow-up running", |p| {
        p.running.iter().any(|t| t.id == second.id)
    })
    .await;
    gate.open(1);
    assert_eq!(
        wait_ended(&store, first.id).await.state,
        TaskState::Succeeded
    );
    assert_eq!(
        wait_ended(&store, second.id).await.state,
        TaskState::Succeeded
    );
    assert_eq!(
        gate.max_running.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[actix_rt::test]
async fn full_rebuild_is_coalesced_while_pending_or_running() {
    let (sup, store, gate) = gated(1).await;
    // Occupy the only worker so the rebuild stays pending.
    let blocker = submit(&sup, "refresh", "asn:1").await;
    let all = submit(&sup, "refresh", "all").await;
    assert_eq!(all.outcome, SubmitOutcome::Queued);
    let again = submit(&sup, "refresh", "all").await;
    assert_eq!((again.id, again.outcome), (all.id, SubmitOutcome::Merged));
    gate.open(1);
    wait_panel(&sup, "rebuild running", |p| {
        p.running.iter().any(|t| t.id == all.id)
    })
    .await;
    let while_running = submit(&sup, "refresh", "all").await;
    assert_eq!(
        (while_running.id, while_running.outcome),
        (all.id, SubmitOutcome::Merged)
    );
    assert_eq!(panel(&sup).await.pending_total, 0);
    gate.open(1);
    let done = wait_ended(&store, all.id).await;
    assert_eq!((done.state, done.merged), (TaskState::Succeeded, 2));
    assert_eq!(
        wait_ended(&store, blocker.id).await.state,
        TaskState::Succeeded
    );
}

#[actix_rt::test]
async fn pending_full_rebuild_absorbs_pending_refreshes() {
    let (sup, store, gate) = gated(1).await;
    let running = submit(&sup, "refresh", "asn:1").await;
    wait_panel(&sup, "asn:1 running", |p| p.running.len() == 1).await;
    let follow_up = submit(&sup, "refresh", "asn:1").await;
    let queued = submit(&sup, "refresh", "country:DE").await;
    let all = submit(&sup, "refresh", "all").await;
    assert_eq!(all.outcome, SubmitOutcome::Queued);
    let later = submit(&sup, "refresh", "asn:7").await;
    assert_eq!((later.id, later.outcome), (all.id, SubmitOutcome::Merged));

    let p = panel(&sup).await;
    assert_eq!(p.pending.iter().map(|t| t.id).collect::<Vec<_>>(), [all.id]);
    assert_eq!(
        p.pending[0].merged, 3,
        "two absorbed tasks and one later request"
    );
    for absorbed in [follow_up.id, queued.id] {
        let r = store.get(absorbed).await.unwrap().unwrap();
        assert_eq!((r.state, r.merged_into), (TaskState::Merged, Some(all.id)));
    }
    gate.open(2);
    assert_eq!(wait_ended(&store, all.id).await.state, TaskState::Succeeded);
    assert_eq!(
        wait_ended(&store, running.id).await.state,
        TaskState::Succeeded
    );
    assert_eq!(gate.started.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn operator_requests_run_before_automatic_refreshes() {
    let (sup, store, gate) = gated(0).await;
    let auto = submit(&sup, "refresh", "asn:1").await;
    let mut op = spec("refresh", "asn:2");
    op.trigger = groundcrew_actors::Trigger::Operator;
    let urgent = sup
        .send(groundcrew_actors::Submit(op))
        .await
        .unwrap()
        .unwrap();
    let p = panel(&sup).await;
    assert_eq!(
        p.pending.iter().map(|t| t.id).collect::<Vec<TaskId>>(),
        [urgent.id, auto.id]
    );
    sup.send(groundcrew_actors::SetLimit {
        pool: "background".into(),
        limit: 1,
    })
    .await
    .unwrap()
    .unwrap();
    let p = wait_panel(&sup, "one running", |p| p.running.len() == 1).await;
    assert_eq!(p.running[0].id, urgent.id);
    gate.open(2);
    wait_ended(&store, auto.id).await;
}
