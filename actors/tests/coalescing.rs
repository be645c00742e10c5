//! The coalescing matrix, driven through the supervisor's messages.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use groundcrew_actors::{
    KindOptions, Priority, Registry, Submit, SubmitOutcome, TaskContext, TaskError, TaskId,
    TaskState, TaskStore, Trigger,
};

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
async fn full_rebuild_is_coalesced_while_pending() {
    let (sup, store, gate) = gated(1).await;
    // Occupy the only worker so the rebuild stays pending.
    let blocker = submit(&sup, "refresh", "asn:1").await;
    let all = submit(&sup, "refresh", "all").await;
    assert_eq!(all.outcome, SubmitOutcome::Queued);
    let again = submit(&sup, "refresh", "all").await;
    assert_eq!((again.id, again.outcome), (all.id, SubmitOutcome::Merged));
    gate.open(2);
    let done = wait_ended(&store, all.id).await;
    assert_eq!((done.state, done.merged), (TaskState::Succeeded, 1));
    assert_eq!(
        wait_ended(&store, blocker.id).await.state,
        TaskState::Succeeded
    );
}

/// Issue 15, item 1: a full rebuild lists its entities when it starts, so a
/// rebuild requested while one runs must run again after it (one follow-up),
/// and the second run must see what changed meanwhile.
#[actix_rt::test]
async fn full_rebuild_requested_while_one_runs_becomes_its_follow_up() {
    // The "feed" a rebuild reads at its start, and what the last run built.
    let feed = Arc::new(Mutex::new(vec!["asn:1"]));
    let built = Arc::new(Mutex::new(Vec::<&str>::new()));
    let gate = Gate::new();
    let mut registry = Registry::new();
    let (f, b, g) = (feed.clone(), built.clone(), gate.clone());
    registry
        .register("rebuild", move |_ctx: TaskContext| {
            let (f, b, g) = (f.clone(), b.clone(), g.clone());
            async move {
                let listed = f.lock().unwrap().clone();
                g.started.fetch_add(1, Ordering::SeqCst);
                g.permits.acquire().await.unwrap().forget();
                *b.lock().unwrap() = listed;
                Ok(serde_json::Value::Null)
            }
        })
        .unwrap();
    let (sup, store) = start(registry, 2).await;
    let first = submit(&sup, "rebuild", "all").await;
    // Running, and past listing the feed.
    wait_panel(&sup, "rebuild listed the feed", |p| {
        p.running.len() == 1 && gate.started.load(Ordering::SeqCst) == 1
    })
    .await;
    feed.lock().unwrap().push("asn:2");
    let second = submit(&sup, "rebuild", "all").await;
    assert_eq!(second.outcome, SubmitOutcome::FollowUp { behind: first.id });
    // At most one follow-up; entity requests of the kind merge into it.
    let third = submit(&sup, "rebuild", "all").await;
    assert_eq!(
        (third.id, third.outcome),
        (second.id, SubmitOutcome::Merged)
    );
    let entity = submit(&sup, "rebuild", "asn:2").await;
    assert_eq!(
        (entity.id, entity.outcome),
        (second.id, SubmitOutcome::Merged)
    );
    let p = panel(&sup).await;
    assert_eq!(p.running.len(), 1, "the follow-up waits behind the run");
    assert_eq!(p.pending[0].waiting_behind, Some(first.id));

    gate.open(2);
    assert_eq!(
        wait_ended(&store, first.id).await.state,
        TaskState::Succeeded
    );
    let r = wait_ended(&store, second.id).await;
    assert_eq!((r.state, r.merged), (TaskState::Succeeded, 2));
    assert_eq!(*built.lock().unwrap(), ["asn:1", "asn:2"]);
    assert_eq!(gate.started.load(Ordering::SeqCst), 2);
}

/// Fails its first attempt (after waiting at the gate when `gated`), then
/// succeeds; retries after a minute, longer than any test waits.
fn flaky_once(registry: &mut Registry, name: &str, gate: Option<Gate>) -> Arc<AtomicU32> {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    registry
        .register_with(
            name,
            move |_ctx: TaskContext| {
                let (c, gate) = (c.clone(), gate.clone());
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    if n == 1 {
                        if let Some(g) = gate {
                            g.permits.acquire().await.unwrap().forget();
                        }
                        return Err(TaskError::retryable("busy"));
                    }
                    Ok(serde_json::json!(n))
                }
            },
            KindOptions {
                backoff_base: std::time::Duration::from_secs(60),
                ..KindOptions::default()
            },
        )
        .unwrap();
    calls
}

fn operator(kind: &str, target: &str) -> Submit {
    let mut s = spec(kind, target);
    s.trigger = Trigger::Operator;
    Submit(s)
}

/// Issue 15, items 11 and 9: a full rebuild in retry backoff is the pending
/// full rebuild entity requests merge into; an operator's request merged
/// into it ends the backoff at once and raises its priority.
#[actix_rt::test]
async fn full_rebuild_in_backoff_takes_in_entity_requests_and_an_operator_ends_the_wait() {
    let mut registry = Registry::new();
    let calls = flaky_once(&mut registry, "rebuild", None);
    let (sup, store) = start(registry, 2).await;
    let all = submit(&sup, "rebuild", "all").await;
    wait_panel(&sup, "rebuild in backoff", |p| {
        p.pending.first().is_some_and(|t| t.run_after.is_some())
    })
    .await;
    let entity = submit(&sup, "rebuild", "asn:1").await;
    assert_eq!((entity.id, entity.outcome), (all.id, SubmitOutcome::Merged));
    let p = panel(&sup).await;
    assert_eq!(p.pending_total, 1);
    assert!(
        p.pending[0].run_after.is_some(),
        "an automatic request waits"
    );

    let urgent = sup
        .send(operator("rebuild", "asn:2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((urgent.id, urgent.outcome), (all.id, SubmitOutcome::Merged));
    let r = wait_ended(&store, all.id).await;
    assert_eq!(
        (r.state, r.attempts, r.merged, r.priority),
        (TaskState::Succeeded, 2, 2, Priority::INTERACTIVE)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Issue 15, item 9: an operator's request waiting behind a run that then
/// fails is merged into the retry, which does not wait out the backoff.
#[actix_rt::test]
async fn operator_follow_up_merged_into_a_retry_does_not_wait_out_the_backoff() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    flaky_once(&mut registry, "refresh", Some(gate.clone()));
    let (sup, store) = start(registry, 2).await;
    let first = submit(&sup, "refresh", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let follow_up = sup
        .send(operator("refresh", "asn:1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        follow_up.outcome,
        SubmitOutcome::FollowUp { behind: first.id }
    );
    gate.open(1);
    let r = wait_ended(&store, first.id).await;
    assert_eq!(
        (r.state, r.attempts, r.merged, r.priority),
        (TaskState::Succeeded, 2, 1, Priority::INTERACTIVE)
    );
    let f = store.get(follow_up.id).await.unwrap().unwrap();
    assert_eq!(
        (f.state, f.merged_into),
        (TaskState::Merged, Some(first.id))
    );
}

/// Issue 15, item 9: an automatic full rebuild that absorbs an operator's
/// request takes the operator's priority.
#[actix_rt::test]
async fn full_rebuild_absorbing_an_operator_request_takes_its_priority() {
    let (sup, store, gate) = gated(0).await;
    let auto = submit(&sup, "refresh", "country:DE").await;
    let op = sup
        .send(operator("refresh", "asn:1"))
        .await
        .unwrap()
        .unwrap();
    let all = submit(&sup, "refresh", "all").await;
    assert_eq!(all.outcome, SubmitOutcome::Queued);
    let p = panel(&sup).await;
    assert_eq!(p.pending.iter().map(|t| t.id).collect::<Vec<_>>(), [all.id]);
    assert_eq!(p.pending[0].priority, Priority::INTERACTIVE);
    assert_eq!(
        store.get(all.id).await.unwrap().unwrap().priority,
        Priority::INTERACTIVE
    );
    for absorbed in [auto.id, op.id] {
        let r = store.get(absorbed).await.unwrap().unwrap();
        assert_eq!((r.state, r.merged_into), (TaskState::Merged, Some(all.id)));
    }
    drop(gate);
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
