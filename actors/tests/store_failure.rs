//! A store that fails its writes: a request is accepted entirely or not at
//! all, nothing is admitted while the store fails, and the runtime's own
//! writes (starts, ends) reach the store once it writes again.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Addr;
use common::failing_store::FailingStore;
use common::*;
use groundcrew_actors::{
    Activity, HistoryCategory, Priority, Registry, Submit, SubmitError, SubmitOutcome, Supervisor,
    TaskFilter, TaskSpec, TaskState, TaskStore, Trigger,
};

async fn start_failing(registry: Registry, limit: usize) -> (Addr<Supervisor>, FailingStore) {
    start_on(registry, limit, FailingStore::new()).await
}

async fn try_submit(
    sup: &Addr<Supervisor>,
    target: &str,
    trigger: Trigger,
) -> Result<groundcrew_actors::SubmitReply, SubmitError> {
    let spec = TaskSpec::new("refresh", target.parse().unwrap(), trigger);
    sup.send(Submit(spec)).await.unwrap()
}

async fn pending_in_store(store: &FailingStore) -> u64 {
    store
        .list(HistoryCategory::Pending, TaskFilter::default(), 100, 0)
        .await
        .unwrap()
        .total
}

#[actix_rt::test]
async fn a_request_whose_write_fails_is_refused_never_runs_and_leaves_no_trace() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start_failing(registry, 2).await;

    store.set_failing(true);
    let refused = try_submit(&sup, "asn:1", Trigger::FeedUpdate).await;
    assert!(matches!(refused, Err(SubmitError::Store(_))), "{refused:?}");
    let p = panel(&sup).await;
    assert!(p.pending.is_empty() && p.running.is_empty(), "{p:#?}");
    assert_eq!(p.pending_total, 0);
    assert!(!p.store.ok, "the panel says the store fails: {:?}", p.store);
    // Refused at once while the store fails.
    let again = try_submit(&sup, "asn:2", Trigger::FeedUpdate).await;
    assert!(matches!(again, Err(SubmitError::Store(_))), "{again:?}");

    store.set_failing(false);
    wait_panel(&sup, "the store to recover", |p| p.store.ok).await;
    assert_eq!(gate.started.load(Ordering::SeqCst), 0, "a refused task ran");
    assert_eq!(
        pending_in_store(&store).await,
        0,
        "a refused task was stored"
    );

    // The key is free: the same request now creates a task that runs.
    let reply = try_submit(&sup, "asn:1", Trigger::FeedUpdate)
        .await
        .unwrap();
    assert_eq!(reply.outcome, SubmitOutcome::Queued);
    gate.open(1);
    let r = wait_ended(&store.inner, reply.id).await;
    assert_eq!(r.state, TaskState::Succeeded);
    assert_eq!(gate.started.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn while_the_store_fails_nothing_is_admitted_and_ends_reach_it_once_it_writes() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start_failing(registry, 1).await;
    let a = submit(&sup, "refresh", "asn:1").await;
    let b = submit(&sup, "refresh", "asn:2").await;
    wait_panel(&sup, "a running", |p| p.running.len() == 1).await;

    store.set_failing(true);
    // The first failed write makes the failure known.
    let refused = try_submit(&sup, "asn:3", Trigger::Operator).await;
    assert!(matches!(refused, Err(SubmitError::Store(_))), "{refused:?}");
    gate.open(1);
    // A ends; its end cannot be written, so B must not start.
    let p = wait_panel(&sup, "A to end while the store fails", |p| {
        !p.store.ok && p.running.is_empty()
    })
    .await;
    assert_eq!(p.pending.len(), 1, "{p:#?}");
    // Several retries fail meanwhile; still nothing is admitted.
    for _ in 0..400 {
        if store.refused() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(store.refused() >= 4, "failed writes are tried again");
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        1,
        "admitted while failing"
    );
    let stored = store.get(a.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Running, "the store took nothing");

    store.set_failing(false);
    let a_end = wait_ended(&store.inner, a.id).await;
    assert_eq!(a_end.state, TaskState::Succeeded);
    gate.open(1);
    let b_end = wait_ended(&store.inner, b.id).await;
    assert_eq!(b_end.state, TaskState::Succeeded);
    assert!(panel(&sup).await.store.ok);
    // Accepting again.
    let c = try_submit(&sup, "asn:1", Trigger::Operator).await.unwrap();
    assert_eq!(c.outcome, SubmitOutcome::Queued);
}

#[actix_rt::test]
async fn a_refused_full_rebuild_gives_back_the_tasks_it_absorbed() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    // Paused: everything stays queued.
    let (sup, store) = start_failing(registry, 0).await;
    let one = submit(&sup, "refresh", "asn:1").await;
    let two = submit(&sup, "refresh", "asn:2").await;

    store.set_failing(true);
    let refused = try_submit(&sup, "all", Trigger::Operator).await;
    assert!(matches!(refused, Err(SubmitError::Store(_))), "{refused:?}");
    store.set_failing(false);
    let p = wait_panel(&sup, "the store to recover", |p| p.store.ok).await;
    let pending: Vec<_> = p.pending.iter().map(|t| t.id).collect();
    assert_eq!(pending, vec![one.id, two.id], "{p:#?}");
    assert_eq!(pending_in_store(&store).await, 2);
    for id in [one.id, two.id] {
        let r = store.get(id).await.unwrap().unwrap();
        assert_eq!((r.state, r.merged_into), (TaskState::Queued, None));
    }
    // Back in the queue: a new request for asn:1 merges into it again.
    let merged = try_submit(&sup, "asn:1", Trigger::FeedUpdate)
        .await
        .unwrap();
    assert_eq!((merged.id, merged.outcome), (one.id, SubmitOutcome::Merged));
}

#[actix_rt::test]
async fn a_refused_merge_leaves_the_task_as_it_was() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start_failing(registry, 0).await;
    let first = submit(&sup, "refresh", "asn:1").await;
    let before = panel(&sup).await.pending[0].clone();
    assert_eq!(before.priority, Priority::AUTOMATIC);

    store.set_failing(true);
    let refused = try_submit(&sup, "asn:1", Trigger::Operator).await;
    assert!(matches!(refused, Err(SubmitError::Store(_))), "{refused:?}");
    store.set_failing(false);
    let p = wait_panel(&sup, "the store to recover", |p| p.store.ok).await;
    assert_eq!(p.pending.len(), 1);
    let after = &p.pending[0];
    assert_eq!(after.id, first.id);
    assert_eq!(
        (after.merged, &after.triggers, after.priority),
        (0, &before.triggers, before.priority),
        "{after:#?}"
    );
    let stored = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.merged, stored.triggers),
        (0, vec![Trigger::FeedUpdate])
    );
}

#[actix_rt::test]
async fn recorded_ends_count_a_task_end_only_once_the_store_has_it() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start_failing(registry, 1).await;
    let task = submit(&sup, "refresh", "asn:1").await;
    wait_panel(&sup, "the task to run", |p| p.running.len() == 1).await;
    assert_eq!(panel(&sup).await.store.recorded_ends, 0);

    // The end cannot be written: the task leaves the running list, but
    // the count that tells clients to fetch the history stays put.
    store.set_failing(true);
    gate.open(1);
    let p = wait_panel(&sup, "the task to leave the running list", |p| {
        p.running.is_empty()
    })
    .await;
    assert_eq!(p.store.recorded_ends, 0, "{:?}", p.store);
    let stored = store.get(task.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Running);
    // Nor is the panel Idle: a client that waits for Idle and then reads
    // the history must find the end there.
    assert_eq!(p.state, Activity::Active, "{:?}", p.store);

    store.set_failing(false);
    let p = wait_panel(&sup, "the end to be recorded", |p| {
        p.store.recorded_ends == 1
    })
    .await;
    assert_eq!(p.state, Activity::Idle, "{:?}", p.store);
    let stored = store.get(task.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Succeeded);
}
