//! Restart recovery from what a store holds after a crash.

mod common;

use std::sync::Arc;

use common::*;
use groundcrew_actors::{
    Change, KindOptions, MemoryStore, Priority, Registry, RunToken, Supervisor, TaskId, TaskRecord,
    TaskSpec, TaskState, TaskStore, Timestamp, Trigger,
};

fn record(
    store: &MemoryStore,
    kind: &str,
    target: &str,
    state: TaskState,
    attempts: u32,
) -> TaskRecord {
    let spec = TaskSpec::new(kind, target.parse().unwrap(), Trigger::FeedUpdate);
    let id = store.allocate_id();
    let mut r = TaskRecord::new_queued(
        id,
        spec,
        "background".into(),
        Priority::AUTOMATIC,
        Timestamp::now(),
    );
    r.state = state;
    r.attempts = attempts;
    r.run = (attempts > 0).then_some(RunToken(u64::from(attempts)));
    r.stage = (state == TaskState::Running).then(|| "halfway".into());
    r
}

#[actix_rt::test]
async fn interrupted_runs_are_queued_again_and_follow_ups_merge_into_them() {
    let store = MemoryStore::new();
    let interrupted = record(&store, "refresh", "asn:1", TaskState::Running, 1);
    let mut follow_up = record(&store, "refresh", "asn:1", TaskState::Queued, 0);
    follow_up.waiting_behind = Some(interrupted.id);
    follow_up.triggers = vec![Trigger::Operator];
    let last_chance = record(&store, "refresh", "asn:2", TaskState::Running, 2);
    let queued = record(&store, "refresh", "asn:3", TaskState::Queued, 0);
    let orphan = record(&store, "retired", "asn:4", TaskState::Queued, 0);
    let ids: Vec<TaskId> = [&interrupted, &follow_up, &last_chance, &queued, &orphan]
        .iter()
        .map(|r| r.id)
        .collect();
    store
        .write(
            [interrupted, follow_up, last_chance, queued, orphan]
                .into_iter()
                .map(|r| Change::Put(Arc::new(r)))
                .collect(),
        )
        .await
        .unwrap();

    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registry = Registry::new();
    let g = started.clone();
    registry
        .register_with(
            "refresh",
            move |ctx: groundcrew_actors::TaskContext| {
                let g = g.clone();
                async move {
                    g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(serde_json::json!({"attempt": ctx.attempt()}))
                }
            },
            KindOptions {
                max_attempts: 2,
                ..KindOptions::default()
            },
        )
        .unwrap();
    let sup = Supervisor::builder()
        .registry(registry)
        .store(Arc::new(store.clone()))
        .pool("background", 2)
        .start()
        .await
        .unwrap();

    let r = wait_ended(&store, ids[0]).await;
    assert_eq!(
        (r.state, r.attempts, r.merged),
        (TaskState::Succeeded, 2, 1)
    );
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].message.contains("interrupted"),
        "{:?}",
        r.errors
    );
    assert!(
        r.triggers.contains(&Trigger::Operator),
        "the follow-up's trigger is kept"
    );
    let f = store.get(ids[1]).await.unwrap().unwrap();
    assert_eq!((f.state, f.merged_into), (TaskState::Merged, Some(ids[0])));
    let l = store.get(ids[2]).await.unwrap().unwrap();
    assert_eq!(l.state, TaskState::Failed);
    assert!(l.error.unwrap().contains("last attempt (2 of 2)"));
    assert_eq!(wait_ended(&store, ids[3]).await.state, TaskState::Succeeded);
    let o = store.get(ids[4]).await.unwrap().unwrap();
    assert_eq!(o.state, TaskState::Failed);
    assert!(o.error.unwrap().contains("\"retired\" is not registered"));
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(store.unfinished().await.unwrap().is_empty());
    // New ids continue above the recovered ones.
    let next = submit(&sup, "refresh", "asn:9").await;
    assert!(next.id > ids[4]);
}

/// Issue 15, item 10: a task recorded in a pool that is no longer
/// configured moves to its kind's current pool, and that is recorded.
#[actix_rt::test]
async fn recovered_tasks_of_a_removed_pool_move_to_their_kinds_pool() {
    let store = MemoryStore::new();
    let mut queued = record(&store, "refresh", "asn:1", TaskState::Queued, 0);
    queued.pool = "retired".into();
    let mut interrupted = record(&store, "refresh", "asn:2", TaskState::Running, 1);
    interrupted.pool = "retired".into();
    let ids = [queued.id, interrupted.id];
    store
        .write(vec![
            Change::Put(Arc::new(queued)),
            Change::Put(Arc::new(interrupted)),
        ])
        .await
        .unwrap();
    let mut registry = Registry::new();
    registry
        .register_with(
            "refresh",
            |_ctx: groundcrew_actors::TaskContext| async { Ok(serde_json::Value::Null) },
            KindOptions {
                pool: "fast".into(),
                ..KindOptions::default()
            },
        )
        .unwrap();
    let _sup = Supervisor::builder()
        .registry(registry)
        .store(Arc::new(store.clone()))
        .pool("fast", 1)
        .start()
        .await
        .unwrap();
    for id in ids {
        let r = wait_ended(&store, id).await;
        assert_eq!((r.state, r.pool.as_str()), (TaskState::Succeeded, "fast"));
    }
}

/// A task found `canceling` was being stopped when the process died; the
/// process's end ended its run, so it ends canceled and does not run again.
#[actix_rt::test]
async fn a_task_found_canceling_at_restart_ends_canceled() {
    let store = MemoryStore::new();
    let canceling = record(&store, "refresh", "asn:1", TaskState::Canceling, 1);
    let id = canceling.id;
    store
        .write(vec![Change::Put(Arc::new(canceling))])
        .await
        .unwrap();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let mut registry = Registry::new();
    registry
        .register("refresh", move |_ctx: groundcrew_actors::TaskContext| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok(serde_json::Value::Null) }
        })
        .unwrap();
    let _sup = Supervisor::builder()
        .registry(registry)
        .store(Arc::new(store.clone()))
        .start()
        .await
        .unwrap();
    let r = wait_ended(&store, id).await;
    assert_eq!(r.state, TaskState::Canceled);
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
}
