//! The [`Supervisor`] actor: admission per pool, the queue, coalescing
//! decisions turned into records, and the life of every execution.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler, ResponseFuture};
use tokio_util::sync::CancellationToken;

use crate::coalesce::{Decision, Queue};
use crate::context::{ContextParts, TaskContext};
use crate::kind::{Registry, TaskError, TaskResult};
use crate::message::{
    Cancel, CancelError, CancelReply, Finished, LimitError, PanelSnapshot, Report, SetLimit,
    Submit, SubmitError, SubmitOutcome, SubmitReply, MAX_WORKER_LIMIT,
};
use crate::metrics::Metrics;
use crate::panel::{Activity, Panel, PanelTask, PoolStatus, Workers};
use crate::recovery::recover;
use crate::spec::{RunToken, TaskId, TaskSpec, TaskState};
use crate::store::{AttemptError, Change, StoreError, TaskRecord, TaskStore};
use crate::task::TaskActor;
use crate::time::Timestamp;

/// Admits tasks up to each pool's worker limit and queues the rest.
///
/// # Messages
/// - [`Submit`] → [`SubmitReply`]: `queued`, `merged` into an existing task,
///   or `follow_up` behind the running task of the same kind and target
///   (see the coalescing rules in the crate docs). Answered once durable.
/// - [`Cancel`] → [`CancelReply`]: a pending task ends `canceled` at once; a
///   running one is signaled and ends `canceled` at its next checkpoint; the
///   follow-up behind it is canceled too.
/// - [`SetLimit`]: raising a limit admits waiting work at once; lowering it
///   never stops a running task, it only stops admitting.
/// - [`PanelSnapshot`] → [`Panel`].
///
/// # Failure
/// A task that panics or returns an error ends `failed` with its message
/// (or is retried after a backoff when the error is retryable and attempts
/// remain); the supervisor and every other task keep running. A store write
/// that fails fails the request it belonged to.
///
/// # Shutdown
/// Stopping the supervisor stops its worker threads; executions still
/// running stay `running` in the store and are queued again by the next
/// start's recovery, so no accepted task is lost.
pub struct Supervisor {
    registry: Arc<Registry>,
    store: Arc<dyn TaskStore>,
    metrics: Metrics,
    pools: BTreeMap<String, Pool>,
    queue: Queue,
    live: HashMap<TaskId, Live>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    /// Tasks in retry backoff to release, from recovery, before start.
    delayed_at_start: Vec<(TaskId, Timestamp)>,
}

#[derive(Debug)]
struct Pool {
    limit: usize,
    active: usize,
}

struct Live {
    record: TaskRecord,
    execution: Option<Execution>,
}

struct Execution {
    cancel: CancellationToken,
    started: Instant,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("pools", &self.pools)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

/// Configures and starts a [`Supervisor`].
#[derive(Debug)]
pub struct SupervisorBuilder {
    registry: Registry,
    store: Option<Arc<dyn TaskStore>>,
    metrics: Option<Metrics>,
    pools: BTreeMap<String, usize>,
    worker_threads: usize,
}

/// Starting a supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Recovery could not read or update the store.
    #[error("restart recovery failed")]
    Store(#[source] StoreError),
    /// A kind names a pool that has no limit configured.
    #[error("kind {kind:?} runs in pool {pool:?}, which has no worker limit configured")]
    UnknownPool {
        /// Kind.
        kind: String,
        /// Its pool.
        pool: String,
    },
    /// Metrics could not be created.
    #[error("could not create metrics")]
    Metrics(#[source] prometheus::Error),
}

impl std::fmt::Debug for dyn TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskStore")
    }
}

impl SupervisorBuilder {
    /// The kinds to run.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The durable store (default: an in-memory store, nothing survives).
    pub fn store(mut self, store: Arc<dyn TaskStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Metrics to update (default: collectors no registry exposes).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets a pool's worker limit (pool `background` has limit 2 unless set).
    pub fn pool(mut self, name: impl Into<String>, limit: usize) -> Self {
        self.pools.insert(name.into(), limit.min(MAX_WORKER_LIMIT));
        self
    }

    /// Threads that run task executions (default: one per core). With 0,
    /// executions run on the supervisor's own arbiter.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Recovers unfinished tasks from the store and starts the supervisor
    /// in the current actix system.
    pub async fn start(self) -> Result<Addr<Supervisor>, StartError> {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(crate::MemoryStore::new()));
        let metrics = match self.metrics {
            Some(m) => m,
            None => Metrics::unregistered().map_err(StartError::Metrics)?,
        };
        for name in self.registry.names() {
            let pool = &self.registry.options(name).expect("listed kind").pool;
            if !self.pools.contains_key(pool) {
                return Err(StartError::UnknownPool {
                    kind: name.to_owned(),
                    pool: pool.clone(),
                });
            }
        }
        let mut queue = Queue::default();
        let unfinished = store.unfinished().await.map_err(StartError::Store)?;
        let now = Timestamp::now();
        let recovered = recover(unfinished, &self.registry, &mut queue, now);
        if !recovered.changes.is_empty() {
            store
                .write(recovered.changes)
                .await
                .map_err(StartError::Store)?;
        }
        let delayed_at_start = recovered
            .live
            .iter()
            .filter_map(|r| r.run_after.filter(|&t| t > now).map(|t| (r.id, t)))
            .collect();
        let live = recovered
            .live
            .into_iter()
            .map(|record| {
                (
                    record.id,
                    Live {
                        record,
                        execution: None,
                    },
                )
            })
            .collect();
        let workers = (0..self.worker_threads)
            .map(|_| Arbiter::new().handle())
            .collect();
        let pools = self
            .pools
            .into_iter()
            .map(|(name, limit)| {
                metrics
                    .workers_limit
                    .with_label_values(&[&name])
                    .set(limit as i64);
                metrics
                    .pending
                    .with_label_values(&[&name])
                    .set(queue.pending_in(&name) as i64);
                metrics.workers_active.with_label_values(&[&name]).set(0);
                (name, Pool { limit, active: 0 })
            })
            .collect();
        Ok(Supervisor {
            registry: Arc::new(self.registry),
            store,
            metrics,
            pools,
            queue,
            live,
            workers,
            next_worker: 0,
            delayed_at_start,
        }
        .start())
    }
}

impl Supervisor {
    /// A builder with pool `background` at limit 2 and one worker thread
    /// per core.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder {
            registry: Registry::new(),
            store: None,
            metrics: None,
            pools: BTreeMap::from([(crate::kind::DEFAULT_POOL.to_owned(), 2)]),
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// Admits ready tasks while their pools have free workers.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        let pools: Vec<String> = self.pools.keys().cloned().collect();
        for name in pools {
            loop {
                let pool = &self.pools[&name];
                if pool.active >= pool.limit {
                    break;
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
        let run = RunToken(u64::from(r.attempts));
        r.run = Some(run);
        r.started_at = Some(now);
        r.stage = None;
        r.progress = None;
        r.waiting_behind = None;
        r.run_after = None;
        // The start need not be awaited: a crash before it is durable leaves
        // the task queued, which recovery treats the same way.
        drop(self.store.write(vec![Change::Put(Box::new(r.clone()))]));
        self.metrics
            .queue_wait
            .with_label_values(&[&r.kind])
            .observe(now.since(r.created_at).as_secs_f64());
        self.pools.get_mut(pool).expect("pool exists").active += 1;

        let cancel = CancellationToken::new();
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
        });
        let actor = TaskActor::new(Arc::clone(&kind.task), context, ctx.address(), span);
        live.execution = Some(Execution {
            cancel,
            started: Instant::now(),
        });
        tracing::debug!(task = id.0, kind = %r.kind, target = %r.target, "task started");
        if self.workers.is_empty() {
            actor.start();
        } else {
            let worker = &self.workers[self.next_worker % self.workers.len()];
            self.next_worker = self.next_worker.wrapping_add(1);
            TaskActor::start_in_arbiter(worker, move |_| actor);
        }
    }

    fn submit(
        &mut self,
        spec: TaskSpec,
    ) -> Result<(SubmitReply, crate::store::Durable), SubmitError> {
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
            .submitted
            .with_label_values(&[&spec.kind, spec.trigger.metric_label()])
            .inc();
        let priority = spec.effective_priority();
        let key = (spec.kind.clone(), spec.target.clone());
        let store = &self.store;
        let decision = self
            .queue
            .submit(key, &pool, priority, || store.allocate_id());
        let mut changes = Vec::with_capacity(1);
        let reply = match decision {
            Decision::Queued { id, absorbed } => {
                let mut record = new_record(id, spec, pool.clone(), priority);
                for a in absorbed {
                    let mut gone = self.live.remove(&a).expect("absorbed task is live").record;
                    merge_into(&mut record, &gone);
                    gone.state = TaskState::Merged;
                    gone.merged_into = Some(id);
                    gone.finished_at = Some(record.created_at);
                    self.metrics
                        .coalesced
                        .with_label_values(&[&gone.kind, "absorbed"])
                        .inc();
                    self.metrics
                        .finished
                        .with_label_values(&[&gone.kind, "merged"])
                        .inc();
                    changes.push(Change::Put(Box::new(gone)));
                }
                changes.push(Change::Put(Box::new(record.clone())));
                self.live.insert(
                    id,
                    Live {
                        record,
                        execution: None,
                    },
                );
                SubmitReply {
                    id,
                    outcome: SubmitOutcome::Queued,
                }
            }
            Decision::FollowUp { id, behind } => {
                let mut record = new_record(id, spec, pool.clone(), priority);
                record.waiting_behind = Some(behind);
                self.metrics
                    .coalesced
                    .with_label_values(&[&record.kind, "follow_up"])
                    .inc();
                changes.push(Change::Put(Box::new(record.clone())));
                self.live.insert(
                    id,
                    Live {
                        record,
                        execution: None,
                    },
                );
                SubmitReply {
                    id,
                    outcome: SubmitOutcome::FollowUp { behind },
                }
            }
            Decision::Merged { into } => {
                let record = &mut self
                    .live
                    .get_mut(&into)
                    .expect("merge target is live")
                    .record;
                record.merged += 1;
                if !record.triggers.contains(&spec.trigger) {
                    record.triggers.push(spec.trigger);
                }
                if let Some(p) = self.queue.priority_of(into) {
                    record.priority = p;
                }
                self.metrics
                    .coalesced
                    .with_label_values(&[&record.kind, "merged"])
                    .inc();
                changes.push(Change::Put(Box::new(record.clone())));
                SubmitReply {
                    id: into,
                    outcome: SubmitOutcome::Merged,
                }
            }
        };
        self.update_pool_gauges(&pool);
        Ok((reply, self.store.write(changes)))
    }

    /// Ends a pending task as canceled; returns the store write.
    fn cancel_pending(&mut self, id: TaskId) -> Option<crate::store::Durable> {
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
        tracing::info!(task = id.0, kind = %record.kind, target = %record.target, "pending task canceled");
        self.update_pool_gauges(&pool);
        Some(self.store.write(vec![Change::Put(Box::new(record))]))
    }

    fn finish(&mut self, msg: Finished, ctx: &mut Context<Self>) {
        let Some(live) = self.live.get_mut(&msg.id) else {
            return;
        };
        if live.record.run != Some(msg.run) || live.execution.is_none() {
            return;
        }
        let execution = live.execution.take().expect("checked above");
        let kind_name = live.record.kind.clone();
        let pool = live.record.pool.clone();
        self.pools.get_mut(&pool).expect("pool exists").active -= 1;
        self.metrics
            .duration
            .with_label_values(&[&kind_name])
            .observe(execution.started.elapsed().as_secs_f64());
        let options = self
            .registry
            .get(&kind_name)
            .expect("registered")
            .options
            .clone();
        let now = Timestamp::now();
        let r = &mut live.record;
        let mut changes = Vec::with_capacity(2);
        match outcome_of(msg.result) {
            Outcome::Succeeded(result) => {
                r.state = TaskState::Succeeded;
                r.result = Some(result);
                r.error = None;
            }
            Outcome::Canceled => {
                r.state = TaskState::Canceled;
                r.error = Some("canceled while running".to_owned());
            }
            Outcome::Failed { message, retryable } => {
                r.errors.push(AttemptError {
                    attempt: r.attempts,
                    at: now,
                    message: message.clone(),
                });
                r.error = Some(message);
                if retryable && r.attempts < options.max_attempts {
                    let jitter = std::collections::hash_map::RandomState::new()
                        .hash_one((msg.id, r.attempts));
                    let delay =
                        options.backoff(r.attempts + 1, (jitter % 10_000) as f64 / 10_000.0);
                    r.state = TaskState::Queued;
                    r.run_after = Some(now.plus(delay));
                    r.stage = None;
                    let priority = r.priority;
                    let record = r.clone();
                    tracing::warn!(task = msg.id.0, kind = %kind_name, attempt = record.attempts, delay_ms = delay.as_millis() as u64, error = record.error.as_deref().unwrap_or(""), "task failed, will retry");
                    if let Some(f) = self.queue.retry(msg.id, &pool, priority) {
                        let follow_up = self.live.remove(&f).expect("follow-up is live").record;
                        changes.extend(self.merge_away(follow_up, msg.id));
                    }
                    changes.insert(0, Change::Put(Box::new(record)));
                    drop(self.store.write(changes));
                    self.schedule_release(msg.id, delay, ctx);
                    self.admit(ctx);
                    return;
                }
                r.state = TaskState::Failed;
            }
        }
        r.finished_at = Some(now);
        let state = r.state;
        tracing::info!(task = msg.id.0, kind = %kind_name, target = %r.target, state = %state, error = r.error.as_deref().unwrap_or(""), "task ended");
        self.metrics
            .finished
            .with_label_values(&[&kind_name, state.as_str()])
            .inc();
        let record = self
            .live
            .remove(&msg.id)
            .expect("finished task is live")
            .record;
        changes.push(Change::Put(Box::new(record)));
        if let Some(promoted) = self.queue.finish(msg.id) {
            let r = &mut self
                .live
                .get_mut(&promoted)
                .expect("follow-up is live")
                .record;
            r.waiting_behind = None;
            changes.push(Change::Put(Box::new(r.clone())));
        }
        drop(self.store.write(changes));
        self.admit(ctx);
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
            .finished
            .with_label_values(&[&gone.kind, "merged"])
            .inc();
        vec![
            Change::Put(Box::new(target.clone())),
            Change::Put(Box::new(gone)),
        ]
    }

    fn schedule_release(&mut self, id: TaskId, delay: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(delay, move |act, ctx| {
            if act.queue.release(id) {
                act.admit(ctx);
            }
        });
    }

    fn update_pool_gauges(&self, pool: &str) {
        if let Some(p) = self.pools.get(pool) {
            self.metrics
                .workers_active
                .with_label_values(&[pool])
                .set(p.active as i64);
            self.metrics
                .pending
                .with_label_values(&[pool])
                .set(self.queue.pending_in(pool) as i64);
        }
    }

    fn panel(&self, pending_limit: usize) -> Panel {
        let mut running: Vec<PanelTask> = self
            .live
            .values()
            .filter(|l| l.execution.is_some())
            .map(|l| PanelTask::from_record(&l.record))
            .collect();
        running.sort_by_key(|t| (t.started_at, t.id));
        let pending_total = self.queue.pending_len();
        let pending = self
            .queue
            .pending_in_order()
            .into_iter()
            .take(pending_limit)
            .map(|id| {
                let mut t = PanelTask::from_record(&self.live[&id].record);
                t.waiting_behind = self.queue.waiting_behind(id);
                t
            })
            .collect();
        let pools: Vec<PoolStatus> = self
            .pools
            .iter()
            .map(|(name, p)| PoolStatus {
                name: name.clone(),
                active: p.active,
                limit: p.limit,
                pending: self.queue.pending_in(name),
            })
            .collect();
        let workers = Workers {
            active: pools.iter().map(|p| p.active).sum(),
            limit: pools.iter().map(|p| p.limit).sum(),
        };
        let state = if running.is_empty() && pending_total == 0 {
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
        }
    }
}

enum Outcome {
    Succeeded(serde_json::Value),
    Canceled,
    Failed { message: String, retryable: bool },
}

fn outcome_of(result: TaskResult) -> Outcome {
    match result {
        Ok(value) => Outcome::Succeeded(value),
        Err(TaskError::Canceled) => Outcome::Canceled,
        Err(TaskError::Failed { message, retryable }) => Outcome::Failed { message, retryable },
    }
}

fn new_record(
    id: TaskId,
    spec: TaskSpec,
    pool: String,
    priority: crate::spec::Priority,
) -> TaskRecord {
    TaskRecord {
        id,
        kind: spec.kind,
        target: spec.target,
        trigger: spec.trigger.clone(),
        triggers: vec![spec.trigger],
        params: spec.params,
        priority,
        pool,
        state: TaskState::Queued,
        attempts: 0,
        run: None,
        stage: None,
        progress: None,
        result: None,
        error: None,
        errors: Vec::new(),
        merged: 0,
        waiting_behind: None,
        merged_into: None,
        created_at: Timestamp::now(),
        started_at: None,
        finished_at: None,
        run_after: None,
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

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let now = Timestamp::now();
        for (id, at) in std::mem::take(&mut self.delayed_at_start) {
            self.schedule_release(id, at.since(now), ctx);
        }
        self.admit(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for worker in &self.workers {
            worker.stop();
        }
    }
}

impl Handler<Submit> for Supervisor {
    type Result = ResponseFuture<Result<SubmitReply, SubmitError>>;

    fn handle(&mut self, Submit(spec): Submit, ctx: &mut Self::Context) -> Self::Result {
        let submitted = self.submit(spec);
        self.admit(ctx);
        Box::pin(async move {
            let (reply, durable) = submitted?;
            durable.await.map_err(SubmitError::Store)?;
            Ok(reply)
        })
    }
}

impl Handler<Cancel> for Supervisor {
    type Result = ResponseFuture<Result<CancelReply, CancelError>>;

    fn handle(&mut self, Cancel(id): Cancel, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(durable) = self.cancel_pending(id) {
            return Box::pin(async move {
                durable.await.map_err(CancelError::Store)?;
                Ok(CancelReply {
                    id,
                    state: TaskState::Canceled,
                    canceled_follow_ups: Vec::new(),
                })
            });
        }
        if let Some(execution) = self.live.get(&id).and_then(|l| l.execution.as_ref()) {
            execution.cancel.cancel();
            tracing::info!(task = id.0, "running task signaled to cancel");
            let follow_up = self.queue.follow_up_of(id);
            let durable = follow_up.and_then(|f| self.cancel_pending(f));
            return Box::pin(async move {
                if let Some(d) = durable {
                    d.await.map_err(CancelError::Store)?;
                }
                Ok(CancelReply {
                    id,
                    state: TaskState::Running,
                    canceled_follow_ups: follow_up.into_iter().collect(),
                })
            });
        }
        let lookup = self.store.get(id);
        Box::pin(async move {
            match lookup.await.map_err(CancelError::Store)? {
                Some(r) => Err(CancelError::AlreadyEnded { id, state: r.state }),
                None => Err(CancelError::NotFound(id)),
            }
        })
    }
}

impl Handler<SetLimit> for Supervisor {
    type Result = Result<(), LimitError>;

    fn handle(&mut self, msg: SetLimit, ctx: &mut Self::Context) -> Self::Result {
        if msg.limit > MAX_WORKER_LIMIT {
            return Err(LimitError::TooLarge(msg.limit));
        }
        let pool = self
            .pools
            .get_mut(&msg.pool)
            .ok_or_else(|| LimitError::UnknownPool(msg.pool.clone()))?;
        tracing::info!(pool = %msg.pool, from = pool.limit, to = msg.limit, "worker limit changed");
        pool.limit = msg.limit;
        self.metrics
            .workers_limit
            .with_label_values(&[&msg.pool])
            .set(msg.limit as i64);
        self.admit(ctx);
        Ok(())
    }
}

impl Handler<PanelSnapshot> for Supervisor {
    type Result = actix::MessageResult<PanelSnapshot>;

    fn handle(&mut self, msg: PanelSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.panel(msg.pending_limit))
    }
}

impl Handler<Report> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Report, _ctx: &mut Self::Context) {
        let Some(live) = self.live.get_mut(&msg.id) else {
            return;
        };
        if live.record.run != Some(msg.run) || live.execution.is_none() {
            return;
        }
        if let Some(stage) = &msg.stage {
            tracing::debug!(task = msg.id.0, stage = %stage, "stage");
            live.record.stage = Some(stage.clone());
        }
        if msg.progress.is_some() {
            live.record.progress = msg.progress;
        }
        drop(self.store.write(vec![Change::Report {
            id: msg.id,
            run: msg.run,
            stage: live.record.stage.clone(),
            progress: live.record.progress,
        }]));
    }
}

impl Handler<Finished> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.finish(msg, ctx);
    }
}
