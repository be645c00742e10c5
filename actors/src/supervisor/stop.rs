//! Stopping executions: a cancel, a timeout and a shutdown signal an
//! execution, and after a grace period stop it hard (its future dropped,
//! its claim taken back). Also the waiting for an execution's end that a
//! cancel with confirmation needs.

use std::sync::Arc;
use std::time::Duration;

use actix::{AsyncContext, Context, Handler, ResponseFuture};
use tokio::sync::oneshot;

use crate::message::{AwaitRunEnd, Cancel, CancelError, CancelReply};
use crate::shared::SharedCancel;
use crate::spec::{RunToken, TaskId, TaskState};
use crate::store::{Change, StoreError};

use super::Supervisor;

/// Why an execution is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// An operator canceled the task: it ends `canceled`.
    Cancel,
    /// It ran past its kind's timeout: the attempt fails.
    Timeout(Duration),
    /// The process is shutting down: it is queued again for the next start.
    Shutdown,
}

impl Stop {
    fn label(self) -> &'static str {
        match self {
            Stop::Cancel => "cancel",
            Stop::Timeout(_) => "timeout",
            Stop::Shutdown => "shutdown",
        }
    }
}

/// Tells every waiter the state an execution's end left its task in.
pub(super) fn notify(waiters: Vec<oneshot::Sender<TaskState>>, state: TaskState) {
    for w in waiters {
        let _ = w.send(state);
    }
}

impl Supervisor {
    /// Signals the execution of `id` to stop for `why`, and stops it hard
    /// after `grace` unless it has ended by then. The first reason stands,
    /// except that an operator's cancel overrides a timeout and a shutdown
    /// (it must end `canceled`, not be retried). A shorter grace given
    /// later still applies.
    pub(super) fn stop_execution(
        &mut self,
        id: TaskId,
        why: Stop,
        grace: Duration,
        ctx: &mut Context<Self>,
    ) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(execution) = live.execution.as_mut() else {
            return;
        };
        let run = live.record.run.expect("a running task has a run token");
        match execution.stop {
            None => execution.stop = Some(why),
            Some(Stop::Timeout(_) | Stop::Shutdown) if why == Stop::Cancel => {
                execution.stop = Some(why)
            }
            Some(_) => {}
        }
        execution.cancel.cancel();
        ctx.run_later(grace, move |act, _| act.stop_hard(id, run, grace));
    }

    /// Drops the future of execution `run` of `id` if it is still running,
    /// and takes its claim back at once: what it still sends is refused.
    fn stop_hard(&mut self, id: TaskId, run: RunToken, grace: Duration) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        if live.record.run != Some(run) {
            return;
        }
        let Some(execution) = live.execution.as_mut() else {
            return;
        };
        if execution.stopped_hard {
            return;
        }
        execution.stopped_hard = true;
        let why = execution.stop.map_or("cancel", Stop::label);
        self.runs.release(id, run);
        execution.abort.cancel();
        self.metrics
            .hard_stops
            .with_label_values(&[&live.record.kind, why])
            .inc();
        tracing::warn!(task = id.0, run = run.0, kind = %live.record.kind, reason = why,
            grace_s = grace.as_secs_f64(), "execution did not stop within its grace period; stopping it hard");
    }

    /// Stops execution `run` of `id` for running past `limit`.
    pub(super) fn time_out(
        &mut self,
        id: TaskId,
        run: RunToken,
        limit: Duration,
        ctx: &mut Context<Self>,
    ) {
        let Some(live) = self.live.get(&id) else {
            return;
        };
        if live.record.run != Some(run) || live.execution.is_none() {
            return;
        }
        tracing::warn!(task = id.0, run = run.0, kind = %live.record.kind,
            timeout_s = limit.as_secs_f64(), "execution timed out; stopping it");
        let grace = self.pools[&live.record.pool].cancel_grace;
        self.stop_execution(id, Stop::Timeout(limit), grace, ctx);
    }
}

impl Handler<Cancel> for Supervisor {
    type Result = ResponseFuture<Result<CancelReply, CancelError>>;

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) -> Self::Result {
        let id = msg.id;
        if let Some(durable) = self.cancel_pending(id) {
            self.flush(ctx);
            return Box::pin(async move {
                durable
                    .await
                    .unwrap_or(Err(StoreError::Closed))
                    .map_err(CancelError::Store)?;
                Ok(CancelReply {
                    id,
                    state: TaskState::Canceled,
                    canceled_follow_ups: Vec::new(),
                    grace_s: None,
                })
            });
        }
        if let Some(live) = self.live.get_mut(&id).filter(|l| l.execution.is_some()) {
            let mut changes = Vec::new();
            if live.record.state == TaskState::Running {
                // Canceling until the run has really ended (see `finish`).
                live.record.state = TaskState::Canceling;
                changes.push(Change::Put(Arc::new(live.record.clone())));
                tracing::info!(task = id.0, "running task signaled to cancel");
            }
            let grace = msg
                .grace
                .unwrap_or(self.pools[&live.record.pool].cancel_grace);
            self.stop_execution(id, Stop::Cancel, grace, ctx);
            let follow_up = self.queue.follow_up_of(id);
            let follow_up_durable = follow_up.and_then(|f| self.cancel_pending(f));
            let durable = self.journal_durable(changes);
            self.flush(ctx);
            return Box::pin(async move {
                for d in std::iter::once(durable).chain(follow_up_durable) {
                    d.await
                        .unwrap_or(Err(StoreError::Closed))
                        .map_err(CancelError::Store)?;
                }
                Ok(CancelReply {
                    id,
                    state: TaskState::Canceling,
                    canceled_follow_ups: follow_up.into_iter().collect(),
                    grace_s: Some(grace.as_secs_f64()),
                })
            });
        }
        // Not running here: on a cluster it may be queued or run elsewhere;
        // otherwise (or if the cluster does not know it) it has ended or
        // never was. The store is asked only then.
        let shared = self.cancel_shared(id);
        // Another node stops it at its next heartbeat, then after its
        // pool's grace period: the longest the stop may take.
        let heartbeat = self
            .cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.queue.lease() / 3);
        let grace_of: std::collections::HashMap<String, f64> = self
            .pools
            .iter()
            .map(|(name, p)| (name.clone(), (heartbeat + p.cancel_grace).as_secs_f64()))
            .collect();
        let heartbeat_s = heartbeat.as_secs_f64();
        let store = std::sync::Arc::clone(&self.store);
        Box::pin(async move {
            if let Some(shared) = shared {
                let (state, grace_s) = match shared.await.map_err(CancelError::Store)? {
                    SharedCancel::Canceled => (Some(TaskState::Canceled), None),
                    SharedCancel::Signaled { pool } => {
                        let grace = grace_of.get(&pool).copied().unwrap_or(heartbeat_s);
                        (Some(TaskState::Canceling), Some(grace))
                    }
                    SharedCancel::Unknown => (None, None),
                };
                if let Some(state) = state {
                    return Ok(CancelReply {
                        id,
                        state,
                        canceled_follow_ups: Vec::new(),
                        grace_s,
                    });
                }
            }
            match store.get(id).await.map_err(CancelError::Store)? {
                Some(r) => Err(CancelError::AlreadyEnded { id, state: r.state }),
                None => Err(CancelError::NotFound(id)),
            }
        })
    }
}

impl Handler<AwaitRunEnd> for Supervisor {
    type Result = ResponseFuture<Option<TaskState>>;

    fn handle(&mut self, AwaitRunEnd(id): AwaitRunEnd, _ctx: &mut Self::Context) -> Self::Result {
        let Some(execution) = self.live.get_mut(&id).and_then(|l| l.execution.as_mut()) else {
            return Box::pin(std::future::ready(None));
        };
        let (tx, rx) = oneshot::channel();
        execution.waiters.push(tx);
        Box::pin(async move { rx.await.ok() })
    }
}
