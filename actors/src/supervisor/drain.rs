//! Graceful shutdown: [`Drain`] stops admission, lets running executions
//! finish up to a deadline, then cancels the rest so that they are queued
//! again for the next start, stopping hard those that do not stop within
//! the grace period. Nothing accepted is lost: queued tasks stay queued in
//! the store, and an execution that still did not end (its future blocks its
//! thread) stays `running` there, which the next start's recovery turns back
//! into queued.

use std::time::Duration;

use actix::{AsyncContext, Context, Handler, Message, ResponseFuture};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::spec::{TaskId, TaskState};
use crate::store::StoreError;

use super::{Stop, Supervisor};

/// How long after the grace period a drain waits for executions stopped
/// hard to report their end before it counts them abandoned.
const ABANDON_AFTER: Duration = Duration::from_secs(1);

/// Stops admitting, waits up to `timeout` for running executions, then
/// signals the rest to cancel and stops them hard after `grace` more.
///
/// Submits are refused with `ShuttingDown` from then on. Answered when no
/// execution is running, or when the grace period is over, and only once
/// every change recorded until then is durable in the store.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "DrainReport")]
pub struct Drain {
    /// How long running executions may take to finish on their own.
    pub timeout: Duration,
    /// How long canceled executions get to reach a checkpoint.
    pub grace: Duration,
}

/// How a [`Drain`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Executions that ended on their own while draining.
    pub completed: usize,
    /// Executions canceled at the deadline and queued again for next start.
    pub requeued: usize,
    /// Executions still running when the grace period ended; the next
    /// start's recovery queues them again.
    pub abandoned: usize,
}

#[derive(Debug, Default)]
pub(super) struct DrainState {
    waiting: Vec<oneshot::Sender<DrainReport>>,
    report: DrainReport,
}

impl DrainState {
    pub(super) fn count_completed(&mut self) {
        self.report.completed += 1;
    }
}

impl Supervisor {
    fn running_count(&self) -> usize {
        self.live.values().filter(|l| l.execution.is_some()).count()
    }

    /// Called after every execution end while draining: counts it and
    /// answers the drain once nothing runs.
    pub(super) fn drain_progress(&mut self, _ctx: &mut Context<Self>) {
        // Counting scans every live task: only while draining.
        if self.drain.is_none() {
            return;
        }
        let running = self.running_count();
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        if running == 0 {
            drain.report.abandoned = 0;
            let report = drain.report;
            for w in drain.waiting.drain(..) {
                let _ = w.send(report);
            }
        }
    }

    /// Puts a task canceled for shutdown back to `queued` in the store,
    /// without counting the interrupted attempt against its kind's limit.
    /// The follow-up waiting behind it is merged into it, as restart
    /// recovery would: one queued task per key, serving both.
    pub(super) fn requeue_for_restart(&mut self, id: TaskId) {
        let record = &mut self
            .live
            .get_mut(&id)
            .expect("requeued task is live")
            .record;
        record.state = TaskState::Queued;
        record.attempts = record.attempts.saturating_sub(1);
        record.stage = None;
        record.progress = None;
        record.started_at = None;
        tracing::info!(task = id.0, kind = %record.kind, target = %record.target, "queued again for the next start");
        // Back in the queue, never released: nothing is admitted while
        // draining.
        self.requeue(id);
        if let Some(d) = self.drain.as_mut() {
            d.report.requeued += 1;
        }
    }

    fn cancel_for_shutdown(&mut self, grace: Duration, ctx: &mut Context<Self>) {
        let running: Vec<TaskId> = self
            .live
            .iter()
            .filter(|(_, l)| l.execution.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in running {
            tracing::info!(task = id.0, "canceling for shutdown");
            // An operator's cancel stands: that task ends canceled.
            self.stop_execution(id, Stop::Shutdown, grace, ctx);
        }
    }
}

/// Waits until every change journaled so far is durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
struct Flush;

impl Handler<Flush> for Supervisor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _msg: Flush, ctx: &mut Self::Context) -> Self::Result {
        let durable = self.journal_durable(Vec::new());
        self.flush(ctx);
        Box::pin(async move { durable.await.unwrap_or(Err(StoreError::Closed)) })
    }
}

impl Handler<Drain> for Supervisor {
    type Result = ResponseFuture<DrainReport>;

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        let running = self.running_count();
        tracing::info!(running, timeout_s = msg.timeout.as_secs_f64(), "draining");
        let (tx, rx) = oneshot::channel();
        let first = self.drain.is_none();
        self.drain
            .get_or_insert_with(DrainState::default)
            .waiting
            .push(tx);
        if first {
            let grace = msg.grace;
            ctx.run_later(msg.timeout, move |act, ctx| {
                act.cancel_for_shutdown(grace, ctx)
            });
            // Executions stopped hard at the end of the grace report their
            // end at once; one that blocks its thread is abandoned.
            ctx.run_later(msg.timeout + msg.grace + ABANDON_AFTER, |act, _| {
                let abandoned = act.running_count();
                if let Some(d) = act.drain.as_mut() {
                    d.report.abandoned = abandoned;
                    let report = d.report;
                    for w in d.waiting.drain(..) {
                        let _ = w.send(report);
                    }
                }
            });
        }
        self.drain_progress(ctx);
        let addr = ctx.address();
        Box::pin(async move {
            let report = rx.await.unwrap_or_default();
            // Executions' ends are journaled without waiting; an empty
            // journaled write is durable once everything before it is, so
            // the caller may exit as soon as it has the report.
            match addr.send(Flush).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "task store failed while draining"),
                Err(_) => tracing::error!("supervisor stopped while draining"),
            }
            report
        })
    }
}
