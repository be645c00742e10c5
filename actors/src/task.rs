//! The task actor: one per execution, on a worker arbiter. It runs the
//! kind's future, turns a panic into a failure, drops the future when the
//! supervisor stops it hard, tells the supervisor how the execution ended,
//! and stops.
//!
//! Stage and progress go from the task's [`TaskContext`] to the supervisor;
//! the actor itself is stopped through its cancellation tokens. The
//! supervisor hands a worker all executions it admits at once in one spawn
//! that starts their actors, so one wake of the worker thread starts them
//! all.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, WrapFuture};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::TaskContext;
use crate::kind::{Task, TaskError};
use crate::message::Finished;
use crate::supervisor::Supervisor;

/// The actor of one execution: it runs [`execution`]'s future and stops
/// when that has reported the end.
pub(crate) struct TaskActor {
    execution: Option<BoxFuture<'static, ()>>,
}

impl TaskActor {
    /// Starts the actor of `execution` on the current arbiter.
    pub(crate) fn start(execution: BoxFuture<'static, ()>) {
        Actor::start(TaskActor {
            execution: Some(execution),
        });
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let execution = self.execution.take().expect("a task actor starts once");
        ctx.spawn(execution.into_actor(self).map(|(), _, ctx| ctx.stop()));
    }
}

/// Runs one execution of a task and reports its end to `supervisor`.
///
/// # Failure
/// A panic in the kind's `run` or in its future is caught here and reported
/// as a failure carrying the panic message; the worker thread, the supervisor
/// and other tasks are unaffected.
pub(crate) fn execution(
    task: Arc<dyn Task>,
    context: TaskContext,
    abort: CancellationToken,
    supervisor: Addr<Supervisor>,
    span: tracing::Span,
) -> impl Future<Output = ()> + 'static {
    let (id, run) = (context.id(), context.run());
    async move {
        // `run` itself may panic before it hands back a future.
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| task.run(context))) {
            Err(payload) => Err(panic_failure(payload)),
            Ok(future) => {
                let run = AssertUnwindSafe(future).catch_unwind();
                // `select!` drops the execution's future before it yields,
                // so the run has ended (its processes killed) when the
                // supervisor hears of it.
                tokio::select! {
                    biased;
                    () = abort.cancelled() => Err(TaskError::fatal("stopped hard")),
                    r = run => r.unwrap_or_else(|payload| Err(panic_failure(payload))),
                }
            }
        };
        supervisor.do_send(Finished { id, run, result });
    }
    .instrument(span)
}

fn panic_failure(payload: Box<dyn Any + Send>) -> TaskError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    TaskError::fatal(format!("task panicked: {message}"))
}
