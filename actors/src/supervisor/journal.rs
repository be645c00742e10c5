//! The supervisor's journal: how its changes reach the [`TaskStore`], and
//! what happens when the store does not take them.
//!
//! # One write in flight
//! Changes are appended to a buffer as the supervisor makes them. At most
//! one write is in flight: when it is durable, everything buffered meanwhile
//! goes out as the next write, so concurrent requests share one commit (the
//! store may batch further). Progress reports for the same execution are
//! folded into one change while they wait.
//!
//! A put of a task also replaces, in place, the task's earlier put still
//! waiting in the buffer when nothing a store's uniqueness rules look at can
//! differ between the two: the start, cancel and end of one execution (no
//! other task of the key can be queued or running meanwhile), or two puts of
//! one pending task in the same place in the queue (a merge). A task that
//! starts and ends within one write is then one put, not two, and the store
//! never sees the intermediate record, which a crash could not have kept
//! apart from the rest of that write anyway. Not on a cluster, whose store
//! fences each completion on its own.
//!
//! # Accepted entirely or not at all
//! A request's effects (a new task, an absorbed one, a merge) are applied
//! in memory at once, so that later requests coalesce with it, but a new
//! task is neither admitted nor shown in the panel until the write holding
//! it is durable; then the request is answered. If that write fails, the
//! request is undone (newest first, with every request after it) and
//! refused with the store's error: the queue is as if it never came, and
//! the store never saw it.
//!
//! # A failing store
//! A failed write changed nothing, so it is put back in front of what came
//! after it and written again after a backoff (100 ms doubling to 2 s); an
//! empty write probes the store when nothing else waits. Meanwhile the
//! supervisor admits nothing, refuses requests with the store's error, and
//! reports the failure in the panel ([`StoreStatus`]); the first write that
//! succeeds ends all of that. Starts, ends and requeues are therefore never
//! lost to a failed write: the store ends up with the state the runtime has.

use std::sync::Arc;
use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use tokio::sync::oneshot;

use crate::message::{SubmitError, SubmitReply};
use crate::panel::StoreStatus;
use crate::spec::{Priority, RunToken, TaskId, TaskState, Trigger};
use crate::store::{Change, StoreError, TaskRecord};
use crate::time::Timestamp;
use crate::{FastMap, FastSet};

use super::{Live, Supervisor};

/// First delay before a failed write is tried again; it doubles per failure.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest delay between two tries.
const MAX_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(super) struct Journal {
    /// Changes not yet handed to the store, in order.
    buffer: Vec<Change>,
    /// Who waits for the buffered changes.
    tickets: Vec<Ticket>,
    /// Index in `buffer` of the last report of each execution, so that the
    /// next one replaces it.
    reports: FastMap<TaskId, (usize, RunToken)>,
    /// Index in `buffer` of the last put of each task, so that a later put
    /// may replace it (see the module docs).
    puts: FastMap<TaskId, usize>,
    /// Index in `buffer` of the last merge of each task, so that the next
    /// one folds into it.
    merges: FastMap<TaskId, usize>,
    /// Whether puts replace earlier ones (off on a cluster).
    fold_puts: bool,
    /// The write the store has now.
    in_flight: Option<Batch>,
    /// Set while writes fail.
    failure: Option<Failure>,
    /// A retry is scheduled; nothing is written before it.
    backing_off: bool,
    /// Tasks created by requests whose write is not durable yet.
    unconfirmed: FastSet<TaskId>,
    /// Task ends the store has taken since the supervisor started.
    recorded_ends: u64,
}

#[derive(Debug)]
struct Batch {
    changes: Vec<Change>,
    tickets: Vec<Ticket>,
}

#[derive(Debug)]
struct Failure {
    error: StoreError,
    since: Timestamp,
    tries: u32,
}

/// Someone waiting for buffered changes to become durable.
#[derive(Debug)]
enum Ticket {
    /// Told the outcome; the changes stay journaled either way.
    Durable(oneshot::Sender<Result<(), StoreError>>),
    /// A request: answered when durable, undone when not.
    Submit(Box<PendingSubmit>),
}

/// A request whose effects are applied in memory but not yet durable.
#[derive(Debug)]
pub(super) struct PendingSubmit {
    pub(super) reply: SubmitReply,
    pub(super) answer: oneshot::Sender<Result<SubmitReply, SubmitError>>,
    pub(super) undo: Undo,
    /// Metrics to count once the request is accepted.
    pub(super) counts: Vec<Count>,
}

/// How to take a request back.
#[derive(Debug)]
pub(super) enum Undo {
    /// It created task `id`; `absorbed` are the records of the pending
    /// tasks it took over, as they were.
    New {
        id: TaskId,
        absorbed: Vec<TaskRecord>,
    },
    /// It was merged into `into`, which had priority `priority`; it added
    /// `trigger` to the task's triggers.
    Merged {
        into: TaskId,
        trigger: Option<Trigger>,
        priority: Priority,
    },
}

/// A metric a request counts once it is accepted.
#[derive(Debug)]
pub(super) enum Count {
    /// `coalesced{kind, outcome}`.
    Coalesced(String, &'static str),
    /// `finished{kind, "merged"}`.
    Merged(String),
}

fn id_of(change: &Change) -> TaskId {
    match change {
        Change::Put(r) => r.id,
        Change::Merge { id, .. } | Change::Report { id, .. } => *id,
    }
}

/// Whether a put of `later` may take the place of the buffered put of
/// `earlier`, the same task's: both of one execution that has started
/// (start, cancel, end or requeue), or both of the task pending in the
/// same place (queued, or the follow-up of the same run).
fn replaces(earlier: &TaskRecord, later: &TaskRecord) -> bool {
    let executing = matches!(earlier.state, TaskState::Running | TaskState::Canceling);
    let pending_alike = earlier.state == TaskState::Queued
        && later.state == TaskState::Queued
        && earlier.waiting_behind == later.waiting_behind;
    earlier.run == later.run && (executing || pending_alike)
}

impl Journal {
    /// An empty journal; `fold_puts`: whether a put may replace an earlier
    /// one of the task (see the module docs).
    pub(super) fn new(fold_puts: bool) -> Self {
        Self {
            fold_puts,
            ..Self::default()
        }
    }

    /// Whether the task may be admitted or shown: its request is durable.
    pub(super) fn is_confirmed(&self, id: TaskId) -> bool {
        !self.unconfirmed.contains(&id)
    }

    pub(super) fn unconfirmed(&self) -> impl Iterator<Item = &TaskId> {
        self.unconfirmed.iter()
    }

    /// Whether writes fail now.
    pub(super) fn failing(&self) -> bool {
        self.failure.is_some()
    }

    /// The error requests are refused with while writes fail.
    pub(super) fn refusal(&self) -> Option<StoreError> {
        self.failure.as_ref().map(|f| f.error.clone())
    }

    pub(super) fn status(&self) -> StoreStatus {
        let unwritten = self.buffer.len() + self.in_flight.as_ref().map_or(0, |b| b.changes.len());
        StoreStatus {
            ok: self.failure.is_none(),
            error: self.failure.as_ref().map(|f| f.error.to_string()),
            failing_since: self.failure.as_ref().map(|f| f.since),
            unwritten,
            recorded_ends: self.recorded_ends,
        }
    }

    fn push(&mut self, mut change: Change) {
        match &change {
            Change::Report { id, run, .. } => {
                if let Some(&(i, r)) = self.reports.get(id) {
                    if r == *run {
                        self.buffer[i] = change;
                        return;
                    }
                }
                self.reports.insert(*id, (self.buffer.len(), *run));
            }
            Change::Merge { id, .. } => {
                let id = *id;
                // Into the task's put still in the buffer (a new task and
                // the requests merged into it before it is written): the
                // put is not shared yet, so this copies nothing.
                if let Some(&i) = self.puts.get(&id) {
                    if let Change::Put(r) = &mut self.buffer[i] {
                        if r.state == TaskState::Queued {
                            change.merge_into(Arc::make_mut(r));
                            return;
                        }
                    }
                }
                // Over the task's earlier merge, keeping the triggers it
                // sent when this one adds none.
                if let Some(&i) = self.merges.get(&id) {
                    if let (
                        Change::Merge { triggers, .. },
                        Change::Merge {
                            triggers: earlier, ..
                        },
                    ) = (&mut change, &mut self.buffer[i])
                    {
                        if triggers.is_none() {
                            *triggers = earlier.take();
                        }
                        self.buffer[i] = change;
                        return;
                    }
                }
                self.merges.insert(id, self.buffer.len());
            }
            // A report folded into an earlier place must not land before
            // a put that would overwrite it; nor a merge.
            Change::Put(r) => {
                self.reports.remove(&r.id);
                self.merges.remove(&r.id);
                if self.fold_puts {
                    if let Some(&i) = self.puts.get(&r.id) {
                        if matches!(&self.buffer[i], Change::Put(earlier) if replaces(earlier, r)) {
                            self.buffer[i] = change;
                            return;
                        }
                    }
                    self.puts.insert(r.id, self.buffer.len());
                }
            }
        }
        self.buffer.push(change);
    }

    /// Forgets where buffered changes are: the buffer was taken or
    /// rearranged.
    fn clear_places(&mut self) {
        self.reports.clear();
        self.puts.clear();
        self.merges.clear();
    }

    /// Everything written for a task that never became durable goes.
    fn forget(&mut self, id: TaskId) {
        self.buffer.retain(|c| id_of(c) != id);
        self.clear_places();
    }

    /// The last record journaled for `id`, if it was put.
    fn last_put(&self, id: TaskId) -> Option<&TaskRecord> {
        self.buffer.iter().rev().find_map(|c| match c {
            Change::Put(r) if r.id == id => Some(&**r),
            _ => None,
        })
    }
}

impl Supervisor {
    /// Journals changes; they go out with the next write.
    pub(super) fn journal(&mut self, changes: Vec<Change>) {
        for change in changes {
            self.journal.push(change);
        }
    }

    /// Journals changes; the receiver learns whether they became durable
    /// with the next write. Either way they stay journaled.
    pub(super) fn journal_durable(
        &mut self,
        changes: Vec<Change>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        self.journal(changes);
        let (tx, rx) = oneshot::channel();
        self.journal.tickets.push(Ticket::Durable(tx));
        rx
    }

    /// Journals a request's changes; it is answered once they are durable.
    pub(super) fn journal_submit(&mut self, changes: Vec<Change>, pending: PendingSubmit) {
        if let Undo::New { id, .. } = pending.undo {
            self.journal.unconfirmed.insert(id);
        }
        self.journal(changes);
        self.journal.tickets.push(Ticket::Submit(Box::new(pending)));
    }

    /// Hands the buffer to the store unless a write is in flight or a
    /// retry is pending. While failing, an empty write probes the store.
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.gauges_stale) {
            for pool in self.pools.keys() {
                self.update_pool_gauges(pool);
            }
        }
        self.send_enqueues(ctx);
        let j = &mut self.journal;
        if j.in_flight.is_some() || j.backing_off {
            return;
        }
        if j.buffer.is_empty() && j.tickets.is_empty() && j.failure.is_none() {
            return;
        }
        j.clear_places();
        let changes = std::mem::take(&mut j.buffer);
        let tickets = std::mem::take(&mut j.tickets);
        let durable = self.store.write(changes.clone());
        j.in_flight = Some(Batch { changes, tickets });
        ctx.spawn(
            durable
                .into_actor(self)
                .map(|result, act, ctx| act.written(result, ctx)),
        );
    }

    /// The in-flight write ended.
    fn written(&mut self, result: Result<(), StoreError>, ctx: &mut Context<Self>) {
        let batch = self
            .journal
            .in_flight
            .take()
            .expect("a write was in flight");
        match result {
            Ok(()) => {
                self.journal.recorded_ends += batch
                    .changes
                    .iter()
                    .filter(|c| matches!(c, Change::Put(r) if r.state.is_terminal()))
                    .count() as u64;
                if let Some(f) = self.journal.failure.take() {
                    tracing::info!(
                        failed_for_ms = Timestamp::now().since(f.since).as_millis() as u64,
                        tries = f.tries,
                        "task store writes again; admitting and accepting again"
                    );
                }
                for ticket in batch.tickets {
                    match ticket {
                        Ticket::Durable(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                        Ticket::Submit(pending) => self.accept(*pending),
                    }
                }
                self.admit(ctx);
            }
            Err(error) => self.write_failed(batch, error, ctx),
        }
        self.flush(ctx);
    }

    /// Puts a failed write back, undoes the requests in it and after it,
    /// and schedules the retry.
    fn write_failed(&mut self, batch: Batch, error: StoreError, ctx: &mut Context<Self>) {
        let j = &mut self.journal;
        let tries = match &mut j.failure {
            Some(f) => {
                f.tries += 1;
                f.error = error.clone();
                f.tries
            }
            None => {
                tracing::error!(error = %error, changes = batch.changes.len(),
                    "task store write failed: refusing requests and admitting nothing until it writes again");
                j.failure = Some(Failure {
                    error: error.clone(),
                    since: Timestamp::now(),
                    tries: 1,
                });
                1
            }
        };
        if tries % 30 == 0 {
            tracing::warn!(error = %error, tries, "task store still fails");
        }
        let mut changes = batch.changes;
        changes.append(&mut j.buffer);
        j.buffer = changes;
        j.clear_places();
        let mut tickets = batch.tickets;
        tickets.append(&mut j.tickets);
        for ticket in tickets.into_iter().rev() {
            match ticket {
                Ticket::Durable(tx) => {
                    let _ = tx.send(Err(error.clone()));
                }
                Ticket::Submit(pending) => self.undo(*pending, &error),
            }
        }
        let exp = tries.saturating_sub(1).min(16);
        let delay = FIRST_RETRY.saturating_mul(1 << exp).min(MAX_RETRY);
        self.journal.backing_off = true;
        ctx.run_later(delay, |act, ctx| {
            act.journal.backing_off = false;
            act.flush(ctx);
        });
    }

    /// A request's write is durable: count it and answer it.
    fn accept(&mut self, pending: PendingSubmit) {
        if let Undo::New { id, .. } = pending.undo {
            self.journal.unconfirmed.remove(&id);
        }
        for count in pending.counts {
            match count {
                Count::Coalesced(kind, outcome) => {
                    self.metrics.count_coalesced(&self.handles, &kind, outcome);
                }
                Count::Merged(kind) => {
                    self.metrics.count_finished(&self.handles, &kind, "merged");
                }
            }
        }
        let _ = pending.answer.send(Ok(pending.reply));
    }

    /// Takes a request back whose write failed. Requests are undone newest
    /// first, so everything a later request did is gone already.
    fn undo(&mut self, pending: PendingSubmit, error: &StoreError) {
        match pending.undo {
            Undo::New { id, absorbed } => {
                self.journal.unconfirmed.remove(&id);
                self.queue.remove(id);
                if self.live.remove(&id).is_none() {
                    // Merged away meanwhile into a retry of its key: that
                    // task no longer counts the request.
                    let gone = self
                        .journal
                        .last_put(id)
                        .filter(|r| r.state == TaskState::Merged)
                        .and_then(|r| r.merged_into.map(|into| (into, r.merged)));
                    if let Some((into, merged)) = gone {
                        if let Some(live) = self.live.get_mut(&into) {
                            live.record.merged = live.record.merged.saturating_sub(1 + merged);
                            let put = Change::Put(Arc::new(live.record.clone()));
                            self.journal.push(put);
                        }
                    }
                }
                self.journal.forget(id);
                for record in absorbed {
                    self.reinstate(record);
                }
            }
            Undo::Merged {
                into,
                trigger,
                priority,
            } => {
                if let Some(live) = self.live.get_mut(&into) {
                    let r = &mut live.record;
                    r.merged = r.merged.saturating_sub(1);
                    if let Some(t) = trigger {
                        r.triggers.retain(|x| *x != t);
                    }
                    r.priority = priority;
                    let put = Change::Put(Arc::new(r.clone()));
                    self.queue.set_priority(into, priority);
                    self.journal.push(put);
                }
            }
        }
        let _ = pending.answer.send(Err(SubmitError::Store(error.clone())));
    }

    /// Puts a pending task that an undone request had absorbed back in the
    /// queue, as it was.
    fn reinstate(&mut self, mut record: TaskRecord) {
        let id = record.id;
        let key = (record.kind.clone(), record.target.clone());
        let delayed = record.run_after.is_some_and(|t| t > Timestamp::now());
        let behind = record.waiting_behind;
        if !self
            .queue
            .reinstate(id, key, &record.pool, record.priority, behind, delayed)
        {
            // Cannot happen while requests are undone newest first; the
            // store still has it queued, so the next start runs it.
            tracing::warn!(
                task = id.0,
                "absorbed task could not be put back in the queue"
            );
            return;
        }
        if self.queue.waiting_behind(id).is_none() {
            record.waiting_behind = None;
        }
        let pool = record.pool.clone();
        // Its put as `merged` never became durable; put it back as it is.
        self.journal.push(Change::Put(Arc::new(record.clone())));
        self.live.insert(
            id,
            Live {
                record,
                execution: None,
            },
        );
        self.update_pool_gauges(&pool);
    }

    /// Hands whatever is still buffered to the store without waiting, for
    /// when the supervisor stops: the store applies it after the write in
    /// flight, in order.
    pub(super) fn flush_on_stop(&mut self) {
        let changes = std::mem::take(&mut self.journal.buffer);
        self.journal.clear_places();
        if !changes.is_empty() {
            drop(self.store.write(changes));
        }
    }
}
