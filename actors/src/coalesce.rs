//! The coalescing rules and queue order, as a pure state machine.
//!
//! A task's key is its (kind, target). For each key there is at most one
//! *queued* task, at most one *running* task, and at most one *follow-up*: a
//! queued task that waits for the running one to end because a request came
//! in after that run had started. The rules for a new request:
//!
//! | state of the key                       | outcome                              |
//! |----------------------------------------|--------------------------------------|
//! | kind has a queued full rebuild (entity)| merged into the full rebuild         |
//! | queued                                 | merged into the queued task          |
//! | running, full rebuild                  | merged into the running rebuild      |
//! | running, follow-up exists              | merged into the follow-up            |
//! | running, no follow-up                  | new follow-up waiting behind the run |
//! | nothing                                | new queued task                      |
//!
//! A new queued full rebuild absorbs the kind's queued and follow-up entity
//! tasks: they will be covered by it. A running full rebuild absorbs nothing,
//! since it may already have passed the entity.
//!
//! Ready tasks wait per pool in priority order, then first come first served.
//! Follow-ups and tasks in retry backoff are not ready. No I/O here: the
//! supervisor turns decisions into records, store writes and actors.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::entity::Target;
use crate::spec::{Priority, TaskId};

/// Coalescing key: (kind, target).
pub(crate) type Key = (String, Target);

/// What a new request turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A new task, ready to run; `absorbed` are pending tasks of the same
    /// kind that a new full rebuild took over.
    Queued { id: TaskId, absorbed: Vec<TaskId> },
    /// Merged into an existing queued, follow-up or running task.
    Merged { into: TaskId },
    /// A new task waiting behind the running task `behind`.
    FollowUp { id: TaskId, behind: TaskId },
}

#[derive(Debug)]
struct Entry {
    key: Key,
    pool: String,
    priority: Priority,
    seq: u64,
    state: EntryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    Ready,
    FollowUp { behind: TaskId },
    /// In retry backoff, ready again after `release`.
    Delayed,
}

type ReadyKey = (Reverse<Priority>, u64, TaskId);

/// The pending tasks of every pool and the running tasks' keys.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pending: HashMap<TaskId, Entry>,
    queued: HashMap<Key, TaskId>,
    follow_ups: HashMap<Key, TaskId>,
    running: HashMap<Key, TaskId>,
    running_keys: HashMap<TaskId, Key>,
    ready: HashMap<String, BTreeSet<ReadyKey>>,
    /// Queued full rebuilds by kind, so entity requests find them at once.
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
        key: Key,
        pool: &str,
        priority: Priority,
        new_id: impl FnOnce() -> TaskId,
    ) -> Decision {
        if !key.1.is_all() {
            if let Some(&full) = self.full_rebuilds.get(&key.0) {
                self.raise(full, priority);
                return Decision::Merged { into: full };
            }
        }
        if let Some(&queued) = self.queued.get(&key) {
            self.raise(queued, priority);
            return Decision::Merged { into: queued };
        }
        if let Some(&running) = self.running.get(&key) {
            if key.1.is_all() {
                return Decision::Merged { into: running };
            }
            if let Some(&follow_up) = self.follow_ups.get(&key) {
                self.raise(follow_up, priority);
                return Decision::Merged { into: follow_up };
            }
            let id = new_id();
            self.insert(id, key.clone(), pool, priority, EntryState::FollowUp { behind: running });
            self.follow_ups.insert(key, id);
            return Decision::FollowUp { id, behind: running };
        }
        let id = new_id();
        let absorbed = if key.1.is_all() {
            self.full_rebuilds.insert(key.0.clone(), id);
            self.absorb_entities_of(&key.0)
        } else {
            Vec::new()
        };
        self.queued.insert(key.clone(), id);
        self.insert(id, key, pool, priority, EntryState::Ready);
        Decision::Queued { id, absorbed }
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
        if let Some(&queued) = self.queued.get(&key) {
            self.raise(queued, priority);
            return Err(queued);
        }
        if key.1.is_all() {
            self.full_rebuilds.insert(key.0.clone(), id);
        }
        self.queued.insert(key.clone(), id);
        let state = if delayed { EntryState::Delayed } else { EntryState::Ready };
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
        self.running.insert(entry.key.clone(), id);
        self.running_keys.insert(id, entry.key);
        Some(id)
    }

    /// Marks a running task's execution ended. Its follow-up, if any,
    /// becomes an ordinary queued task, ready to run; it is returned.
    pub(crate) fn finish(&mut self, id: TaskId) -> Option<TaskId> {
        let key = self.running_keys.remove(&id)?;
        self.running.remove(&key);
        let follow_up = self.follow_ups.remove(&key)?;
        let entry = self.pending.get_mut(&follow_up).expect("follow-up is pending");
        entry.state = EntryState::Ready;
        let ready_key = (Reverse(entry.priority), entry.seq, follow_up);
        let pool = entry.pool.clone();
        self.queued.insert(key, follow_up);
        self.ready.entry(pool).or_default().insert(ready_key);
        Some(follow_up)
    }

    /// Puts a task whose execution ended back in the queue in retry
    /// backoff; `release` makes it ready. Returns the follow-up that was
    /// waiting behind it, now merged away: the retry will serve it.
    pub(crate) fn retry(&mut self, id: TaskId, pool: &str, priority: Priority) -> Option<TaskId> {
        let key = self.running_keys.remove(&id)?;
        self.running.remove(&key);
        let follow_up = self.follow_ups.remove(&key);
        if let Some(f) = follow_up {
            self.take(f);
        }
        self.queued.insert(key.clone(), id);
        self.insert(id, key, pool, priority, EntryState::Delayed);
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
        self.ready.entry(entry.pool.clone()).or_default().insert(ready_key);
        true
    }

    /// Removes a pending task (queued, follow-up or delayed); `false` if
    /// it is not pending.
    pub(crate) fn remove(&mut self, id: TaskId) -> bool {
        let Some(entry) = self.take(id) else {
            return false;
        };
        match entry.state {
            EntryState::FollowUp { .. } => {
                self.follow_ups.remove(&entry.key);
            }
            EntryState::Ready | EntryState::Delayed => {
                self.queued.remove(&entry.key);
                if entry.key.1.is_all() {
                    self.full_rebuilds.remove(&entry.key.0);
                }
                if let Some(set) = self.ready.get_mut(&entry.pool) {
                    set.remove(&(Reverse(entry.priority), entry.seq, id));
                }
            }
        }
        true
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

    /// Whether the task is pending.
    pub(crate) fn is_pending(&self, id: TaskId) -> bool {
        self.pending.contains_key(&id)
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
    /// arrival order.
    pub(crate) fn pending_in_order(&self) -> Vec<TaskId> {
        let mut ready: Vec<(&str, u8, Reverse<Priority>, u64, TaskId)> = self
            .pending
            .iter()
            .map(|(&id, e)| {
                let rank = if e.state == EntryState::Ready { 0 } else { 1 };
                let priority = if rank == 0 { Reverse(e.priority) } else { Reverse(Priority(0)) };
                (e.pool.as_str(), rank, priority, e.seq, id)
            })
            .collect();
        ready.sort_unstable();
        ready.into_iter().map(|(.., id)| id).collect()
    }

    /// Number of running keys (for invariant checks).
    #[cfg(test)]
    pub(crate) fn running_count(&self) -> usize {
        self.running.len()
    }

    fn insert(&mut self, id: TaskId, key: Key, pool: &str, priority: Priority, state: EntryState) {
        self.seq += 1;
        let seq = self.seq;
        if state == EntryState::Ready {
            self.ready.entry(pool.to_owned()).or_default().insert((Reverse(priority), seq, id));
        }
        *self.pending_per_pool.entry(pool.to_owned()).or_default() += 1;
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

    /// Raises a pending task's priority to `priority` if that is higher,
    /// keeping its place among equals.
    fn raise(&mut self, id: TaskId, priority: Priority) {
        let Some(entry) = self.pending.get_mut(&id) else {
            return;
        };
        if priority <= entry.priority {
            return;
        }
        if entry.state == EntryState::Ready {
            let set = self.ready.get_mut(&entry.pool).expect("ready pool exists");
            set.remove(&(Reverse(entry.priority), entry.seq, id));
            set.insert((Reverse(priority), entry.seq, id));
        }
        entry.priority = priority;
    }

    /// Pending entity tasks of `kind`, removed for a new full rebuild.
    fn absorb_entities_of(&mut self, kind: &str) -> Vec<TaskId> {
        let mut absorbed: Vec<TaskId> = self
            .pending
            .iter()
            .filter(|(_, e)| e.key.0 == kind && !e.key.1.is_all())
            .map(|(&id, _)| id)
            .collect();
        absorbed.sort_unstable();
        for &id in &absorbed {
            self.remove(id);
        }
        absorbed
    }

    /// The priority a pending task currently has.
    pub(crate) fn priority_of(&self, id: TaskId) -> Option<Priority> {
        self.pending.get(&id).map(|e| e.priority)
    }
}
