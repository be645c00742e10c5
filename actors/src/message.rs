//! Every message the supervisor handles, and their replies and errors.

use actix::Message;
use serde::{Deserialize, Serialize};

use crate::kind::TaskResult;
use crate::panel::{Panel, StoreStatus};
use crate::spec::{RunToken, TaskId, TaskSpec, TaskState};
use crate::store::{Progress, StoreError};

/// Requests work. Answered once the request is durable in the store.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<SubmitReply, SubmitError>")]
pub struct Submit(pub TaskSpec);

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

/// Cancels a task: a pending one at once, a running one cooperatively.
/// Canceling a running task also cancels the follow-up waiting behind it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<CancelReply, CancelError>")]
pub struct Cancel(pub TaskId);

/// What a [`Cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelReply {
    /// The task.
    pub id: TaskId,
    /// `canceled` for a pending task, `canceling` for a running one that
    /// was signaled: it becomes `canceled` once its run has ended.
    pub state: TaskState,
    /// Follow-ups canceled with it.
    pub canceled_follow_ups: Vec<TaskId>,
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
