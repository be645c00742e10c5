//! Issue 19: puts of one task waiting for the same store write replace each
//! other where nothing else can tell (see the journal's module docs): the
//! start and end of an execution become one put, and merges into a pending
//! task one narrow merge change, while every request is still answered once
//! durable.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use futures::future::{BoxFuture, FutureExt};
use groundcrew_actors::{
    Change, Durable, HistoryCategory, MemoryStore, Registry, Retention, StoreError, Submit,
    SubmitMany, SubmitOutcome, TaskFilter, TaskId, TaskPage, TaskRecord, TaskState, TaskStore,
    Timestamp,
};
use tokio::sync::watch;

/// The puts of each write, as (task, state).
type Writes = Arc<Mutex<Vec<Vec<(TaskId, TaskState)>>>>;

/// The merges of each write, as (task, merged count).
type Merges = Arc<Mutex<Vec<Vec<(TaskId, u64)>>>>;

/// A memory store that records the puts of every write, as (task, state),
/// and keeps writes from completing while held.
#[derive(Clone)]
struct HeldStore {
    inner: MemoryStore,
    held: Arc<watch::Sender<bool>>,
    writes: Writes,
    merges: Merges,
}

impl HeldStore {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            held: Arc::new(watch::channel(false).0),
            writes: Arc::default(),
            merges: Arc::default(),
        }
    }

    fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// The puts of every write so far that has `id`.
    fn puts_of(&self, id: TaskId) -> Vec<Vec<TaskState>> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .map(|w| {
                w.iter()
                    .filter(|(t, _)| *t == id)
                    .map(|(_, s)| *s)
                    .collect()
            })
            .filter(|w: &Vec<TaskState>| !w.is_empty())
            .collect()
    }
}

impl TaskStore for HeldStore {
    fn allocate_id(&self) -> TaskId {
        self.inner.allocate_id()
    }

    fn write(&self, changes: Vec<Change>) -> Durable {
        let puts = changes
            .iter()
            .filter_map(|c| match c {
                Change::Put(r) => Some((r.id, r.state)),
                Change::Merge { .. } | Change::Report { .. } => None,
            })
            .collect();
        self.writes.lock().unwrap().push(puts);
        let merges = changes
            .iter()
            .filter_map(|c| match c {
                Change::Merge { id, merged, .. } => Some((*id, *merged)),
                _ => None,
            })
            .collect();
        self.merges.lock().unwrap().push(merges);
        let mut held = self.held.subscribe();
        let inner = self.inner.clone();
        // The supervisor keeps one write in flight, so applying on release
        // keeps call order.
        async move {
            held.wait_for(|h| !h).await.expect("store kept");
            TaskStore::write(&inner, changes).await
        }
        .boxed()
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        self.inner.unfinished()
    }

    fn get(&self, id: TaskId) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        TaskStore::get(&self.inner, id)
    }

    fn list(
        &self,
        category: HistoryCategory,
        filter: TaskFilter,
        limit: u64,
        offset: u64,
    ) -> BoxFuture<'static, Result<TaskPage, StoreError>> {
        TaskStore::list(&self.inner, category, filter, limit, offset)
    }

    fn delete(&self, id: TaskId) -> BoxFuture<'static, Result<bool, StoreError>> {
        self.inner.delete(id)
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        self.inner.prune(retention, now)
    }
}

#[actix_rt::test]
async fn an_execution_that_starts_and_ends_while_a_write_is_in_flight_is_one_put() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start_on(registry, 2, HeldStore::new()).await;
    let specs = ["asn:1", "asn:2", "asn:3", "asn:4"].map(|t| spec("refresh", t));
    let replies = sup.send(SubmitMany(specs.to_vec())).await.unwrap();
    let ids: Vec<TaskId> = replies.into_iter().map(|r| r.unwrap().id).collect();
    wait_panel(&sup, "two running", |p| p.running.len() == 2).await;

    // From the first end on, a write is in flight: the fourth task starts
    // and ends while its start still waits in the buffer.
    store.hold(true);
    gate.open(4);
    wait_panel(&sup, "every execution ended", |p| {
        p.running.is_empty() && p.pending_total == 0
    })
    .await;
    store.hold(false);
    for id in &ids {
        assert_eq!(
            wait_ended(&store.inner, *id).await.state,
            TaskState::Succeeded
        );
    }
    let last = store.puts_of(ids[3]);
    assert!(
        last.iter().flatten().all(|s| *s != TaskState::Running),
        "the start of the last task reached the store: {last:?}"
    );
    assert_eq!(last.last().unwrap(), &vec![TaskState::Succeeded]);
    // The first two started while nothing was in flight: their starts
    // were written on their own.
    for id in &ids[..2] {
        assert_eq!(
            store.puts_of(*id).concat(),
            [TaskState::Queued, TaskState::Running, TaskState::Succeeded]
        );
    }
}

#[actix_rt::test]
async fn merges_into_a_task_while_its_write_is_in_flight_are_one_merge() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    // Limit 0: the task stays queued.
    let (sup, store) = start_on(registry, 0, HeldStore::new()).await;
    store.hold(true);
    let first = sup.send(Submit(spec("refresh", "asn:1")));
    let second = sup.send(Submit(spec("refresh", "asn:1")));
    let third = sup.send(Submit(spec("refresh", "asn:1")));
    let answers = actix::spawn(async move { (first.await, second.await, third.await) });
    for _ in 0..200 {
        if !store.writes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    store.hold(false);
    let (first, second, third) = answers.await.unwrap();
    let id = first.unwrap().unwrap().id;
    for merged in [second, third] {
        let merged = merged.unwrap().unwrap();
        assert_eq!((merged.id, merged.outcome), (id, SubmitOutcome::Merged));
    }
    let stored = store.inner.get(id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.merged), (TaskState::Queued, 2));
    assert_eq!(
        store.puts_of(id),
        vec![vec![TaskState::Queued]],
        "the insert"
    );
    let merges: Vec<Vec<(TaskId, u64)>> = store
        .merges
        .lock()
        .unwrap()
        .iter()
        .filter(|w| !w.is_empty())
        .cloned()
        .collect();
    assert_eq!(
        merges,
        vec![vec![(id, 2)]],
        "both merges in one narrow change of the next write"
    );
}
