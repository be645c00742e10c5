//! The supervisor as one node of a cluster: requests go to the
//! [`SharedQueue`], work is claimed from it in batches, leases are renewed
//! by heartbeats, and expired ones are rescued.
//!
//! # What stays local
//! Executions, their stop path, stage and progress, and completions
//! through the journal are the same as on one node; the store applies a
//! completion only while the run holds its lease. The in-memory queue is
//! not used: the database is the queue.
//!
//! # Ticks
//! Every [`POLL`] the node claims for its free workers (a wake-up after a
//! local enqueue or completion claims at once) and refreshes the panel's
//! view of the cluster's queue; every third of the lease it renews its
//! leases, and every half lease it rescues expired ones. A claim, a
//! heartbeat and a rescue are each in flight at most once.
//!
//! # A lost lease
//! The local fence ([`Runs`](crate::fence::Runs)) holds claims only until
//! the last renewal's lease ends, measured from before the renewal was
//! sent: a node that froze or lost the database refuses its own
//! publications from then on. A heartbeat that no longer lists a run means
//! another node may run it now: the execution is stopped hard and
//! forgotten, and `groundcrew_stale_runs_total{write="lease"}` counts it.
//! So is a run whose lease this node could not renew in time (the
//! database was away): its lease ends at the latest a lease after the
//! claim or the last renewal that listed it was sent, and the database may
//! give it to another node from then on. Heartbeats list the runs they
//! renew, so a run stopped here is never renewed again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use tokio::sync::oneshot;

use crate::message::{SubmitError, SubmitReply};
use crate::panel::PanelTask;
use crate::shared::{HeldRun, NodeStatus, SharedCancel, SharedPending, SharedQueue};
use crate::spec::{RunToken, TaskId, TaskState};
use crate::store::{StoreError, TaskRecord};

use super::{Live, Supervisor};

/// How often a node claims and refreshes its view of the queue without a
/// wake-up (a fallback: wake-ups come from the shared queue).
pub(super) const POLL: Duration = Duration::from_secs(1);

/// Why a run is stopped when its lease lapsed.
pub(super) const LAPSED: &str = "its lease was not renewed in time";

/// Ready work may have appeared in the cluster.
struct Wake;

impl actix::StreamHandler<Wake> for Supervisor {
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.admit(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The queue stopped sending wake-ups: the poll carries on.
    }
}

/// Most pending tasks the panel's view of the cluster queue holds.
const PENDING_VIEW: usize = 1000;

/// A node's cluster state.
pub(super) struct Cluster {
    pub(super) queue: Arc<dyn SharedQueue>,
    /// Pools with a claim in flight.
    claiming: HashSet<String>,
    /// Pools asked to claim while their claim was in flight: they claim
    /// again when it is back.
    again: HashSet<String>,
    heartbeat_in_flight: bool,
    rescue_in_flight: bool,
    pending_in_flight: bool,
    /// The cluster's queue and nodes, as last read.
    pub(super) pending: SharedPending,
    pub(super) nodes: Vec<NodeStatus>,
    /// Why the last claim or heartbeat failed, while it does.
    pub(super) failing: Option<StoreError>,
    /// An enqueue batch is in flight; requests meanwhile wait in `outbox`
    /// for the next one (group commit).
    enqueue_in_flight: bool,
    /// Whether the pending view was read at least once.
    loaded: bool,
    /// Requests not yet handed to the shared queue.
    pub(super) outbox: Vec<(
        TaskRecord,
        oneshot::Sender<Result<SubmitReply, SubmitError>>,
    )>,
}

impl Cluster {
    pub(super) fn new(queue: Arc<dyn SharedQueue>) -> Self {
        Self {
            queue,
            claiming: HashSet::new(),
            again: HashSet::new(),
            heartbeat_in_flight: false,
            rescue_in_flight: false,
            pending_in_flight: false,
            pending: SharedPending::default(),
            nodes: Vec::new(),
            failing: None,
            outbox: Vec::new(),
            enqueue_in_flight: false,
            loaded: false,
        }
    }
}

impl Supervisor {
    /// Starts the ticks; called once the actor runs.
    pub(super) fn start_cluster(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &self.cluster else {
            return;
        };
        let lease = c.queue.lease();
        // Until the first heartbeat nothing is claimed, so no claim needs a
        // lease yet.
        self.runs.lease_until(Instant::now() + lease);
        let wakeups = futures::stream::unfold(c.queue.wakeups(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some((Wake, rx))
        });
        ctx.add_stream(wakeups);
        ctx.run_interval(POLL, |act, ctx| {
            act.admit(ctx);
            act.refresh_pending(ctx);
        });
        ctx.run_interval(lease / 3, |act, ctx| act.heartbeat(ctx));
        ctx.run_interval(lease / 2, |act, ctx| act.rescue(ctx));
        self.heartbeat(ctx);
        self.rescue(ctx);
        self.refresh_pending(ctx);
    }

    /// Claims work for every pool with free workers.
    pub(super) fn claim_shared(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let mut claims = Vec::new();
        for (name, pool) in &self.pools {
            let free = pool.limit.saturating_sub(pool.active);
            if free == 0 {
                continue;
            }
            if c.claiming.contains(name) {
                c.again.insert(name.clone());
                continue;
            }
            c.claiming.insert(name.clone());
            claims.push((name.clone(), c.queue.claim(name, free, pool.cluster_limit)));
        }
        let sent = Instant::now();
        for (pool_name, claimed) in claims {
            ctx.spawn(
                claimed
                    .into_actor(self)
                    .map(move |result, act, ctx| act.claimed(pool_name, sent, result, ctx)),
            );
        }
    }

    fn claimed(
        &mut self,
        pool: String,
        sent: Instant,
        result: Result<Vec<TaskRecord>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        c.claiming.remove(&pool);
        let again = c.again.remove(&pool);
        let records = match result {
            Ok(records) => records,
            Err(e) => {
                if c.failing.is_none() {
                    tracing::error!(error = %e, pool = %pool, "claiming from the shared queue failed");
                }
                c.failing = Some(e);
                return;
            }
        };
        if c.failing.take().is_some() {
            tracing::info!("the shared queue answers again");
        }
        let got_some = !records.is_empty();
        let until = sent + c.queue.lease();
        for record in &records {
            let run = record.run.expect("a claimed task has a run");
            self.runs.lease_run_until(record.id, run, until);
        }
        if got_some {
            self.expire_leases_at(until, ctx);
        }
        for record in records {
            let (id, run, pool) = (
                record.id,
                record.run.expect("a claimed task has a run"),
                record.pool.clone(),
            );
            if !self.pools.contains_key(&pool) || self.registry.get(&record.kind).is_none() {
                // Claimed by the pool's name but not runnable here: fail it
                // rather than hold it until its lease expires.
                self.refuse_claimed(record);
                continue;
            }
            if self.pools.get(&pool).is_some_and(|p| p.active >= p.limit) {
                // Claimed before the pool's limit was lowered.
                self.hand_back(record);
                continue;
            }
            self.live.insert(
                id,
                Live {
                    record,
                    execution: None,
                },
            );
            self.launch(id, &pool, run, ctx);
        }
        // More may be ready: a wake-up came meanwhile, or the batch had
        // some (it may have been full).
        if got_some || again {
            self.claim_shared(ctx);
        }
        self.flush(ctx);
    }

    /// Puts a claimed task back in the shared queue unrun, its attempt not
    /// counted: the pool's limit was lowered while the claim was under way,
    /// and running it would exceed the new limit.
    fn hand_back(&mut self, mut record: TaskRecord) {
        let run = record.run.expect("a claimed task has a run");
        self.runs.release(record.id, run);
        tracing::info!(task = record.id.0, kind = %record.kind, target = %record.target, pool = %record.pool,
            "claimed after the pool's limit was lowered; handed back to the queue");
        record.state = TaskState::Queued;
        record.attempts = record.attempts.saturating_sub(1);
        record.started_at = None;
        record.stage = None;
        record.progress = None;
        self.journal(vec![crate::store::Change::Put(Arc::new(record))]);
    }

    /// Ends a claimed task this node cannot run (unknown kind or pool).
    fn refuse_claimed(&mut self, mut record: TaskRecord) {
        tracing::error!(task = record.id.0, kind = %record.kind, pool = %record.pool,
            "claimed a task this node cannot run; failing it");
        record.state = TaskState::Failed;
        record.error = Some(format!(
            "node {} has no kind {:?} in pool {:?}",
            self.cluster.as_ref().map_or("", |c| c.queue.node()),
            record.kind,
            record.pool
        ));
        record.finished_at = Some(crate::time::Timestamp::now());
        self.journal(vec![crate::store::Change::Put(Arc::new(record))]);
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.heartbeat_in_flight {
            return;
        }
        c.heartbeat_in_flight = true;
        let sent = Instant::now();
        let lease = c.queue.lease();
        let runs: Vec<(TaskId, RunToken)> = self
            .live
            .iter()
            .filter(|(_, l)| l.execution.is_some())
            .filter_map(|(id, l)| l.record.run.map(|r| (*id, r)))
            .collect();
        let beat = c.queue.heartbeat(runs.clone());
        ctx.spawn(beat.into_actor(self).map(move |result, act, ctx| {
            if let Some(c) = &mut act.cluster {
                c.heartbeat_in_flight = false;
            }
            match result {
                Ok(held) => {
                    act.runs.lease_until(sent + lease);
                    for h in &held {
                        act.runs.lease_run_until(h.id, h.run, sent + lease);
                    }
                    act.expire_leases_at(sent + lease, ctx);
                    act.held(runs, held, ctx);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if let Some(c) = &mut act.cluster {
                        c.failing = Some(e);
                    }
                }
            }
        }));
    }

    /// Compares the runs the database says this node holds with those the
    /// heartbeat listed (`sent`) that still run here: lost runs are
    /// stopped, runs canceled from elsewhere signaled. A run claimed after
    /// the heartbeat was sent is left to the next one.
    fn held(&mut self, sent: Vec<(TaskId, RunToken)>, held: Vec<HeldRun>, ctx: &mut Context<Self>) {
        for (id, run) in sent {
            let runs_here = self
                .live
                .get(&id)
                .is_some_and(|l| l.execution.is_some() && l.record.run == Some(run));
            if !runs_here {
                continue;
            }
            match held.iter().find(|h| h.id == id && h.run == run) {
                None => self.lose(id, run, "the task was rescued by the cluster"),
                Some(h) if h.state == TaskState::Canceling => {
                    let live = self.live.get_mut(&id).expect("listed above");
                    let execution = live.execution.as_ref().expect("listed above");
                    if execution.stop.is_none() {
                        tracing::info!(task = id.0, "canceled from another node");
                        live.record.state = TaskState::Canceling;
                        let grace = self.pools[&live.record.pool].cancel_grace;
                        self.stop_execution(id, super::Stop::Cancel, grace, ctx);
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Checks the runs' leases when the earliest of those just set ends.
    fn expire_leases_at(&mut self, until: Instant, ctx: &mut Context<Self>) {
        let wait = until.saturating_duration_since(Instant::now());
        ctx.run_later(wait, |act, _| act.expire_leases());
    }

    /// Stops every run whose lease this node could not renew in time:
    /// the database may give it to another node now.
    fn expire_leases(&mut self) {
        let lapsed: Vec<(TaskId, RunToken)> = self
            .live
            .iter()
            .filter(|(_, l)| l.execution.is_some())
            .filter_map(|(id, l)| l.record.run.map(|r| (*id, r)))
            .filter(|(id, run)| self.lease_lapsed(*id, *run))
            .collect();
        for (id, run) in lapsed {
            self.lose(id, run, LAPSED);
        }
    }

    /// Whether this node could not renew the lease of run `run` of `id`
    /// in time, so that the database may have given it to another node.
    pub(super) fn lease_lapsed(&self, id: TaskId, run: RunToken) -> bool {
        self.cluster.is_some()
            && self
                .runs
                .lease_of(id, run)
                .is_some_and(|until| until <= Instant::now())
    }

    /// Forgets a run whose lease is gone: another node may run it now.
    pub(super) fn lose(&mut self, id: TaskId, run: RunToken, why: &str) {
        let Some(mut live) = self.live.remove(&id) else {
            return;
        };
        let execution = live.execution.take().expect("only running tasks are lost");
        self.runs.release(id, run);
        execution.abort.cancel();
        execution.cancel.cancel();
        let pool = live.record.pool.clone();
        if let Some(p) = self.pools.get_mut(&pool) {
            p.active -= 1;
        }
        self.metrics.stale_runs.with_label_values(&["lease"]).inc();
        tracing::warn!(task = id.0, run = run.0, kind = %live.record.kind, target = %live.record.target,
            "lease lost: {why}; stopped this run");
        super::stop::notify(execution.waiters, TaskState::Queued);
        self.update_pool_gauges(&pool);
    }

    fn rescue(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.rescue_in_flight {
            return;
        }
        c.rescue_in_flight = true;
        let rescued = c.queue.rescue();
        ctx.spawn(rescued.into_actor(self).map(|result, act, ctx| {
            if let Some(c) = &mut act.cluster {
                c.rescue_in_flight = false;
            }
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(tasks = n, "rescued tasks whose lease expired");
                    act.admit(ctx);
                }
                Err(e) => tracing::warn!(error = %e, "rescuing expired leases failed"),
            }
        }));
    }

    fn refresh_pending(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.pending_in_flight {
            return;
        }
        c.pending_in_flight = true;
        let (pending, nodes) = (c.queue.pending(PENDING_VIEW), c.queue.nodes());
        let both = async move { (pending.await, nodes.await) };
        ctx.spawn(both.into_actor(self).map(|(pending, nodes), act, _| {
            let Some(c) = &mut act.cluster else {
                return;
            };
            c.pending_in_flight = false;
            if let Ok(p) = pending {
                c.pending = p;
                c.loaded = true;
            }
            if let Ok(n) = nodes {
                c.nodes = n;
            }
            let pools: Vec<String> = act.pools.keys().cloned().collect();
            for pool in pools {
                act.update_pool_gauges(&pool);
            }
        }));
    }

    /// Hands the requests submitted since the last call to the shared
    /// queue in one batch; each answer is told once the database has it.
    /// Then claims at once.
    pub(super) fn send_enqueues(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.outbox.is_empty() || c.enqueue_in_flight {
            return;
        }
        c.enqueue_in_flight = true;
        let (records, answers): (Vec<_>, Vec<_>) =
            std::mem::take(&mut c.outbox).into_iter().unzip();
        let enqueued = c.queue.enqueue(records);
        ctx.spawn(enqueued.into_actor(self).map(|result, act, ctx| {
            if let Some(c) = &mut act.cluster {
                c.enqueue_in_flight = false;
            }
            act.send_enqueues(ctx);
            match result {
                Ok(replies) => {
                    for (answer, reply) in answers.into_iter().zip(replies) {
                        let _ = answer.send(Ok(reply));
                    }
                    act.admit(ctx);
                }
                Err(e) => {
                    tracing::error!(error = %e, "enqueue in the shared queue failed");
                    for answer in answers {
                        let _ = answer.send(Err(SubmitError::Store(e.clone())));
                    }
                }
            }
        }));
    }

    /// A cancel of a task this node does not run.
    pub(super) fn cancel_shared(
        &self,
        id: TaskId,
    ) -> Option<futures::future::BoxFuture<'static, Result<SharedCancel, StoreError>>> {
        self.cluster.as_ref().map(|c| c.queue.cancel(id))
    }

    /// The panel's pending list and total on a cluster.
    pub(super) fn shared_pending(&self, limit: usize) -> Option<(Vec<PanelTask>, usize)> {
        let c = self.cluster.as_ref()?;
        let tasks = c
            .pending
            .tasks
            .iter()
            .take(limit)
            .map(PanelTask::from_record)
            .collect();
        Some((tasks, c.pending.total as usize))
    }

    /// Whether the cluster may have work this node does not see yet: the
    /// view was never read, a claim or rescue is in flight, or other nodes
    /// run tasks. The panel is `active` then, never a false `idle`.
    pub(super) fn shared_busy(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| {
            !c.loaded
                || !c.claiming.is_empty()
                || c.rescue_in_flight
                || c.enqueue_in_flight
                || c.pending.running_elsewhere > 0
        })
    }

    /// Queued tasks of `pool` in the whole cluster, as last read.
    pub(super) fn shared_pending_in(&self, pool: &str) -> Option<usize> {
        let c = self.cluster.as_ref()?;
        Some(
            c.pending
                .per_pool
                .iter()
                .find(|(p, _)| p == pool)
                .map_or(0, |(_, n)| *n as usize),
        )
    }
}
