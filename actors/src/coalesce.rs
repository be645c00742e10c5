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
            self.insert(
                id,
                key.clone(),
                pool,
                priority,
                EntryState::FollowUp { behind: running },
            );
            self.follow_ups.insert(key, id);
            return Decision::FollowUp {
                id,
                behind: running,
            };
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
                let priority = if rank == 0 {
                    Reverse(e.priority)
                } else {
                    Reverse(Priority(0))
                };
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
            self.ready
                .entry(pool.to_owned())
                .or_default()
                .insert((Reverse(priority), seq, id));
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
        q.submit(key(kind, target), "background", Priority::AUTOMATIC, || {
            ids.next()
        })
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
                behind: TaskId(1)
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
    fn full_rebuild_is_coalesced_while_pending_or_running() {
        let (mut q, mut ids) = (Queue::default(), Ids(0));
        submit(&mut q, &mut ids, "refresh", "all");
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::Merged { into: TaskId(1) }
        );
        q.pop_ready("background");
        assert_eq!(
            submit(&mut q, &mut ids, "refresh", "all"),
            Decision::Merged { into: TaskId(1) }
        );
        assert_eq!(q.pending_len(), 0);
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
            key("refresh", "asn:3"),
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
        q.submit(key("a", "asn:1"), "fast", Priority::AUTOMATIC, || {
            ids.next()
        });
        q.submit(key("b", "asn:1"), "slow", Priority::AUTOMATIC, || {
            ids.next()
        });
        assert_eq!(q.pending_in("fast"), 1);
        assert_eq!(q.pop_ready("slow"), Some(TaskId(2)));
        assert_eq!(q.pop_ready("slow"), None);
        assert_eq!(q.pending_in("fast"), 1);
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
        Cancel(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2u8, 0..4u8, any::<bool>()).prop_map(|(kind, target, urgent)| Op::Submit { kind, target, urgent }),
            2 => Just(Op::Start),
            2 => any::<usize>().prop_map(Op::Finish),
            1 => any::<usize>().prop_map(Op::Cancel),
        ]
    }

    proptest! {
        /// Random requests, starts, finishes and cancels never run two
        /// executions of one key at once and never lose a request: every
        /// request is counted by exactly one task that is pending, running,
        /// finished or canceled.
        #[test]
        fn coalescing_never_runs_a_key_twice_and_never_loses_a_request(ops in proptest::collection::vec(op(), 1..200)) {
            let (mut q, mut ids) = (Queue::default(), Ids(0));
            let targets = ["all", "country:DE", "asn:1", "asn:2"];
            let mut requests: HashMap<TaskId, u64> = HashMap::new();
            let mut keys: HashMap<TaskId, Key> = HashMap::new();
            let mut live: BTreeSet<TaskId> = BTreeSet::new();
            let mut running: BTreeSet<TaskId> = BTreeSet::new();
            let mut ended: u64 = 0;
            let mut submitted: u64 = 0;
            for op in ops {
                match op {
                    Op::Submit { kind, target, urgent } => {
                        submitted += 1;
                        let k = key(["a", "b"][kind as usize], targets[target as usize]);
                        let p = if urgent { Priority::INTERACTIVE } else { Priority::AUTOMATIC };
                        match q.submit(k.clone(), "background", p, || ids.next()) {
                            Decision::Queued { id, absorbed } => {
                                let mut n = 1;
                                for a in absorbed {
                                    prop_assert!(!running.contains(&a), "absorbed a running task");
                                    n += requests.remove(&a).expect("absorbed task was live");
                                    live.remove(&a);
                                }
                                requests.insert(id, n);
                                keys.insert(id, k);
                                live.insert(id);
                            }
                            Decision::FollowUp { id, behind } => {
                                prop_assert!(running.contains(&behind));
                                prop_assert_eq!(&keys[&behind], &k);
                                requests.insert(id, 1);
                                keys.insert(id, k);
                                live.insert(id);
                            }
                            Decision::Merged { into } => {
                                prop_assert!(live.contains(&into), "merged into a task that is not live");
                                *requests.get_mut(&into).unwrap() += 1;
                            }
                        }
                    }
                    Op::Start => {
                        if let Some(id) = q.pop_ready("background") {
                            prop_assert!(live.contains(&id) && !running.contains(&id));
                            prop_assert!(
                                running.iter().all(|r| keys[r] != keys[&id]),
                                "two executions of key {:?}", keys[&id]
                            );
                            running.insert(id);
                        }
                    }
                    Op::Finish(i) => {
                        if !running.is_empty() {
                            let id = *running.iter().nth(i % running.len()).unwrap();
                            running.remove(&id);
                            live.remove(&id);
                            ended += requests.remove(&id).unwrap();
                            if let Some(f) = q.finish(id) {
                                prop_assert_eq!(&keys[&f], &keys[&id]);
                            }
                        }
                    }
                    Op::Cancel(i) => {
                        let pending: Vec<TaskId> = live.difference(&running).copied().collect();
                        if !pending.is_empty() {
                            let id = pending[i % pending.len()];
                            prop_assert!(q.remove(id));
                            live.remove(&id);
                            ended += requests.remove(&id).unwrap();
                        }
                    }
                }
                prop_assert_eq!(q.pending_len() + q.running_count(), live.len());
                prop_assert_eq!(q.pending_len(), q.pending_in("background"));
                let counted: u64 = requests.values().sum::<u64>() + ended;
                prop_assert_eq!(counted, submitted, "a request was lost");
            }
        }
    }
}
