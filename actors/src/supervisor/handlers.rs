//! The supervisor's actor lifecycle and one handler per message; each
//! handler delegates to a method of [`Supervisor`].

use actix::{Actor, Context, Handler, ResponseFuture};

use crate::entity::Target;
use crate::spec::TaskSpec;

use crate::message::{
    Finished, LimitError, PanelSnapshot, Rebuild, Report, SetCancelGrace, SetClusterLimit,
    SetLimit, StatsSnapshot, StoreHealth, Submit, SubmitError, SubmitMany, SubmitReply,
    MAX_WORKER_LIMIT,
};
use crate::panel::StoreStatus;
use crate::store::Change;
use crate::time::Timestamp;

use super::Supervisor;

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let now = Timestamp::now();
        for (id, at) in std::mem::take(&mut self.delayed_at_start) {
            self.schedule_release(id, at.since(now), ctx);
        }
        self.start_cluster(ctx);
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

impl Handler<StatsSnapshot> for Supervisor {
    type Result = actix::MessageResult<StatsSnapshot>;

    fn handle(&mut self, msg: StatsSnapshot, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.metrics.stats.snapshot(msg.window, Timestamp::now()))
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

impl Handler<SubmitMany> for Supervisor {
    type Result = ResponseFuture<Vec<Result<SubmitReply, SubmitError>>>;

    fn handle(&mut self, SubmitMany(specs): SubmitMany, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.submit_many(specs, ctx))
    }
}

impl Handler<Rebuild> for Supervisor {
    type Result = ResponseFuture<Vec<(Target, Result<SubmitReply, SubmitError>)>>;

    fn handle(&mut self, msg: Rebuild, ctx: &mut Self::Context) -> Self::Result {
        let (targets, specs): (Vec<_>, Vec<_>) = msg.specs().into_iter().unzip();
        tracing::info!(kind = %msg.kind, entities = msg.entities.len(), tasks = targets.len(),
            trigger = %msg.trigger, "rebuild requested");
        let replies = self.submit_many(specs, ctx);
        Box::pin(async move { targets.into_iter().zip(replies.await).collect() })
    }
}

impl Supervisor {
    /// Applies every request and flushes once, so that they share one
    /// store write; resolves with the answers in order.
    fn submit_many(
        &mut self,
        specs: Vec<TaskSpec>,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = Vec<Result<SubmitReply, SubmitError>>> + 'static {
        let answers: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let (answer, answered) = tokio::sync::oneshot::channel();
                self.submit(spec, answer).map(|()| answered)
            })
            .collect();
        self.flush(ctx);
        async move {
            let mut replies = Vec::with_capacity(answers.len());
            for a in answers {
                replies.push(match a {
                    Ok(answered) => answered.await.unwrap_or(Err(SubmitError::ShuttingDown)),
                    Err(e) => Err(e),
                });
            }
            replies
        }
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

impl Handler<SetClusterLimit> for Supervisor {
    type Result = Result<(), LimitError>;

    fn handle(&mut self, msg: SetClusterLimit, ctx: &mut Self::Context) -> Self::Result {
        let pool = self
            .pools
            .get_mut(&msg.pool)
            .ok_or_else(|| LimitError::UnknownPool(msg.pool.clone()))?;
        if pool.cluster_limit != msg.limit {
            tracing::info!(pool = %msg.pool, from = ?pool.cluster_limit, to = ?msg.limit,
                "cluster limit changed");
            pool.cluster_limit = msg.limit;
            self.admit(ctx);
        }
        Ok(())
    }
}

impl Handler<SetCancelGrace> for Supervisor {
    type Result = Result<(), LimitError>;

    fn handle(&mut self, msg: SetCancelGrace, _ctx: &mut Self::Context) -> Self::Result {
        let pool = self
            .pools
            .get_mut(&msg.pool)
            .ok_or_else(|| LimitError::UnknownPool(msg.pool.clone()))?;
        if pool.cancel_grace != msg.grace {
            tracing::info!(pool = %msg.pool, from_s = pool.cancel_grace.as_secs_f64(),
                to_s = msg.grace.as_secs_f64(), "cancel grace changed");
            pool.cancel_grace = msg.grace;
        }
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
        // Only the execution that holds the task's claim reports: not an
        // earlier one, not one stopped hard.
        if live.execution.is_none() || self.runs.check(msg.id, msg.run).is_err() {
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
