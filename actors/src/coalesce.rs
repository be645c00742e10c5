//! The coalescing rules and queue order, as a pure state machine.
//!
//! A task's key is its (kind, target). For each key there is at most one
//! *queued* task, at most one *running* task, and at most one *follow-up*: a
//! queued task that waits for the running one to end because a request came
//! in after that run had started. The rules for a new request:
//!
//! | state of the key                             | outcome                              |
//! |----------------------------------------------|--------------------------------------|
//! | entity, kind has a pending full rebuild      | merged into the full rebuild         |
//! | queued (or in retry backoff)                 | merged into the queued task          |
//! | running, follow-up exists                    | merged into the follow-up            |
//! | running, no follow-up                        | new follow-up waiting behind the run |
//! | nothing                                      | new queued task                      |
//!
//! Full rebuilds (`all`) follow the same rules as entity keys: a full
//! rebuild requested while one runs becomes its follow-up, since the running
//! one listed its entities when it started and cannot see what changed
//! since. A *pending* full rebuild is one that is queued, waiting behind a
//! running one, or in retry backoff: entity requests of its kind merge into
//! it. A new full rebuild, queued or follow-up, absorbs the kind's pending
//! entity tasks (queued, follow-up or in backoff): they will be covered by
//! it. A running full rebuild absorbs nothing, since it may already have
//! passed the entity.
//!
//! Merging and absorbing keep the higher priority. A request at
//! [`Priority::INTERACTIVE`] or above that is merged into a task in retry
//! backoff makes it ready at once: somebody waits on it.
//!
//! Ready tasks wait per pool in priority order, then first come first served.
//! Follow-ups and tasks in retry backoff are not ready. No I/O here: the
//! supervisor turns decisions into records, store writes and actors.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::entity::Target;
use crate::spec::{Priority, TaskId};
use crate::FastMap as HashMap;

/// Coalescing key: (kind, target).
pub(crate) type Key = (String, Target);

/// A key as the queue keeps it: one copy of the strings per pending or
/// running task, shared by the maps that know it (looked up by `&Key`).
type SharedKey = Arc<Key>;

/// What a new request turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A new task, ready to run; `absorbed` are pending tasks of the same
    /// kind that a new full rebuild took over.
    Queued { id: TaskId, absorbed: Vec<TaskId> },
    /// Merged into an existing pending task: queued, follow-up or in retry
    /// backoff (never a running one).
    Merged { into: TaskId },
    /// A new task waiting behind the running task `behind`; `absorbed` as
    /// for `Queued` (a full rebuild behind a running one).
    FollowUp {
        id: TaskId,
        behind: TaskId,
        absorbed: Vec<TaskId>,
    },
}

#[derive(Debug)]
struct Entry {
    key: SharedKey,
    pool: String,
    priority: Priority,
    seq: u64,
    state: EntryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    Ready,
    FollowUp {
        behind: TaskId,
    },
    /// In retry backoff, ready again after `release`.
    Delayed,
}

type ReadyKey = (Reverse<Priority>, u64, TaskId);

/// The pending tasks of every pool and the running tasks' keys.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pending: HashMap<TaskId, Entry>,
    queued: HashMap<SharedKey, TaskId>,
    follow_ups: HashMap<SharedKey, TaskId>,
    running: HashMap<SharedKey, TaskId>,
    running_keys: HashMap<TaskId, SharedKey>,
    ready: HashMap<String, BTreeSet<ReadyKey>>,
    /// Pending full rebuilds (queued, follow-up or in backoff) by kind, so
    /// entity requests find them at once.
    full_rebuilds: HashMap<String, TaskId>,
    /// Pending tasks per pool, kept so that gauges cost no scan.
    pending_per_pool: HashMap<String, usize>,
    seq: u64,
}

impl Queue {
    /// Applies the coalescing rules to a new request. `new_id` is called only
    /// when the request creates a task.
    pub(crate) fn submit(
        &mut self,
        key: &Key,
        pool: &str,
        priority: Priority,
        new_id: impl FnOnce() -> TaskId,
    ) -> Decision {
        // Borrowed: a request that merges (the common case under load)
        // copies nothing.
        if !key.1.is_all() {
            if let Some(&full) = self.full_rebuilds.get(&key.0) {
                self.merge(full, priority);
                return Decision::Merged { into: full };
            }
        }
        if let Some(&queued) = self.queued.get(key) {
            self.merge(queued, priority);
            return Decision::Merged { into: queued };
        }
        if let Some(&running) = self.running.get(key) {
            if let Some(&follow_up) = self.follow_ups.get(key) {
                self.merge(follow_up, priority);
                return Decision::Merged { into: follow_up };
            }
            let id = new_id();
            let (absorbed, priority) = self.absorb_for(key, id, priority);
            let key = Arc::new(key.clone());
            self.insert(
                id,
                Arc::clone(&key),
                pool,
                priority,
                EntryState::FollowUp { behind: running },
            );
            self.follow_ups.insert(key, id);
            return Decision::FollowUp {
                id,
                behind: running,
                absorbed,
            };
        }
        let id = new_id();
        let (absorbed, priority) = self.absorb_for(key, id, priority);
        let key = Arc::new(key.clone());
        self.queued.insert(Arc::clone(&key), id);
        self.insert(id, key, pool, priority, EntryState::Ready);
        Decision::Queued { id, absorbed }
    }

    /// For a new full rebuild `id`: registers it as its kind's pending full
    /// rebuild and takes the kind's pending entity tasks out of the queue.
    /// Returns them and the priority the new task gets: the highest among
    /// `priority` and theirs. Nothing for an entity key.
    fn absorb_for(&mut self, key: &Key, id: TaskId, priority: Priority) -> (Vec<TaskId>, Priority) {
        if !key.1.is_all() {
            return (Vec::new(), priority);
        }
        self.full_rebuilds.insert(key.0.clone(), id);
        let absorbed = self.absorb_entities_of(&key.0);
        (
            absorbed.iter().map(|e| e.0).collect(),
            absorbed.iter().map(|e| e.1).fold(priority, Priority::max),
        )
    }

    /// Puts back a task found queued in the store at restart. Returns the
    /// task it must be merged into instead when its key is already queued
    /// (a follow-up whose run was interrupted by the crash).
    pub(crate) fn restore(
        &mut self,
        id: TaskId,
        key: Key,
        pool: &str,
        priority: Priority,
        delayed: bool,
    ) -> Result<(), TaskId> {
        self.restore_shared(id, Arc::new(key), pool, priority, delayed)
    }

    fn restore_shared(
        &mut self,
        id: TaskId,
        key: SharedKey,
        pool: &str,
        priority: Priority,
        delayed: bool,
    ) -> Result<(), TaskId> {
        if let Some(&queued) = self.queued.get(&key) {
            self.merge(queued, priority);
            return Err(queued);
        }
        if key.1.is_all() {
            self.full_rebuilds.insert(key.0.clone(), id);
        }
        self.queued.insert(Arc::clone(&key), id);
        let state = if delayed {
            EntryState::Delayed
        } else {
            EntryState::Ready
        };
        self.insert(id, key, pool, priority, state);
        Ok(())
    }

    /// Takes the first ready task of `pool` and marks its key running.
    pub(crate) fn pop_ready(&mut self, pool: &str) -> Option<TaskId> {
        let (_, _, id) = self.ready.get_mut(pool)?.pop_first()?;
        let entry = self.take(id).expect("ready task is pending");
        self.queued.remove(&entry.key);
        if entry.key.1.is_all() {
            self.full_rebuilds.remove(&entry.key.0);
        }
        self.running.insert(Arc::clone(&entry.key), id);
        self.running_keys.insert(id, entry.key);
        Some(id)
    }

    /// Marks a running task's execution ended. Its follow-up, if any,
    /// becomes an ordinary queued task, ready to run; it is returned.
    pub(crate) fn finish(&mut self, id: TaskId) -> Option<TaskId> {
        let key = self.running_keys.remove(&id)?;
        self.running.remove(&key);
        let follow_up = self.follow_ups.remove(&key)?;
        let entry = self
            .pending
            .get_mut(&follow_up)
            .expect("follow-up is pending");
        entry.state = EntryState::Ready;
        let ready_key = (Reverse(entry.priority), entry.seq, follow_up);
        let pool = entry.pool.clone();
        self.queued.insert(key, follow_up);
        self.ready.entry(pool).or_default().insert(ready_key);
        Some(follow_up)
    }

    /// Puts a task whose execution ended back in the queue in retry
    /// backoff; `release` makes it ready. Returns the follow-up that was
    /// waiting behind it, now merged away: the retry will serve it, at the
    /// higher of both priorities, and at once when the follow-up is
    /// interactive. A full rebuild in backoff is its kind's pending one.
    pub(crate) fn retry(&mut self, id: TaskId, pool: &str, priority: Priority) -> Option<TaskId> {
        let key = self.running_keys.remove(&id)?;
        self.running.remove(&key);
        let follow_up = self.follow_ups.remove(&key);
        let mut priority = priority;
        let mut state = EntryState::Delayed;
        if let Some(f) = follow_up.and_then(|f| self.take(f)) {
            priority = priority.max(f.priority);
            if f.priority >= Priority::INTERACTIVE {
                state = EntryState::Ready;
            }
        }
        if key.1.is_all() {
            self.full_rebuilds.insert(key.0.clone(), id);
        }
        self.queued.insert(Arc::clone(&key), id);
        self.insert(id, key, pool, priority, state);
        follow_up
    }

    /// Makes a task in retry backoff ready; `false` if it is no longer
    /// pending (canceled meanwhile).
    pub(crate) fn release(&mut self, id: TaskId) -> bool {
        let Some(entry) = self.pending.get_mut(&id) else {
            return false;
        };
        if entry.state != EntryState::Delayed {
            return false;
        }
        entry.state = EntryState::Ready;
        let ready_key = (Reverse(entry.priority), entry.seq, id);
        self.ready
            .entry(entry.pool.clone())
            .or_default()
            .insert(ready_key);
        true
    }

    /// Removes a pending task (queued, follow-up or delayed); `false` if
    /// it is not pending.
    pub(crate) fn remove(&mut self, id: TaskId) -> bool {
        let Some(entry) = self.take(id) else {
            return false;
        };
        if entry.key.1.is_all() {
            self.full_rebuilds.remove(&entry.key.0);
        }
        match entry.state {
            EntryState::FollowUp { .. } => {
                self.follow_ups.remove(&entry.key);
            }
            EntryState::Ready | EntryState::Delayed => {
                self.queued.remove(&entry.key);
                if let Some(set) = self.ready.get_mut(&entry.pool) {
                    set.remove(&(Reverse(entry.priority), entry.seq, id));
                }
            }
        }
        true
    }

    /// Whether a pending task is waiting out a retry backoff.
    pub(crate) fn is_delayed(&self, id: TaskId) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|e| e.state == EntryState::Delayed)
    }

    /// The follow-up waiting behind a running task.
    pub(crate) fn follow_up_of(&self, running: TaskId) -> Option<TaskId> {
        let key = self.running_keys.get(&running)?;
        self.follow_ups.get(key).copied()
    }

    /// The running task a follow-up waits behind.
    pub(crate) fn waiting_behind(&self, id: TaskId) -> Option<TaskId> {
        match self.pending.get(&id)?.state {
            EntryState::FollowUp { behind } => Some(behind),
            _ => None,
        }
    }

    /// Pending tasks of `pool`.
    pub(crate) fn pending_in(&self, pool: &str) -> usize {
        self.pending_per_pool.get(pool).copied().unwrap_or(0)
    }

    /// Number of pending tasks in all pools.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Every pending task in queue order: by pool name, then ready tasks
    /// in the order they will run, then delayed and follow-up tasks in
    /// arrival order. Lazy: the ready tasks come from the pools' ready
    /// sets, and a pool's waiting tasks are found (one pass over the
    /// pending tasks) only if the caller reads past its ready ones, so the
    /// panel's first page costs no sort of a long queue.
    pub(crate) fn pending_in_order(&self) -> impl Iterator<Item = TaskId> + '_ {
        let mut pools: Vec<&str> = self
            .pending_per_pool
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(pool, _)| pool.as_str())
            .collect();
        pools.sort_unstable();
        pools.into_iter().flat_map(move |pool| {
            let ready = self.ready.get(pool).into_iter().flatten();
            let waiting = std::iter::once(pool).flat_map(move |pool| self.waiting_in(pool));
            ready.map(|&(_, _, id)| id).chain(waiting)
        })
    }

    /// The delayed and follow-up tasks of `pool`, in arrival order.
    fn waiting_in(&self, pool: &str) -> impl Iterator<Item = TaskId> {
        let mut waiting: Vec<(u64, TaskId)> = self
            .pending
            .iter()
            .filter(|(_, e)| e.pool == pool && e.state != EntryState::Ready)
            .map(|(&id, e)| (e.seq, id))
            .collect();
        waiting.sort_unstable();
        waiting.into_iter().map(|(_, id)| id)
    }

    /// The tasks that run now (popped and not finished), in no order.
    pub(crate) fn running_ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.running_keys.keys().copied()
    }

    /// Number of running keys (for invariant checks).
    #[cfg(test)]
    pub(crate) fn running_count(&self) -> usize {
        self.running.len()
    }

    fn insert(
        &mut self,
        id: TaskId,
        key: SharedKey,
        pool: &str,
        priority: Priority,
        state: EntryState,
    ) {
        self.seq += 1;
        let seq = self.seq;
        if state == EntryState::Ready {
            let ready_key = (Reverse(priority), seq, id);
            match self.ready.get_mut(pool) {
                Some(ready) => {
                    ready.insert(ready_key);
                }
                None => {
                    self.ready
                        .insert(pool.to_owned(), BTreeSet::from([ready_key]));
                }
            }
        }
        match self.pending_per_pool.get_mut(pool) {
            Some(n) => *n += 1,
            None => {
                self.pending_per_pool.insert(pool.to_owned(), 1);
            }
        }
        self.pending.insert(
            id,
            Entry {
                key,
                pool: pool.to_owned(),
                priority,
                seq,
                state,
            },
        );
    }

    fn take(&mut self, id: TaskId) -> Option<Entry> {
        let entry = self.pending.remove(&id)?;
        if let Some(n) = self.pending_per_pool.get_mut(&entry.pool) {
            *n -= 1;
        }
        Some(entry)
    }

    /// Counts a request at `priority` into a pending task: raises its
    /// priority, and makes it ready at once when it is in retry backoff and
    /// the request is interactive.
    fn merge(&mut self, id: TaskId, priority: Priority) {
        self.raise(id, priority);
        if priority >= Priority::INTERACTIVE {
            self.release(id);
        }
    }

    /// Raises a pending task's priority to `priority` if that is higher,
    /// keeping its place among equals.
    fn raise(&mut self, id: TaskId, priority: Priority) {
        if self.priority_of(id).is_some_and(|p| priority > p) {
            self.set_priority(id, priority);
        }
    }

    /// Pending entity tasks of `kind` with their priorities, removed for a
    /// new full rebuild.
    fn absorb_entities_of(&mut self, kind: &str) -> Vec<(TaskId, Priority)> {
        let mut absorbed: Vec<(TaskId, Priority)> = self
            .pending
            .iter()
            .filter(|(_, e)| e.key.0 == kind && !e.key.1.is_all())
            .map(|(&id, e)| (id, e.priority))
            .collect();
        absorbed.sort_unstable();
        for &(id, _) in &absorbed {
            self.remove(id);
        }
        absorbed
    }

    /// The priority a pending task currently has.
    pub(crate) fn priority_of(&self, id: TaskId) -> Option<Priority> {
        self.pending.get(&id).map(|e| e.priority)
    }

    /// The task `pop_ready` would take next from `pool`, left in place.
    pub(crate) fn peek_ready(&self, pool: &str) -> Option<TaskId> {
        self.ready.get(pool)?.first().map(|&(_, _, id)| id)
    }

    /// Sets a pending task's priority, up or down, keeping its place among
    /// equals (undoing a raise whose request was not accepted).
    pub(crate) fn set_priority(&mut self, id: TaskId, priority: Priority) {
        let Some(entry) = self.pending.get_mut(&id) else {
            return;
        };
        if entry.state == EntryState::Ready {
            let set = self.ready.get_mut(&entry.pool).expect("ready pool exists");
            set.remove(&(Reverse(entry.priority), entry.seq, id));
            set.insert((Reverse(priority), entry.seq, id));
        }
        entry.priority = priority;
    }

    /// Puts back a pending task that a request took away (a full rebuild
    /// absorbing it) when that request was not accepted after all: a
    /// follow-up again while `behind` still runs its key, else queued.
    /// Returns `false`, changing nothing, when the key's place is taken.
    pub(crate) fn reinstate(
        &mut self,
        id: TaskId,
        key: Key,
        pool: &str,
        priority: Priority,
        behind: Option<TaskId>,
        delayed: bool,
    ) -> bool {
        let key = Arc::new(key);
        let running = behind.filter(|b| self.running_keys.get(b) == Some(&key));
        if let Some(behind) = running {
            if self.follow_ups.contains_key(&key) {
                return false;
            }
            self.follow_ups.insert(Arc::clone(&key), id);
            self.insert(id, key, pool, priority, EntryState::FollowUp { behind });
            return true;
        }
        if self.queued.contains_key(&key) {
            return false;
        }
        self.restore_shared(id, key, pool, priority, delayed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn key(kind: &str, target: &str) -> Key {
        (kind.to_owned(), Target::parse(target).unwrap())
    }

    struct Ids(u64);
    impl Ids {
        fn next(&mut self) -> TaskId {
            self.0 += 1;
            TaskId(self.0)
        }
    }

    fn submit(q: &mut Queue, ids: &mut Ids, kind: &str, target: &str) -> Decision {
        q.submit(
            &key(kind, target),
            "background",
            Priority::AUTOMATIC,
            || ids.next(),
        )
    }

    #[test]
    fn second_request_for_queued_target_is_merged() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "country:DE"),
            Decision::Queued {
                id: TaskId(1),
                absorbed: vec![]
            }
        );
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "country:DE"),
            Decision::Merged { into: TaskId(1) }
        );
        assert_eq!(
            submit(&mut q, &mut ids, "other", "country:DE"),
            Decision::Queued {
                id: TaskId(2),
                absorbed: vec![]
            }
        );
        assert_eq!(q.pending_len(), 2);
    }

    #[test]
    fn second_request_for_running_target_creates_one_follow_up() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "asn:1");
        assert_eq!(q.pop_ready("background"), Some(TaskId(1)));
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:1"),
            Decision::FollowUp {
                id: TaskId(2),
                behind: TaskId(1),
                absorbed: vec![]
            }
        );
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:1"),
            Decision::Merged { into: TaskId(2) }
        );
        assert_eq!(q.waiting_behind(TaskId(2)), Some(TaskId(1)));
        // The follow-up does not run beside the task it follows.
        assert_eq!(q.pop_ready("background"), None);
        assert_eq!(q.finish(TaskId(1)), Some(TaskId(2)));
        assert_eq!(q.waiting_behind(TaskId(2)), None);
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:1"),
            Decision::Merged { into: TaskId(2) }
        );
        assert_eq!(q.pop_ready("background"), Some(TaskId(2)));
    }

    #[test]
    fn full_rebuild_is_coalesced_while_pending() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "all");
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::Merged { into: TaskId(1) }
        );
        assert_eq!(q.pending_len(), 1);
    }

    /// Issue 15, item 1: the running rebuild listed its entities when it
    /// started; a later request must run after it, not be merged into it.
    #[test]
    fn full_rebuild_requested_while_one_runs_becomes_its_one_follow_up() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "all");
        assert_eq!(q.pop_ready("background"), Some(TaskId(1)));
        // An entity request while the rebuild runs queues on its own: the
        // run may have passed the entity.
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:1"),
            Decision::Queued {
                id: TaskId(2),
                absorbed: vec![]
            }
        );
        // A new full rebuild waits behind the running one and absorbs the
        // queued entity task, as a queued full rebuild does.
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::FollowUp {
                id: TaskId(3),
                behind: TaskId(1),
                absorbed: vec![TaskId(2)]
            }
        );
        // At most one follow-up: further rebuilds and entity requests of the
        // kind merge into it; other kinds are untouched.
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::Merged { into: TaskId(3) }
        );
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "country:DE"),
            Decision::Merged { into: TaskId(3) }
        );
        assert_eq!(
            submit(&mut q, &mut ids, "other", "country:DE"),
            Decision::Queued {
                id: TaskId(4),
                absorbed: vec![]
            }
        );
        assert_eq!(q.waiting_behind(TaskId(3)), Some(TaskId(1)));
        assert_eq!(q.pop_ready("background"), Some(TaskId(4)));
        assert_eq!(q.pop_ready("background"), None, "the follow-up waits");
        assert_eq!(q.finish(TaskId(1)), Some(TaskId(3)));
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:5"),
            Decision::Merged { into: TaskId(3) }
        );
        assert_eq!(q.pop_ready("background"), Some(TaskId(3)));
        assert_eq!(q.pending_len(), 0);
    }

    /// Issue 15, item 1: canceling the follow-up rebuild frees the kind.
    #[test]
    fn canceling_a_follow_up_full_rebuild_frees_entity_requests() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "all");
        q.pop_ready("background");
        submit(&mut q, &mut ids, "refresh", "all"); // follow-up 2
        assert!(q.remove(TaskId(2)));
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:1"),
            Decision::Queued {
                id: TaskId(3),
                absorbed: vec![]
            }
        );
        assert_eq!(q.finish(TaskId(1)), None);
    }

    /// Issue 15, item 11: a full rebuild in retry backoff is its kind's
    /// pending full rebuild, whether or not a follow-up merged into it.
    #[test]
    fn full_rebuild_in_retry_backoff_takes_in_entity_requests() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "all");
        q.pop_ready("background");
        assert_eq!(q.retry(TaskId(1), "background", Priority::AUTOMATIC), None);
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:1"),
            Decision::Merged { into: TaskId(1) }
        );
        assert!(q.is_delayed(TaskId(1)), "an automatic request waits");
        assert!(q.release(TaskId(1)));
        assert_eq!(q.pop_ready("background"), Some(TaskId(1)));
        // With a follow-up rebuild merged into the retry.
        submit(&mut q, &mut ids, "refresh", "all"); // follow-up 2
        assert_eq!(
            q.retry(TaskId(1), "background", Priority::AUTOMATIC),
            Some(TaskId(2))
        );
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:2"),
            Decision::Merged { into: TaskId(1) }
        );
        assert_eq!(q.pending_len(), 1);
    }

    /// Issue 15, item 9: absorbing keeps the highest priority.
    #[test]
    fn full_rebuild_takes_the_priority_of_the_tasks_it_absorbs() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        q.submit(
            &key("refresh", "asn:1"),
            "background",
            Priority::INTERACTIVE,
            || ids.next(),
        );
        submit(&mut q, &mut ids, "other", "asn:1"); // 2
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::Queued {
                id: TaskId(3),
                absorbed: vec![TaskId(1)]
            }
        );
        assert_eq!(q.priority_of(TaskId(3)), Some(Priority::INTERACTIVE));
        assert_eq!(q.pop_ready("background"), Some(TaskId(3)), "goes first");
        // The same for a follow-up rebuild.
        q.submit(
            &key("refresh", "asn:7"),
            "background",
            Priority::INTERACTIVE,
            || ids.next(),
        ); // 4
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::FollowUp {
                id: TaskId(5),
                behind: TaskId(3),
                absorbed: vec![TaskId(4)]
            }
        );
        assert_eq!(q.priority_of(TaskId(5)), Some(Priority::INTERACTIVE));
    }

    /// Issue 15, item 9: an interactive request does not wait out the
    /// backoff of the task it is merged into; an automatic one does.
    #[test]
    fn interactive_request_merged_into_a_task_in_backoff_makes_it_ready() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "r", "asn:1");
        q.pop_ready("background");
        q.retry(TaskId(1), "background", Priority::AUTOMATIC);
        submit(&mut q, &mut ids, "r", "asn:1");
        assert_eq!(q.pop_ready("background"), None);
        let d = q.submit(
            &key("r", "asn:1"),
            "background",
            Priority::INTERACTIVE,
            || ids.next(),
        );
        assert_eq!(d, Decision::Merged { into: TaskId(1) });
        assert!(!q.is_delayed(TaskId(1)));
        assert_eq!(q.priority_of(TaskId(1)), Some(Priority::INTERACTIVE));
        assert!(!q.release(TaskId(1)), "the backoff's end finds it ready");
        assert_eq!(q.pop_ready("background"), Some(TaskId(1)));
    }

    /// Issue 15, item 9: a follow-up merged into a retry keeps its
    /// priority, and an interactive one does not wait out the backoff.
    #[test]
    fn retry_keeps_the_follow_ups_priority() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "r", "asn:1");
        q.pop_ready("background");
        submit(&mut q, &mut ids, "r", "asn:1"); // automatic follow-up 2
        assert_eq!(
            q.retry(TaskId(1), "background", Priority::AUTOMATIC),
            Some(TaskId(2))
        );
        assert!(q.is_delayed(TaskId(1)));
        q.release(TaskId(1));
        q.pop_ready("background");
        q.submit(
            &key("r", "asn:1"),
            "background",
            Priority::INTERACTIVE,
            || ids.next(),
        ); // 3
        assert_eq!(
            q.retry(TaskId(1), "background", Priority::AUTOMATIC),
            Some(TaskId(3))
        );
        assert_eq!(q.priority_of(TaskId(1)), Some(Priority::INTERACTIVE));
        assert_eq!(q.pop_ready("background"), Some(TaskId(1)));
    }

    #[test]
    fn pending_full_rebuild_absorbs_pending_refreshes_of_its_kind() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "country:DE");
        submit(&mut q, &mut ids, "refresh", "asn:1");
        q.pop_ready("background"); // country:DE runs
        submit(&mut q, &mut ids, "refresh", "country:DE"); // follow-up 3
        submit(&mut q, &mut ids, "other", "asn:1"); // other kind: 4
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::Queued {
                id: TaskId(5),
                absorbed: vec![TaskId(2), TaskId(3)]
            }
        );
        // Later entity requests of the kind are covered by the pending rebuild...
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:9"),
            Decision::Merged { into: TaskId(5) }
        );
        // ...but not those of other kinds.
        assert_eq!(
            submit(&mut q, &mut ids, "other", "asn:9"),
            Decision::Queued {
                id: TaskId(6),
                absorbed: vec![]
            }
        );
        assert_eq!(q.pending_len(), 3);
        // Once the rebuild runs, an entity request queues normally: the run
        // may already have passed the entity.
        assert_eq!(q.pop_ready("background"), Some(TaskId(4)));
        assert_eq!(q.pop_ready("background"), Some(TaskId(5)));
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "asn:9"),
            Decision::Queued {
                id: TaskId(7),
                absorbed: vec![]
            }
        );
    }

    #[test]
    fn higher_priority_runs_first_and_merging_raises_priority() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "asn:1");
        submit(&mut q, &mut ids, "refresh", "asn:2");
        submit(&mut q, &mut ids, "refresh", "asn:3");
        let d = q.submit(
            &key("refresh", "asn:3"),
            "background",
            Priority::INTERACTIVE,
            || ids.next(),
        );
        assert_eq!(d, Decision::Merged { into: TaskId(3) });
        let order: Vec<_> = std::iter::from_fn(|| q.pop_ready("background")).collect();
        assert_eq!(order, [TaskId(3), TaskId(1), TaskId(2)]);
    }

    #[test]
    fn pools_are_separate_queues() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        q.submit(&key("a", "asn:1"), "fast", Priority::AUTOMATIC, || {
            ids.next()
        });
        q.submit(&key("b", "asn:1"), "slow", Priority::AUTOMATIC, || {
            ids.next()
        });
        assert_eq!(q.pending_in("fast"), 1);
        assert_eq!(q.pop_ready("slow"), Some(TaskId(2)));
        assert_eq!(q.pop_ready("slow"), None);
        assert_eq!(q.pending_in("fast"), 1);
    }

    #[test]
    fn pending_order_is_by_pool_then_ready_then_waiting() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        // slow: #1 runs, #2 waits behind it, #3 is ready.
        for target in ["asn:1", "asn:1", "asn:2"] {
            q.submit(&key("b", target), "slow", Priority::AUTOMATIC, || {
                ids.next()
            });
            if target == "asn:1" && q.peek_ready("slow") == Some(TaskId(1)) {
                q.pop_ready("slow");
            }
        }
        // fast: #4 automatic, #5 interactive runs first.
        q.submit(&key("a", "asn:1"), "fast", Priority::AUTOMATIC, || {
            ids.next()
        });
        q.submit(&key("a", "asn:2"), "fast", Priority::INTERACTIVE, || {
            ids.next()
        });
        let order: Vec<u64> = q.pending_in_order().map(|id| id.0).collect();
        assert_eq!(order, [5, 4, 3, 2]);
        assert_eq!(q.pending_in_order().collect::<Vec<_>>(), sorted_pending(&q));
    }

    #[test]
    fn removing_queued_and_follow_up_tasks_frees_their_keys() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "r", "asn:1");
        assert!(q.remove(TaskId(1)));
        assert!(!q.remove(TaskId(1)));
        assert_eq!(q.pop_ready("background"), None);
        assert_eq!(
            submit(&mut q, &mut ids, "r", "asn:1"),
            Decision::Queued {
                id: TaskId(2),
                absorbed: vec![]
            }
        );
        q.pop_ready("background");
        submit(&mut q, &mut ids, "r", "asn:1");
        assert_eq!(q.follow_up_of(TaskId(2)), Some(TaskId(3)));
        assert!(q.remove(TaskId(3)));
        assert_eq!(q.follow_up_of(TaskId(2)), None);
        assert_eq!(q.finish(TaskId(2)), None);
    }

    #[test]
    fn retry_waits_until_released_and_serves_the_follow_up() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "r", "asn:1");
        q.pop_ready("background");
        submit(&mut q, &mut ids, "r", "asn:1"); // follow-up 2
        assert_eq!(
            q.retry(TaskId(1), "background", Priority::AUTOMATIC),
            Some(TaskId(2))
        );
        assert_eq!(q.pop_ready("background"), None);
        assert_eq!(
            submit(&mut q, &mut ids, "r", "asn:1"),
            Decision::Merged { into: TaskId(1) }
        );
        assert!(q.release(TaskId(1)));
        assert_eq!(q.pop_ready("background"), Some(TaskId(1)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit { kind: u8, target: u8, urgent: bool },
        Start,
        Finish(usize),
        Retry(usize),
        Release(usize),
        Cancel(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..2u8, 0..4u8, any::<bool>()).prop_map(|(kind, target, urgent)| Op::Submit { kind, target, urgent }),
            2 => Just(Op::Start),
            2 => any::<usize>().prop_map(Op::Finish),
            1 => any::<usize>().prop_map(Op::Retry),
            1 => any::<usize>().prop_map(Op::Release),
            1 => any::<usize>().prop_map(Op::Cancel),
        ]
    }

    /// A model of what the queue must hold, checked after every step.
    #[derive(Default)]
    struct Model {
        /// Requests each live task stands for.
        requests: HashMap<TaskId, u64>,
        keys: HashMap<TaskId, Key>,
        /// The highest priority among each live task's requests.
        priority: HashMap<TaskId, Priority>,
        live: BTreeSet<TaskId>,
        running: BTreeSet<TaskId>,
        /// Pending tasks in retry backoff.
        delayed: BTreeSet<TaskId>,
        /// Follow-up → the running task it waits behind.
        follow_ups: HashMap<TaskId, TaskId>,
        ended: u64,
        submitted: u64,
    }

    impl Model {
        fn pending(&self) -> impl Iterator<Item = TaskId> + '_ {
            self.live.difference(&self.running).copied()
        }

        fn ready(&self) -> Vec<TaskId> {
            self.pending()
                .filter(|id| !self.delayed.contains(id) && !self.follow_ups.contains_key(id))
                .collect()
        }

        /// Takes a pending task out of the model; returns its requests.
        fn drop_pending(&mut self, id: TaskId) -> u64 {
            self.live.remove(&id);
            self.delayed.remove(&id);
            self.follow_ups.remove(&id);
            self.priority.remove(&id);
            self.requests.remove(&id).expect("pending task is live")
        }

        fn absorb(
            &mut self,
            id: TaskId,
            k: &Key,
            p: Priority,
            absorbed: Vec<TaskId>,
        ) -> Result<(), TestCaseError> {
            prop_assert!(
                absorbed.is_empty() || k.1.is_all(),
                "only a full rebuild absorbs"
            );
            let mut n = 1;
            let mut priority = p;
            for a in absorbed {
                prop_assert!(!self.running.contains(&a), "absorbed a running task");
                prop_assert!(self.keys[&a].0 == k.0 && !self.keys[&a].1.is_all());
                priority = priority.max(self.priority[&a]);
                n += self.drop_pending(a);
            }
            self.requests.insert(id, n);
            self.priority.insert(id, priority);
            self.keys.insert(id, k.clone());
            self.live.insert(id);
            Ok(())
        }

        fn check(&self, q: &Queue) -> Result<(), TestCaseError> {
            prop_assert_eq!(q.pending_len() + q.running_count(), self.live.len());
            prop_assert_eq!(q.pending_in_order().collect::<Vec<_>>(), sorted_pending(q));
            prop_assert_eq!(q.pending_len(), q.pending_in("background"));
            let counted: u64 = self.requests.values().sum::<u64>() + self.ended;
            prop_assert_eq!(counted, self.submitted, "a request was lost");
            let mut pending_keys = BTreeSet::new();
            for id in self.pending() {
                prop_assert!(
                    pending_keys.insert(self.keys[&id].clone()),
                    "two pending tasks for {:?}",
                    self.keys[&id]
                );
                prop_assert_eq!(
                    q.priority_of(id),
                    Some(self.priority[&id]),
                    "priority of {:?}",
                    id
                );
                prop_assert_eq!(q.is_delayed(id), self.delayed.contains(&id));
                prop_assert_eq!(q.waiting_behind(id), self.follow_ups.get(&id).copied());
            }
            for (&f, behind) in &self.follow_ups {
                prop_assert!(
                    self.running.contains(behind),
                    "follow-up {:?} behind a task that does not run",
                    f
                );
                prop_assert_eq!(q.follow_up_of(*behind), Some(f));
            }
            Ok(())
        }
    }

    /// Every pending task in queue order, by sorting them all.
    fn sorted_pending(q: &Queue) -> Vec<TaskId> {
        let mut all: Vec<(&str, bool, Reverse<Priority>, u64, TaskId)> = q
            .pending
            .iter()
            .map(|(&id, e)| {
                let ready = e.state == EntryState::Ready;
                let priority = if ready { e.priority } else { Priority(0) };
                (e.pool.as_str(), !ready, Reverse(priority), e.seq, id)
            })
            .collect();
        all.sort_unstable();
        all.into_iter().map(|(.., id)| id).collect()
    }

    proptest! {
        /// Random requests, starts, finishes, retries, releases and cancels
        /// never run two executions of one key at once, never lose a request,
        /// never merge into a running task, keep at most one pending task
        /// (and so at most one follow-up) per key, `all` included, merge
        /// entity requests into their kind's pending full rebuild, keep the
        /// highest priority of every merged request, and run ready tasks in
        /// priority order.
        #[test]
        fn coalescing_never_runs_a_key_twice_and_never_loses_a_request(ops in proptest::collection::vec(op(), 1..200)) {
            let (mut q, mut ids) = (Queue::default(), Ids(0));
            let targets = ["all", "country:DE", "asn:1", "asn:2"];
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Submit { kind, target, urgent } => {
                        m.submitted += 1;
                        let k = key(["a", "b"][kind as usize], targets[target as usize]);
                        let p = if urgent { Priority::INTERACTIVE } else { Priority::AUTOMATIC };
                        let pending_all = m.pending().find(|id| m.keys[id] == (k.0.clone(), Target::All));
                        let decision = q.submit(&k, "background", p, || ids.next());
                        if let (false, Some(all)) = (k.1.is_all(), pending_all) {
                            prop_assert_eq!(&decision, &Decision::Merged { into: all }, "entity request beside a pending full rebuild");
                        }
                        match decision {
                            Decision::Queued { id, absorbed } => m.absorb(id, &k, p, absorbed)?,
                            Decision::FollowUp { id, behind, absorbed } => {
                                prop_assert!(m.running.contains(&behind));
                                prop_assert_eq!(&m.keys[&behind], &k);
                                m.absorb(id, &k, p, absorbed)?;
                                m.follow_ups.insert(id, behind);
                            }
                            Decision::Merged { into } => {
                                prop_assert!(m.live.contains(&into) && !m.running.contains(&into), "merged into a task that is not pending");
                                *m.requests.get_mut(&into).unwrap() += 1;
                                let mp = m.priority.get_mut(&into).unwrap();
                                *mp = (*mp).max(p);
                                if urgent {
                                    m.delayed.remove(&into);
                                }
                            }
                        }
                    }
                    Op::Start => {
                        let ready = m.ready();
                        match q.pop_ready("background") {
                            Some(id) => {
                                prop_assert!(ready.contains(&id), "{:?} was not ready", id);
                                prop_assert!(ready.iter().all(|r| m.priority[r] <= m.priority[&id]), "priority order");
                                prop_assert!(
                                    m.running.iter().all(|r| m.keys[r] != m.keys[&id]),
                                    "two executions of key {:?}", m.keys[&id]
                                );
                                m.running.insert(id);
                            }
                            None => prop_assert!(ready.is_empty(), "{:?} ready but not started", ready),
                        }
                    }
                    Op::Finish(i) => {
                        if !m.running.is_empty() {
                            let id = *m.running.iter().nth(i % m.running.len()).unwrap();
                            m.running.remove(&id);
                            m.live.remove(&id);
                            m.ended += m.requests.remove(&id).unwrap();
                            m.priority.remove(&id);
                            let behind: Option<TaskId> = m.follow_ups.iter().find(|(_, b)| **b == id).map(|(f, _)| *f);
                            prop_assert_eq!(q.finish(id), behind);
                            if let Some(f) = behind {
                                m.follow_ups.remove(&f);
                            }
                        }
                    }
                    Op::Retry(i) => {
                        if !m.running.is_empty() {
                            let id = *m.running.iter().nth(i % m.running.len()).unwrap();
                            let behind: Option<TaskId> = m.follow_ups.iter().find(|(_, b)| **b == id).map(|(f, _)| *f);
                            let own = m.priority[&id];
                            prop_assert_eq!(q.retry(id, "background", own), behind);
                            m.running.remove(&id);
                            let mut priority = own;
                            let mut delayed = true;
                            if let Some(f) = behind {
                                let fp = m.priority[&f];
                                priority = priority.max(fp);
                                delayed = fp < Priority::INTERACTIVE;
                                let n = m.drop_pending(f);
                                *m.requests.get_mut(&id).unwrap() += n;
                            }
                            m.priority.insert(id, priority);
                            if delayed {
                                m.delayed.insert(id);
                            }
                        }
                    }
                    Op::Release(i) => {
                        if !m.delayed.is_empty() {
                            let id = *m.delayed.iter().nth(i % m.delayed.len()).unwrap();
                            prop_assert!(q.release(id));
                            m.delayed.remove(&id);
                        }
                    }
                    Op::Cancel(i) => {
                        let pending: Vec<TaskId> = m.pending().collect();
                        if !pending.is_empty() {
                            let id = pending[i % pending.len()];
                            prop_assert!(q.remove(id));
                            m.ended += m.drop_pending(id);
                        }
                    }
                }
                m.check(&q)?;
            }
        }
    }
}
