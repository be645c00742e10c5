//! Every message the supervisor handles, and their replies and errors.

use std::time::Duration;

use actix::Message;
use serde::{Deserialize, Serialize};

use crate::entity::{EntityName, Target};
use crate::kind::TaskResult;
use crate::panel::{Panel, StoreStatus};
use crate::spec::{RunToken, TaskId, TaskSpec, TaskState, Trigger};
use crate::stats::{Stats, StatsWindow};
use crate::store::{Progress, StoreError};

/// Requests work. Answered once the request is durable in the store.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<SubmitReply, SubmitError>")]
pub struct Submit(pub TaskSpec);

/// Rebuilds are one task per entity up to this many entities, and one full
/// rebuild (`all`) beyond: past it, one pass over everything is cheaper.
pub const FULL_REBUILD_ABOVE: usize = 1000;

/// Asks for a rebuild with `kind`: of everything, or of the named entities,
/// as one [`SubmitMany`]. The rules an operator's rebuild follows live here,
/// so that an embedding daemon sends this message rather than rebuilding
/// them: more than [`FULL_REBUILD_ABOVE`] entities become one `all`, and
/// requests carry the trigger given (`operator` from [`Rebuild::new`]), whose
/// priority they get. Answered per target, in order.
///
/// ```
/// use groundcrew_actors::{Rebuild, Target, Trigger};
///
/// let entities = (0..2000).map(|i| format!("asn:{i}").parse().unwrap());
/// let rebuild = Rebuild::new("refresh", entities.collect());
/// assert_eq!(rebuild.targets(), vec![Target::All]);
/// assert_eq!(rebuild.trigger, Trigger::Operator);
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<(Target, Result<SubmitReply, SubmitError>)>")]
pub struct Rebuild {
    /// The kind that rebuilds.
    pub kind: String,
    /// The entities; empty: everything.
    pub entities: Vec<EntityName>,
    /// Parameters for every task.
    pub params: serde_json::Value,
    /// Why.
    pub trigger: Trigger,
}

impl Rebuild {
    /// An operator's rebuild of `entities` (empty: everything).
    pub fn new(kind: impl Into<String>, entities: Vec<EntityName>) -> Self {
        Self {
            kind: kind.into(),
            entities,
            params: serde_json::Value::Null,
            trigger: Trigger::Operator,
        }
    }

    /// The targets it submits.
    pub fn targets(&self) -> Vec<Target> {
        if self.entities.is_empty() || self.entities.len() > FULL_REBUILD_ABOVE {
            vec![Target::All]
        } else {
            self.entities.iter().cloned().map(Target::Entity).collect()
        }
    }

    /// The requests it makes, one per target.
    pub(crate) fn specs(&self) -> Vec<(Target, TaskSpec)> {
        self.targets()
            .into_iter()
            .map(|target| {
                let spec = TaskSpec::new(self.kind.clone(), target.clone(), self.trigger.clone())
                    .with_params(self.params.clone());
                (target, spec)
            })
            .collect()
    }
}

/// Submits many tasks as one mailbox message and one durable batch:
/// answered per task, in order, once the batch is durable. Each request is
/// coalesced as a [`Submit`] of it would be (a later one may merge into an
/// earlier one of the same batch). A store write that fails refuses every
/// request of the batch; nothing of it was accepted.
///
/// ```
/// use groundcrew_actors::{SubmitMany, TaskSpec, Trigger};
///
/// let specs = ["asn:1", "asn:2"]
///     .map(|t| TaskSpec::new("refresh", t.parse().unwrap(), Trigger::Operator));
/// let batch = SubmitMany(specs.to_vec());
/// assert_eq!(batch.0.len(), 2);
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Result<SubmitReply, SubmitError>>")]
pub struct SubmitMany(pub Vec<TaskSpec>);

/// What a [`Submit`] turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SubmitOutcome {
    /// A new task was queued.
    Queued,
    /// Merged into an existing pending task: queued, follow-up or in retry
    /// backoff (never a running one).
    Merged,
    /// A new task waits behind the running task with the same key.
    FollowUp {
        /// The running task.
        behind: TaskId,
    },
}

/// The answer to a [`Submit`]: the task that will serve the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitReply {
    /// The new task, or the existing task it was merged into.
    pub id: TaskId,
    /// What happened.
    #[serde(flatten)]
    pub outcome: SubmitOutcome,
}

/// A [`Submit`] that was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// No kind of that name is registered.
    #[error("unknown task kind {0:?}")]
    UnknownKind(String),
    /// The kind refused the parameters.
    #[error("invalid params for kind {kind:?}: {message}")]
    InvalidParams {
        /// Kind.
        kind: String,
        /// The kind's reason.
        message: String,
    },
    /// The supervisor is draining for shutdown.
    #[error("not accepting tasks: shutting down")]
    ShuttingDown,
    /// The request could not be made durable, or the store is failing and
    /// requests are refused until it writes again; nothing was accepted.
    #[error("could not store task request")]
    Store(#[source] StoreError),
}

/// How long a canceled execution gets to stop on its own before it is
/// stopped hard, unless its pool or the cancel says otherwise.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Cancels a task: a pending one at once, a running one cooperatively, then
/// hard once the grace period is over. Canceling a running task also
/// cancels the follow-up waiting behind it.
///
/// A running task's execution is signaled at once ([`TaskContext::canceled`]
/// completes); when it has not ended after the grace period (its pool's
/// `cancel_grace`, or [`Cancel::with_grace`]), its future is dropped, which
/// for an external command kills its process group. Canceling again with a
/// shorter grace stops it sooner.
///
/// ```
/// use std::time::Duration;
/// use groundcrew_actors::{Cancel, TaskId};
///
/// let cancel = Cancel::new(TaskId(7)).with_grace(Duration::from_secs(1));
/// assert_eq!(cancel.grace, Some(Duration::from_secs(1)));
/// ```
///
/// [`TaskContext::canceled`]: crate::TaskContext::canceled
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<CancelReply, CancelError>")]
pub struct Cancel {
    /// The task.
    pub id: TaskId,
    /// Overrides the pool's grace period.
    pub grace: Option<Duration>,
}

impl Cancel {
    /// Cancels `id` with its pool's grace period.
    pub fn new(id: TaskId) -> Self {
        Self { id, grace: None }
    }

    /// Stops a running execution hard after `grace` instead.
    pub fn with_grace(self, grace: Duration) -> Self {
        Self {
            grace: Some(grace),
            ..self
        }
    }
}

/// Resolves once the task's current execution has ended and its outcome is
/// durable, with the state it left the task in (`canceled`, `failed`,
/// `succeeded`, or `queued` again for a retry or the next start); `None` at
/// once when the task has no execution running.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<TaskState>")]
pub struct AwaitRunEnd(pub TaskId);

/// What a [`Cancel`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelReply {
    /// The task.
    pub id: TaskId,
    /// `canceled` for a pending task, `canceling` for a running one that
    /// was signaled: it becomes `canceled` once its run has ended.
    pub state: TaskState,
    /// Follow-ups canceled with it.
    pub canceled_follow_ups: Vec<TaskId>,
    /// For a running task: seconds until it is stopped hard if it has not
    /// stopped by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<f64>,
}

/// A [`Cancel`] that could not be done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CancelError {
    /// No task with that id.
    #[error("no task with id {0}")]
    NotFound(TaskId),
    /// The task already ended.
    #[error("task {id} already ended as {state}")]
    AlreadyEnded {
        /// Task.
        id: TaskId,
        /// Its terminal state.
        state: TaskState,
    },
    /// The cancellation could not be made durable.
    #[error("could not store cancellation")]
    Store(#[source] StoreError),
}

/// Changes a pool's worker limit. Raising it admits waiting work at once;
/// lowering it never stops a running task, it only stops admitting.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), LimitError>")]
pub struct SetLimit {
    /// Pool name.
    pub pool: String,
    /// New limit; 0 pauses the pool.
    pub limit: usize,
}

/// Changes a pool's cluster-wide limit (see
/// [`SupervisorBuilder::cluster_limit`](crate::SupervisorBuilder::cluster_limit));
/// `None` removes it. Applies to claims from then on.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), LimitError>")]
pub struct SetClusterLimit {
    /// The pool.
    pub pool: String,
    /// Most tasks of the pool running at once on all nodes.
    pub limit: Option<usize>,
}

/// Changes a pool's cancel grace period: how long a canceled or timed-out
/// execution gets to stop on its own before it is stopped hard. Applies to
/// stops from then on.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), LimitError>")]
pub struct SetCancelGrace {
    /// The pool.
    pub pool: String,
    /// The new grace period.
    pub grace: Duration,
}

/// Largest worker limit accepted.
pub const MAX_WORKER_LIMIT: usize = 4096;

/// A [`SetLimit`] that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// No pool of that name.
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    /// Over [`MAX_WORKER_LIMIT`].
    #[error("worker limit {0} is too large (at most {MAX_WORKER_LIMIT})")]
    TooLarge(usize),
}

/// Asks for the panel. `pending_limit` caps the pending list (the total
/// is always reported).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Panel")]
pub struct PanelSnapshot {
    /// Most pending tasks listed.
    pub pending_limit: usize,
}

impl Default for PanelSnapshot {
    fn default() -> Self {
        Self {
            pending_limit: 1000,
        }
    }
}

/// Asks for the recent task history of a window → [`Stats`], from the
/// recorder of the supervisor's [`Metrics`](crate::Metrics).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Stats")]
pub struct StatsSnapshot {
    /// The last hour or the last day.
    pub window: StatsWindow,
}

/// Asks whether the task store takes the supervisor's writes: the
/// [`Panel::store`] part alone, cheap enough for every health check.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "StoreStatus")]
pub struct StoreHealth;

/// Stage and progress from a running execution.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct Report {
    pub(crate) id: TaskId,
    pub(crate) run: RunToken,
    pub(crate) stage: Option<String>,
    pub(crate) progress: Option<Progress>,
}

/// An execution ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Finished {
    pub(crate) id: TaskId,
    pub(crate) run: RunToken,
    pub(crate) result: TaskResult,
}
