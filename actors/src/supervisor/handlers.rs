//! The supervisor's actor lifecycle and one handler per message; each
//! handler delegates to a method of [`Supervisor`].

use actix::{Actor, Context, Handler, ResponseFuture};

use crate::message::{
    Cancel, CancelError, CancelReply, Finished, LimitError, PanelSnapshot, Report, SetLimit,
    StoreHealth, Submit, SubmitError, SubmitReply, MAX_WORKER_LIMIT,
};
use crate::panel::StoreStatus;
use crate::spec::TaskState;
use crate::store::{Change, StoreError};
use crate::time::Timestamp;

use super::Supervisor;

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let now = Timestamp::now();
        for (id, at) in std::mem::take(&mut self.delayed_at_start) {
            self.schedule_release(id, at.since(now), ctx);
        }
        self.admit(ctx);
        self.flush(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.flush_on_stop();
        for worker in &self.workers {
            worker.stop();
        }
    }
}

impl Handler<Submit> for Supervisor {
    type Result = ResponseFuture<Result<SubmitReply, SubmitError>>;

    fn handle(&mut self, Submit(spec): Submit, ctx: &mut Self::Context) -> Self::Result {
        let (answer, answered) = tokio::sync::oneshot::channel();
        if let Err(e) = self.submit(spec, answer) {
            return Box::pin(std::future::ready(Err(e)));
        }
        self.flush(ctx);
        Box::pin(async move { answered.await.unwrap_or(Err(SubmitError::ShuttingDown)) })
    }
}

impl Handler<Cancel> for Supervisor {
    type Result = ResponseFuture<Result<CancelReply, CancelError>>;

    fn handle(&mut self, Cancel(id): Cancel, ctx: &mut Self::Context) -> Self::Result {
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
                })
            });
        }
        if let Some(live) = self.live.get_mut(&id).filter(|l| l.execution.is_some()) {
            let execution = live.execution.as_ref().expect("filtered on an execution");
            execution.cancel.cancel();
            let mut changes = Vec::new();
            if live.record.state == TaskState::Running {
                // Canceling until the run has really ended (see `finish`).
                live.record.state = TaskState::Canceling;
                changes.push(Change::Put(Box::new(live.record.clone())));
                tracing::info!(task = id.0, "running task signaled to cancel");
            }
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

impl Handler<StoreHealth> for Supervisor {
    type Result = actix::MessageResult<StoreHealth>;

    fn handle(&mut self, _msg: StoreHealth, _ctx: &mut Self::Context) -> Self::Result {
        let status: StoreStatus = self.journal.status();
        actix::MessageResult(status)
    }
}

impl Handler<Report> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Report, ctx: &mut Self::Context) {
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
        let report = Change::Report {
            id: msg.id,
            run: msg.run,
            stage: live.record.stage.clone(),
            progress: live.record.progress,
        };
        self.journal(vec![report]);
        self.flush(ctx);
    }
}

impl Handler<Finished> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.finish(msg, ctx);
        self.flush(ctx);
    }
}
