//! The operator panel: one serializable snapshot of what the runtime is
//! doing right now, answered by the supervisor's [`PanelSnapshot`] message.
//!
//! [`PanelSnapshot`]: crate::PanelSnapshot

use serde::{Deserialize, Serialize};

use crate::entity::Target;
use crate::spec::{Priority, TaskId, TaskState, Trigger};
use crate::store::{Progress, TaskRecord};
use crate::time::Timestamp;

/// Whether any work is under way or waiting.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Tasks are running or waiting to run, or changes of ended tasks are
    /// not in the store yet.
    Active,
    /// Nothing is running or waiting, and the store has every change: a
    /// task that ended is found in the store with its end.
    Idle,
}

/// Workers in use against the limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Workers {
    /// Executions running.
    pub active: usize,
    /// Most executions allowed at once.
    pub limit: usize,
}

/// One worker pool.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Executions running in it.
    pub active: usize,
    /// Its worker limit.
    pub limit: usize,
    /// Its cluster-wide limit, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_limit: Option<usize>,
    /// Tasks waiting in it.
    pub pending: usize,
}

/// One task as the panel shows it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct PanelTask {
    /// Task id.
    pub id: TaskId,
    /// Human-readable name: kind and target.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Entity or `all`.
    pub target: Target,
    /// Trigger of the first request.
    pub trigger: Trigger,
    /// Every distinct trigger merged in.
    pub triggers: Vec<Trigger>,
    /// `queued` or `running`.
    pub state: TaskState,
    /// Pool it runs in.
    pub pool: String,
    /// Queue priority.
    pub priority: Priority,
    /// Current stage of a running task.
    pub stage: Option<String>,
    /// When the current execution started.
    pub started_at: Option<Timestamp>,
    /// When the first request arrived.
    pub created_at: Timestamp,
    /// Progress, when the task reports a known total.
    pub progress: Option<Progress>,
    /// The running task a follow-up waits behind.
    pub waiting_behind: Option<TaskId>,
    /// Requests merged into this task beyond the first.
    pub merged: u64,
    /// Executions started so far.
    pub attempts: u32,
    /// Not started before this time (retry backoff).
    pub run_after: Option<Timestamp>,
}

impl PanelTask {
    pub(crate) fn from_record(r: &TaskRecord) -> Self {
        Self {
            id: r.id,
            name: format!("{} {}", r.kind, r.target),
            kind: r.kind.clone(),
            target: r.target.clone(),
            trigger: r.trigger.clone(),
            triggers: r.triggers.clone(),
            state: r.state,
            pool: r.pool.clone(),
            priority: r.priority,
            stage: r.stage.clone(),
            started_at: r.started_at,
            created_at: r.created_at,
            progress: r.progress.filter(|p| p.total > 0),
            waiting_behind: r.waiting_behind,
            merged: r.merged,
            attempts: r.attempts,
            run_after: r.run_after,
        }
    }
}

/// What an operator panel needs, in one answer.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Panel {
    /// `active` while anything runs or waits.
    pub state: Activity,
    /// All pools together.
    pub workers: Workers,
    /// Each pool, by name.
    pub pools: Vec<PoolStatus>,
    /// Running tasks, oldest execution first.
    pub running: Vec<PanelTask>,
    /// Pending tasks in queue order (at most the requested number).
    pub pending: Vec<PanelTask>,
    /// How many tasks are pending in all.
    pub pending_total: usize,
    /// Whether the task store takes the supervisor's writes.
    pub store: StoreStatus,
    /// The cluster's nodes with their heartbeats, when the queue is shared
    /// (see [`SharedQueue`](crate::SharedQueue)); empty on one node.
    #[serde(default)]
    pub nodes: Vec<crate::shared::NodeStatus>,
}

/// Whether the task store takes writes, as the supervisor last saw it.
///
/// While it does not, the supervisor admits nothing, refuses requests, and
/// writes its pending changes again with backoff until the store takes
/// them; then it carries on by itself.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct StoreStatus {
    /// `true` unless the last write failed.
    pub ok: bool,
    /// Why the last write failed.
    pub error: Option<String>,
    /// When writes began to fail.
    pub failing_since: Option<Timestamp>,
    /// Changes waiting to be written.
    pub unwritten: usize,
    /// Task ends (succeeded, failed, canceled, merged) the store has
    /// recorded since the supervisor started. The history in the store
    /// changes when this does, so a client showing it knows when to fetch
    /// it again: a task leaves [`Panel::running`] before its end is durable.
    pub recorded_ends: u64,
}
