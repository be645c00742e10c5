//! The [`Supervisor`] actor: admission per pool, the queue, coalescing
//! decisions turned into records, and the life of every execution.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context};
use tokio_util::sync::CancellationToken;

use crate::coalesce::{Decision, Queue};
use crate::context::{ContextParts, TaskContext};
use crate::fence::Runs;
use crate::kind::{Registry, TaskError};
use crate::message::{Finished, SubmitError, SubmitOutcome, SubmitReply};
use crate::metrics::Metrics;
use crate::panel::{Activity, Panel, PanelTask, PoolStatus, Workers};
use crate::spec::{RunToken, TaskId, TaskSpec, TaskState};
use crate::store::{AttemptError, Change, TaskRecord, TaskStore};
use crate::task::TaskActor;
use crate::time::Timestamp;
use crate::writer::EntityWriter;
use journal::{Count, PendingSubmit, Undo};
use stop::Stop;

mod builder;
mod cluster;
mod drain;
mod handlers;
mod journal;
mod stop;

pub use builder::{StartError, SupervisorBuilder};
pub use drain::{Drain, DrainReport};

/// Admits tasks up to each pool's worker limit and queues the rest.
///
/// # Messages
/// - [`Submit`](crate::Submit) → [`SubmitReply`](crate::SubmitReply): `queued`, `merged` into an existing task,
///   or `follow_up` behind the running task of the same kind and target
///   (see the coalescing rules in the crate docs). Answered once durable.
/// - [`Cancel`](crate::Cancel) → [`CancelReply`](crate::CancelReply): a pending task ends `canceled` at once; a
///   running one becomes `canceling`, is signaled, and ends `canceled` once
///   its execution has ended, whatever error it returns then (it is not
///   retried): at its next checkpoint, or when it is stopped hard after the
///   grace period. The follow-up behind it is canceled too.
/// - [`AwaitRunEnd`](crate::AwaitRunEnd): resolves once the current execution has ended and
///   its outcome is durable.
///
/// # Stopping executions
/// A cancel, a kind's `timeout` and a [`Drain`] share one path: the
/// execution is signaled, and after a grace period (the pool's
/// `cancel_grace`, a cancel's own, or the drain's) its future is dropped,
/// which ends its run wherever it is (an external command's process group
/// is killed on drop). From the moment it is stopped hard, the run no
/// longer holds its task's claim: the entity writer refuses whatever it
/// still has in the writer's mailbox (see the fencing tokens in
/// `fence.rs`). A future that never yields (blocking its worker thread)
/// cannot be dropped; it stays `canceling` until it does.
/// - [`SetLimit`](crate::SetLimit): raising a limit admits waiting work at once; lowering it
///   never stops a running task, it only stops admitting.
/// - [`PanelSnapshot`](crate::PanelSnapshot) → [`Panel`](crate::Panel).
///
/// # Failure
/// A task that panics or returns an error ends `failed` with its message
/// (or is retried after a backoff when the error is retryable and attempts
/// remain); the supervisor and every other task keep running. A request is
/// answered only once durable, and admitted and shown only then; a store
/// write that fails undoes and refuses the requests in it, and while the
/// store fails nothing is admitted, requests are refused, and the runtime's
/// own changes are written again with backoff until the store takes them
/// (see `journal.rs`; the panel's `store` says so).
///
/// # Shutdown
/// A [`Drain`] cancels what still runs at its deadline; an execution that
/// then returns any error is queued again for the next start.
///
/// Stopping the supervisor stops its worker threads; executions still
/// running stay `running` in the store and are queued again by the next
/// start's recovery, so no accepted task is lost.
pub struct Supervisor {
    registry: Arc<Registry>,
    store: Arc<dyn TaskStore>,
    metrics: Metrics,
    pools: BTreeMap<String, Pool>,
    queue: Queue,
    live: crate::FastMap<TaskId, Live>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    /// Executions launched but not yet handed to their worker arbiter, per
    /// worker (see `dispatch`).
    launching: Vec<Vec<futures::future::BoxFuture<'static, ()>>>,
    /// Requests changed the pending counts since the pool gauges were last
    /// set (see `flush`).
    gauges_stale: bool,
    /// The metrics' children the hot path updates, resolved once.
    handles: crate::metrics::Handles,
    /// Tasks in retry backoff to release, from recovery, before start.
    delayed_at_start: Vec<(TaskId, Timestamp)>,
    /// Where task executions publish artifacts.
    writer: Option<Addr<EntityWriter>>,
    /// Set once a [`Drain`] arrived: nothing is admitted any more.
    drain: Option<drain::DrainState>,
    /// Changes on their way to the store.
    journal: journal::Journal,
    /// The claim each running task holds, shared with the entity writer.
    runs: Arc<Runs>,
    /// Set when this supervisor is one node of a cluster (see `cluster.rs`).
    cluster: Option<cluster::Cluster>,
}

#[derive(Debug)]
struct Pool {
    limit: usize,
    active: usize,
    /// How long a stopped execution gets before it is stopped hard.
    cancel_grace: Duration,
    /// Most tasks of the pool running at once on all nodes of a cluster.
    cluster_limit: Option<usize>,
}

struct Live {
    record: TaskRecord,
    execution: Option<Execution>,
}

struct Execution {
    /// Signals the execution to stop (cooperative).
    cancel: CancellationToken,
    /// Drops the execution's future (hard stop).
    abort: CancellationToken,
    started: Instant,
    /// Why the execution is being stopped, once it is.
    stop: Option<Stop>,
    /// Whether it was stopped hard.
    stopped_hard: bool,
    /// Callers of [`AwaitRunEnd`](crate::AwaitRunEnd).
    waiters: Vec<tokio::sync::oneshot::Sender<TaskState>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("pools", &self.pools)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A builder with pool `background` at limit 2 and one worker thread
    /// per core.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::new()
    }

    /// Admits ready tasks while their pools have free workers.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        if self.drain.is_some() || self.journal.failing() {
            return;
        }
        if self.cluster.is_some() {
            self.claim_shared(ctx);
            return;
        }
        let pools: Vec<String> = self.pools.keys().cloned().collect();
        for name in pools {
            loop {
                let pool = &self.pools[&name];
                if pool.active >= pool.limit {
                    break;
                }
                // The next task in line waits (one commit at most) until
                // the request that created it is durable.
                match self.queue.peek_ready(&name) {
                    Some(id) if self.journal.is_confirmed(id) => {}
                    _ => break,
                }
                let Some(id) = self.queue.pop_ready(&name) else {
                    break;
                };
                self.start_execution(id, &name, ctx);
            }
            self.update_pool_gauges(&name);
        }
    }

    fn start_execution(&mut self, id: TaskId, pool: &str, ctx: &mut Context<Self>) {
        let live = self.live.get_mut(&id).expect("admitted task is live");
        let r = &mut live.record;
        let now = Timestamp::now();
        r.state = TaskState::Running;
        r.attempts += 1;
        let run = RunToken::after(r.run);
        r.run = Some(run);
        r.started_at = Some(now);
        r.stage = None;
        r.progress = None;
        r.waiting_behind = None;
        r.run_after = None;
        // The start need not be awaited: a crash before it is durable leaves
        // the task queued, which recovery treats the same way.
        let start = Change::Put(Arc::new(r.clone()));
        self.launch(id, pool, run, ctx);
        self.journal(vec![start]);
    }

    /// Runs execution `run` of the live task `id` (its record says it
    /// runs) in a task actor.
    fn launch(&mut self, id: TaskId, pool: &str, run: RunToken, ctx: &mut Context<Self>) {
        let live = self.live.get_mut(&id).expect("launched task is live");
        let r = &live.record;
        let now = Timestamp::now();
        self.metrics.observe_queue_wait(
            &self.handles,
            &r.kind,
            now.since(r.created_at).as_secs_f64(),
        );
        self.pools.get_mut(pool).expect("pool exists").active += 1;

        let (cancel, abort) = (CancellationToken::new(), CancellationToken::new());
        let kind = self
            .registry
            .get(&r.kind)
            .expect("live tasks have registered kinds");
        let span = tracing::info_span!("task", id = id.0, kind = %r.kind, target = %r.target, trigger = %r.trigger, attempt = r.attempts);
        let context = TaskContext::new(ContextParts {
            id,
            run,
            attempt: r.attempts,
            kind: r.kind.clone(),
            target: r.target.clone(),
            triggers: r.triggers.clone(),
            params: r.params.clone(),
            cancel: cancel.clone(),
            supervisor: ctx.address(),
            writer: self.writer.clone(),
        });
        let execution = crate::task::execution(
            Arc::clone(&kind.task),
            context,
            abort.clone(),
            ctx.address(),
            span,
        );
        live.execution = Some(Execution {
            cancel,
            abort,
            started: Instant::now(),
            stop: None,
            stopped_hard: false,
            waiters: Vec::new(),
        });
        self.runs.claim(id, run);
        if let Some(limit) = kind.options.timeout {
            ctx.run_later(limit, move |act, ctx| act.time_out(id, run, limit, ctx));
        }
        tracing::debug!(task = id.0, kind = %r.kind, target = %r.target, "task started");
        if self.workers.is_empty() {
            TaskActor::start(Box::pin(execution));
            return;
        }
        let worker = self.next_worker % self.workers.len();
        self.next_worker = self.next_worker.wrapping_add(1);
        if self.launching.iter().all(Vec::is_empty) {
            // Once this message and the others already in the mailbox are
            // handled: every execution admitted meanwhile goes out then.
            ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, _| act.dispatch()));
        }
        self.launching.resize_with(self.workers.len(), Vec::new);
        self.launching[worker].push(Box::pin(execution));
    }

    /// Hands each worker arbiter the executions launched for it since the
    /// last dispatch, in one spawn: one wake of its thread starts them all.
    fn dispatch(&mut self) {
        for (worker, executions) in self.workers.iter().zip(self.launching.iter_mut()) {
            if executions.is_empty() {
                continue;
            }
            let executions = std::mem::take(executions);
            worker.spawn(async move {
                for execution in executions {
                    TaskActor::start(execution);
                }
            });
        }
    }

    /// Applies a request in memory and journals it; `answer` is told once
    /// it is durable (or undone, see `journal.rs`).
    fn submit(
        &mut self,
        spec: TaskSpec,
        answer: tokio::sync::oneshot::Sender<Result<SubmitReply, SubmitError>>,
    ) -> Result<(), SubmitError> {
        if self.drain.is_some() {
            return Err(SubmitError::ShuttingDown);
        }
        if let Some(error) = self.journal.refusal() {
            return Err(SubmitError::Store(error));
        }
        let kind = self
            .registry
            .get(&spec.kind)
            .ok_or_else(|| SubmitError::UnknownKind(spec.kind.chars().take(64).collect()))?;
        kind.task
            .validate(&spec.params)
            .map_err(|message| SubmitError::InvalidParams {
                kind: spec.kind.clone(),
                message,
            })?;
        let pool = kind.options.pool.clone();
        self.metrics
            .count_submitted(&self.handles, &spec.kind, spec.trigger.metric_label());
        let priority = spec.effective_priority();
        if let Some(c) = &mut self.cluster {
            let id = self.store.allocate_id();
            let record = TaskRecord::new_queued(id, spec, pool, priority, Timestamp::now());
            c.outbox.push((record, answer));
            return Ok(());
        }
        // The key is lent to the queue and moved back: a merge copies
        // neither string.
        let mut spec = spec;
        let key = (
            std::mem::take(&mut spec.kind),
            std::mem::replace(&mut spec.target, crate::entity::Target::All),
        );
        let store = &self.store;
        let decision = self
            .queue
            .submit(&key, &pool, priority, || store.allocate_id());
        (spec.kind, spec.target) = key;
        let mut changes = Vec::with_capacity(1);
        let mut counts = Vec::new();
        let (reply, undo) = match decision {
            Decision::Queued { id, absorbed } => {
                // An absorbed task may have raised the priority.
                let priority = self.queue.priority_of(id).unwrap_or(priority);
                let mut record =
                    TaskRecord::new_queued(id, spec, pool.clone(), priority, Timestamp::now());
                let originals = self.absorb(&mut record, absorbed, &mut changes, &mut counts);
                self.insert_live(record, &mut changes);
                let reply = SubmitReply {
                    id,
                    outcome: SubmitOutcome::Queued,
                };
                let undo = Undo::New {
                    id,
                    absorbed: originals,
                };
                (reply, undo)
            }
            Decision::FollowUp {
                id,
                behind,
                absorbed,
            } => {
                let priority = self.queue.priority_of(id).unwrap_or(priority);
                let mut record =
                    TaskRecord::new_queued(id, spec, pool.clone(), priority, Timestamp::now());
                record.waiting_behind = Some(behind);
                let originals = self.absorb(&mut record, absorbed, &mut changes, &mut counts);
                counts.push(Count::Coalesced(record.kind.clone(), "follow_up"));
                self.insert_live(record, &mut changes);
                let reply = SubmitReply {
                    id,
                    outcome: SubmitOutcome::FollowUp { behind },
                };
                let undo = Undo::New {
                    id,
                    absorbed: originals,
                };
                (reply, undo)
            }
            Decision::Merged { into } => {
                let record = &mut self
                    .live
                    .get_mut(&into)
                    .expect("merge target is live")
                    .record;
                let undo = Undo::Merged {
                    into,
                    trigger: (!record.triggers.contains(&spec.trigger))
                        .then(|| spec.trigger.clone()),
                    priority: record.priority,
                };
                record.merged += 1;
                let added = !record.triggers.contains(&spec.trigger);
                if added {
                    record.triggers.push(spec.trigger);
                }
                if let Some(p) = self.queue.priority_of(into) {
                    record.priority = p;
                }
                // An interactive request ended a retry backoff (an undo of
                // the request leaves it ready: it only runs earlier).
                if !self.queue.is_delayed(into) {
                    record.run_after = None;
                }
                counts.push(Count::Coalesced(record.kind.clone(), "merged"));
                changes.push(Change::Merge {
                    id: into,
                    merged: record.merged,
                    priority: record.priority,
                    triggers: added.then(|| record.triggers.clone()),
                    run_after: record.run_after,
                });
                let reply = SubmitReply {
                    id: into,
                    outcome: SubmitOutcome::Merged,
                };
                (reply, undo)
            }
        };
        // Set once for all requests of a message, by `flush`.
        self.gauges_stale = true;
        let pending = PendingSubmit {
            reply,
            answer,
            undo,
            counts,
        };
        self.journal_submit(changes, pending);
        Ok(())
    }

    /// Records the pending tasks a new full rebuild took over as merged into
    /// it.
    fn absorb(
        &mut self,
        record: &mut TaskRecord,
        absorbed: Vec<TaskId>,
        changes: &mut Vec<Change>,
        counts: &mut Vec<Count>,
    ) -> Vec<TaskRecord> {
        let mut originals = Vec::with_capacity(absorbed.len());
        for a in absorbed {
            let mut gone = self.live.remove(&a).expect("absorbed task is live").record;
            originals.push(gone.clone());
            merge_into(record, &gone);
            gone.state = TaskState::Merged;
            gone.merged_into = Some(record.id);
            gone.waiting_behind = None;
            gone.finished_at = Some(record.created_at);
            counts.push(Count::Coalesced(gone.kind.clone(), "absorbed"));
            counts.push(Count::Merged(gone.kind.clone()));
            changes.push(Change::Put(Arc::new(gone)));
        }
        originals
    }

    /// Keeps a new task's record in memory and journals it.
    fn insert_live(&mut self, record: TaskRecord, changes: &mut Vec<Change>) {
        changes.push(Change::Put(Arc::new(record.clone())));
        let execution = None;
        self.live.insert(record.id, Live { record, execution });
    }

    /// Ends a pending task as canceled; returns whether that became durable.
    fn cancel_pending(
        &mut self,
        id: TaskId,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<(), crate::store::StoreError>>> {
        if !self.queue.remove(id) {
            return None;
        }
        let mut record = self.live.remove(&id).expect("pending task is live").record;
        let pool = record.pool.clone();
        record.state = TaskState::Canceled;
        record.error = Some("canceled before it ran".to_owned());
        record.finished_at = Some(Timestamp::now());
        record.waiting_behind = None;
        self.metrics
            .finished
            .with_label_values(&[&record.kind, "canceled"])
            .inc();
        self.metrics.stats.record(&record);
        tracing::info!(task = id.0, kind = %record.kind, target = %record.target, "pending task canceled");
        self.update_pool_gauges(&pool);
        Some(self.journal_durable(vec![Change::Put(Arc::new(record))]))
    }

    fn finish(&mut self, msg: Finished, ctx: &mut Context<Self>) {
        let Some(live) = self.live.get_mut(&msg.id) else {
            return;
        };
        if live.record.run != Some(msg.run) || live.execution.is_none() {
            return;
        }
        if self.lease_lapsed(msg.id, msg.run) {
            // Its end is not this node's to record any more: the task runs
            // again once its lease has expired in the database.
            self.lose(msg.id, msg.run, cluster::LAPSED);
            return;
        }
        let live = self.live.get_mut(&msg.id).expect("checked above");
        let execution = live.execution.take().expect("checked above");
        self.runs.release(msg.id, msg.run);
        let (kind, pool) = (live.record.kind.clone(), live.record.pool.clone());
        self.pools.get_mut(&pool).expect("pool exists").active -= 1;
        self.metrics.observe_duration(
            &self.handles,
            &kind,
            execution.started.elapsed().as_secs_f64(),
        );
        let max_attempts = self
            .registry
            .get(&kind)
            .expect("registered")
            .options
            .max_attempts;
        let r = &mut live.record;
        let now = Timestamp::now();
        let waiters = execution.waiters;
        // Once stopped, any error is the stop's outcome, whatever the task
        // made of it: a cancel is never retried, never a failure.
        let state = match (msg.result, execution.stop) {
            (Ok(result), _) => {
                r.result = Some(result);
                r.error = None;
                TaskState::Succeeded
            }
            (Err(_), Some(Stop::Shutdown)) => {
                self.requeue_for_restart(msg.id);
                stop::notify(waiters, TaskState::Queued);
                self.drain_progress(ctx);
                return;
            }
            (Err(e), Some(Stop::Cancel)) => {
                r.error = Some(match e {
                    _ if execution.stopped_hard => {
                        "canceled while running; stopped hard after the grace period".to_owned()
                    }
                    TaskError::Canceled => "canceled while running".to_owned(),
                    TaskError::Failed { message, .. } => {
                        format!("canceled while running; it ended with: {message}")
                    }
                });
                TaskState::Canceled
            }
            (Err(TaskError::Canceled), None) => {
                r.error = Some("canceled while running".to_owned());
                TaskState::Canceled
            }
            (Err(e), stop) => {
                let (message, retryable) = match (e, stop) {
                    (_, Some(Stop::Timeout(limit))) => {
                        (format!("timed out after {} s", limit.as_secs_f64()), true)
                    }
                    (TaskError::Failed { message, retryable }, _) => (message, retryable),
                    (TaskError::Canceled, _) => unreachable!("matched above"),
                };
                r.errors.push(AttemptError {
                    attempt: r.attempts,
                    at: now,
                    message: message.clone(),
                });
                r.error = Some(message);
                if retryable && r.attempts < max_attempts && self.drain.is_none() {
                    self.schedule_retry(msg.id, ctx);
                    stop::notify(waiters, TaskState::Queued);
                    self.admit(ctx);
                    return;
                }
                TaskState::Failed
            }
        };
        self.end_execution(msg.id, state, now, waiters);
        self.drain_progress(ctx);
        self.admit(ctx);
    }

    /// Records a task's terminal state and promotes its follow-up.
    fn end_execution(
        &mut self,
        id: TaskId,
        state: TaskState,
        now: Timestamp,
        waiters: Vec<tokio::sync::oneshot::Sender<TaskState>>,
    ) {
        let mut record = self.live.remove(&id).expect("finished task is live").record;
        record.state = state;
        record.finished_at = Some(now);
        tracing::info!(task = id.0, kind = %record.kind, target = %record.target, state = %state,
            error = record.error.as_deref().unwrap_or(""), "task ended");
        self.metrics
            .count_finished(&self.handles, &record.kind, state.as_str());
        self.metrics.stats.record(&record);
        if let Some(d) = self.drain.as_mut() {
            d.count_completed();
        }
        let mut changes = vec![Change::Put(Arc::new(record))];
        changes.extend(self.release_key(id));
        if waiters.is_empty() {
            self.journal(changes);
        } else {
            let durable = self.journal_durable(changes);
            actix::spawn(async move {
                if let Ok(Ok(())) = durable.await {
                    stop::notify(waiters, state);
                }
            });
        }
    }

    /// Marks the execution of `id` ended in the queue; the follow-up behind
    /// it becomes ready. Returns the follow-up's changed record.
    fn release_key(&mut self, id: TaskId) -> Option<Change> {
        let promoted = self.queue.finish(id)?;
        let r = &mut self
            .live
            .get_mut(&promoted)
            .expect("follow-up is live")
            .record;
        r.waiting_behind = None;
        Some(Change::Put(Arc::new(r.clone())))
    }

    /// Puts a task whose attempt failed back in the queue after its kind's
    /// backoff; the follow-up behind it merges into the retry.
    fn schedule_retry(&mut self, id: TaskId, ctx: &mut Context<Self>) {
        let kind = &self.live[&id].record.kind;
        let options = &self.registry.get(kind).expect("registered").options;
        let r = &mut self.live.get_mut(&id).expect("retried task is live").record;
        let jitter = std::collections::hash_map::RandomState::new().hash_one((id, r.attempts));
        let delay = options.backoff(r.attempts + 1, (jitter % 10_000) as f64 / 10_000.0);
        r.state = TaskState::Queued;
        r.run_after = Some(Timestamp::now().plus(delay));
        r.stage = None;
        tracing::warn!(task = id.0, kind = %r.kind, attempt = r.attempts, delay_ms = delay.as_millis() as u64,
            error = r.error.as_deref().unwrap_or(""), "task failed, will retry");
        self.requeue(id);
        if self.cluster.is_some() {
            // Any node may claim it once the backoff is over; this one
            // looks then, ahead of its poll.
            ctx.run_later(delay, |act, ctx| act.admit(ctx));
            return;
        }
        self.schedule_release(id, delay, ctx);
    }

    /// Puts a task whose execution ended back in the queue, not ready until
    /// released, and journals it; the follow-up waiting behind it is merged
    /// into it, since the next execution serves its requests too.
    pub(super) fn requeue(&mut self, id: TaskId) {
        if self.cluster.is_some() {
            // Back in the shared queue, where any node claims it.
            let record = self.live.remove(&id).expect("requeued task is live").record;
            self.journal(vec![Change::Put(Arc::new(record))]);
            return;
        }
        let r = &self.live[&id].record;
        let (pool, priority) = (r.pool.clone(), r.priority);
        let follow_up = self.queue.retry(id, &pool, priority);
        // The follow-up merged into the retry keeps its priority, and an
        // interactive one does not wait out the backoff.
        let r = &mut self
            .live
            .get_mut(&id)
            .expect("requeued task is live")
            .record;
        r.priority = self.queue.priority_of(id).unwrap_or(priority);
        if !self.queue.is_delayed(id) {
            r.run_after = None;
        }
        let changes = match follow_up {
            Some(f) => {
                let follow_up = self.live.remove(&f).expect("follow-up is live").record;
                self.merge_away(follow_up, id)
            }
            None => vec![Change::Put(Arc::new(self.live[&id].record.clone()))],
        };
        self.journal(changes);
    }

    /// Records `gone` as merged into the live task `into`; returns the
    /// store changes.
    fn merge_away(&mut self, mut gone: TaskRecord, into: TaskId) -> Vec<Change> {
        let target = &mut self
            .live
            .get_mut(&into)
            .expect("merge target is live")
            .record;
        merge_into(target, &gone);
        gone.state = TaskState::Merged;
        gone.merged_into = Some(into);
        gone.waiting_behind = None;
        gone.finished_at = Some(Timestamp::now());
        self.metrics
            .count_finished(&self.handles, &gone.kind, "merged");
        vec![
            Change::Put(Arc::new(target.clone())),
            Change::Put(Arc::new(gone)),
        ]
    }

    fn schedule_release(&mut self, id: TaskId, delay: Duration, ctx: &mut Context<Self>) {
        let Some(at) = self.live.get(&id).and_then(|l| l.record.run_after) else {
            return;
        };
        ctx.run_later(delay, move |act, ctx| {
            // Released early (an interactive request) and in backoff again,
            // the task waits for its new `run_after`, not this one.
            let current = act.live.get(&id).and_then(|l| l.record.run_after);
            if current == Some(at) && act.queue.release(id) {
                act.admit(ctx);
                act.flush(ctx);
            }
        });
    }

    fn update_pool_gauges(&self, pool: &str) {
        if let Some(p) = self.pools.get(pool) {
            let pending = self
                .shared_pending_in(pool)
                .unwrap_or_else(|| self.queue.pending_in(pool));
            self.metrics
                .set_pool(&self.handles, pool, p.active, pending);
        }
    }

    fn panel(&self, pending_limit: usize) -> Panel {
        // Off a cluster every execution's task is one of the queue's
        // running ones (a few beside possibly many queued live tasks); a
        // cluster node's live tasks are only those it claimed.
        let candidates: Box<dyn Iterator<Item = &Live>> = if self.cluster.is_some() {
            Box::new(self.live.values())
        } else {
            Box::new(self.queue.running_ids().filter_map(|id| self.live.get(&id)))
        };
        let mut running: Vec<PanelTask> = candidates
            .filter(|l| l.execution.is_some())
            .map(|l| PanelTask::from_record(&l.record))
            .collect();
        running.sort_by_key(|t| (t.started_at, t.id));
        // Tasks whose request is not durable yet are not shown.
        let mut hidden: HashMap<&str, usize> = HashMap::new();
        for id in self.journal.unconfirmed() {
            if let (Some(_), Some(l)) = (self.queue.priority_of(*id), self.live.get(id)) {
                *hidden.entry(l.record.pool.as_str()).or_default() += 1;
            }
        }
        let (pending, pending_total) = self.shared_pending(pending_limit).unwrap_or_else(|| {
            let pending = self
                .queue
                .pending_in_order()
                .filter(|id| self.journal.is_confirmed(*id))
                .take(pending_limit)
                .map(|id| {
                    let mut t = PanelTask::from_record(&self.live[&id].record);
                    t.waiting_behind = self.queue.waiting_behind(id);
                    t
                })
                .collect();
            (
                pending,
                self.queue.pending_len() - hidden.values().sum::<usize>(),
            )
        });
        let pools: Vec<PoolStatus> = self
            .pools
            .iter()
            .map(|(name, p)| PoolStatus {
                name: name.clone(),
                active: p.active,
                limit: p.limit,
                cluster_limit: p.cluster_limit,
                pending: self.shared_pending_in(name).unwrap_or_else(|| {
                    self.queue.pending_in(name) - hidden.get(name.as_str()).unwrap_or(&0)
                }),
            })
            .collect();
        let workers = Workers {
            active: pools.iter().map(|p| p.active).sum(),
            limit: pools.iter().map(|p| p.limit).sum(),
        };
        // Idle only once the store has every change: a reader that sees
        // Idle then finds each task's end in the store.
        let store = self.journal.status();
        let state = if running.is_empty()
            && pending_total == 0
            && !self.shared_busy()
            && store.unwritten == 0
        {
            Activity::Idle
        } else {
            Activity::Active
        };
        Panel {
            state,
            workers,
            pools,
            running,
            pending,
            pending_total,
            store,
            nodes: self
                .cluster
                .as_ref()
                .map(|c| c.nodes.clone())
                .unwrap_or_default(),
        }
    }
}

/// Counts `gone`'s requests into `target` and keeps its triggers.
fn merge_into(target: &mut TaskRecord, gone: &TaskRecord) {
    target.merged += 1 + gone.merged;
    for t in &gone.triggers {
        if !target.triggers.contains(t) {
            target.triggers.push(t.clone());
        }
    }
}
