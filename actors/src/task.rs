//! The task actor: one per execution. It runs the kind's future on a worker
//! thread, turns a panic into a failure, drops the future when the
//! supervisor stops it hard, and tells the supervisor how the execution
//! ended.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, WrapFuture};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::TaskContext;
use crate::kind::{Task, TaskError, TaskResult};
use crate::message::Finished;
use crate::supervisor::Supervisor;

/// Runs one execution of a task and reports its end.
///
/// # Failure
/// A panic in the kind's `run` or in its future is caught here and reported
/// as a failure carrying the panic message; the worker thread, the supervisor
/// and other tasks are unaffected. The actor stops after reporting.
pub(crate) struct TaskActor {
    task: Arc<dyn Task>,
    context: Option<TaskContext>,
    /// Once canceled, the execution's future is dropped (a hard stop).
    abort: CancellationToken,
    supervisor: Addr<Supervisor>,
    span: tracing::Span,
}

impl TaskActor {
    pub(crate) fn new(
        task: Arc<dyn Task>,
        context: TaskContext,
        abort: CancellationToken,
        supervisor: Addr<Supervisor>,
        span: tracing::Span,
    ) -> Self {
        Self {
            task,
            context: Some(context),
            abort,
            supervisor,
            span,
        }
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let context = self.context.take().expect("task actor starts once");
        let (id, run) = (context.id(), context.run());
        let task = Arc::clone(&self.task);
        let abort = self.abort.clone();
        let execution = async move {
            // `run` itself may panic before it hands back a future.
            let future = std::panic::catch_unwind(AssertUnwindSafe(|| task.run(context)))
                .map_err(panic_failure)?;
            let run = AssertUnwindSafe(future).catch_unwind();
            // `select!` drops the execution's future before it yields, so
            // the run has ended (its processes killed) when the supervisor
            // hears of it.
            tokio::select! {
                biased;
                () = abort.cancelled() => Err(TaskError::fatal("stopped hard")),
                r = run => r.unwrap_or_else(|payload| Err(panic_failure(payload))),
            }
        }
        .instrument(self.span.clone());
        ctx.spawn(
            execution
                .into_actor(self)
                .map(move |result: TaskResult, act, ctx| {
                    act.supervisor.do_send(Finished { id, run, result });
                    ctx.stop();
                }),
        );
    }
}

fn panic_failure(payload: Box<dyn Any + Send>) -> TaskError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    TaskError::fatal(format!("task panicked: {message}"))
}
