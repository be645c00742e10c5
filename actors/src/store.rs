//! The storage contract: what the supervisor and the entity writer ask of a
//! durable store, and the records they keep in it.
//!
//! The runtime owns the live state (queue, running tasks, coalescing) in
//! memory and journals every change to a [`TaskStore`]. A store applies
//! changes in the order they were handed over and says when they are
//! durable; the runtime acknowledges a request only then. A store is free to
//! batch: several `write` calls may share one transaction and one sync.
//!
//! The crate ships [`MemoryStore`](crate::MemoryStore) for embedders that
//! want no durability; the daemon implements the same traits on SQLite.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::entity::{EntityName, Target};
use crate::spec::{Priority, RunToken, TaskId, TaskState, Trigger};
use crate::time::Timestamp;

/// A future that resolves once the changes it stands for are durable.
pub type Durable = BoxFuture<'static, Result<(), StoreError>>;

/// A store operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, database error); the message names the cause.
    #[error("task store failed: {0}")]
    Backend(String),
    /// The store was closed, e.g. during shutdown.
    #[error("task store is closed")]
    Closed,
    /// A change conflicts with what is stored (e.g. a second running task
    /// for one coalescing key).
    #[error("task store refused a change: {0}")]
    Conflict(String),
}

/// How far a task's current execution has come.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// Units finished.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// The error of one failed attempt, kept in the task's history.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt it ended (1-based).
    pub attempt: u32,
    /// When it ended.
    pub at: Timestamp,
    /// What went wrong.
    pub message: String,
}

/// Everything known about one task: the request, its coalescing, and its
/// executions. This is the row a store keeps and the object the API shows.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task id.
    pub id: TaskId,
    /// Registered kind.
    pub kind: String,
    /// Entity or `all`.
    pub target: Target,
    /// The trigger of the first request.
    pub trigger: Trigger,
    /// Every distinct trigger among the requests merged into this task.
    pub triggers: Vec<Trigger>,
    /// Kind-specific parameters.
    pub params: serde_json::Value,
    /// Queue priority (raised when a more urgent request merges in).
    pub priority: Priority,
    /// The worker pool it runs in.
    pub pool: String,
    /// Current state.
    pub state: TaskState,
    /// Executions started so far.
    pub attempts: u32,
    /// Token of the current or last execution.
    pub run: Option<RunToken>,
    /// Last reported stage.
    pub stage: Option<String>,
    /// Last reported progress.
    pub progress: Option<Progress>,
    /// What a successful execution returned.
    pub result: Option<serde_json::Value>,
    /// Why the last execution failed or why the task was canceled.
    pub error: Option<String>,
    /// Errors of every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// Requests merged into this one beyond the first.
    pub merged: u64,
    /// The running task this follow-up waits behind.
    pub waiting_behind: Option<TaskId>,
    /// The task this one's requests were merged into (state `merged`).
    pub merged_into: Option<TaskId>,
    /// The failed or canceled task this one runs again (a retry).
    #[serde(default)]
    pub retry_of: Option<TaskId>,
    /// When the first request arrived.
    pub created_at: Timestamp,
    /// When the current or last execution started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal state.
    pub finished_at: Option<Timestamp>,
    /// Not to be started before this time (retry backoff).
    pub run_after: Option<Timestamp>,
}

impl TaskRecord {
    /// The record of a new request: queued, no execution yet.
    ///
    /// ```
    /// use groundcrew_actors::{Priority, TaskId, TaskRecord, TaskSpec, TaskState, Timestamp, Trigger};
    ///
    /// let spec = TaskSpec::new("refresh", "asn:1".parse().unwrap(), Trigger::FeedUpdate);
    /// let r = TaskRecord::new_queued(TaskId(1), spec, "background".into(), Priority::AUTOMATIC, Timestamp::now());
    /// assert_eq!((r.state, r.attempts, r.merged), (TaskState::Queued, 0, 0));
    /// ```
    pub fn new_queued(
        id: TaskId,
        spec: crate::spec::TaskSpec,
        pool: String,
        priority: Priority,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            kind: spec.kind,
            target: spec.target,
            trigger: spec.trigger.clone(),
            triggers: vec![spec.trigger],
            params: spec.params,
            priority,
            pool,
            state: TaskState::Queued,
            attempts: 0,
            run: None,
            stage: None,
            progress: None,
            result: None,
            error: None,
            errors: Vec::new(),
            merged: 0,
            waiting_behind: None,
            merged_into: None,
            retry_of: spec.retry_of,
            created_at: now,
            started_at: None,
            finished_at: None,
            run_after: None,
        }
    }
}

/// One change to the task journal.
#[derive(Clone, Debug)]
pub enum Change {
    /// Insert or replace the whole record, unless the stored record holds
    /// a later claim (a larger run token): a put from an older claim, e.g.
    /// the completion of a run that lost its claim, is not applied. A run
    /// token never goes back, so the runtime's own puts always apply.
    ///
    /// Shared, so that the supervisor's copy kept for a failed write's
    /// retry and an in-memory store's copy cost a reference count, not a
    /// copy of the record.
    Put(Arc<TaskRecord>),
    /// Requests merged into a pending task since its last put: its request
    /// count, priority, triggers (`None`: unchanged) and backoff as they are
    /// now. Only applies while the stored record is queued. Narrow, so that
    /// a flood of duplicate requests does not copy or rewrite whole records.
    Merge {
        /// Task.
        id: TaskId,
        /// Requests merged into it beyond the first.
        merged: u64,
        /// Its priority.
        priority: Priority,
        /// Every distinct trigger, when a request added one.
        triggers: Option<Vec<Trigger>>,
        /// Not to be started before this time.
        run_after: Option<Timestamp>,
    },
    /// A running execution's latest stage and progress. Only applies while
    /// the stored record is running with the same run token; a report from a
    /// stale execution is dropped.
    Report {
        /// Task.
        id: TaskId,
        /// Execution the report comes from.
        run: RunToken,
        /// Latest stage.
        stage: Option<String>,
        /// Latest progress.
        progress: Option<Progress>,
    },
}

impl Change {
    /// Applies a [`Change::Merge`] to `record`, as every store applies it
    /// to a queued task (the caller checks that the record is queued); any
    /// other change leaves it as it is.
    pub(crate) fn merge_into(self, record: &mut TaskRecord) {
        if let Change::Merge {
            merged,
            priority,
            triggers,
            run_after,
            ..
        } = self
        {
            record.merged = merged;
            record.priority = priority;
            if let Some(triggers) = triggers {
                record.triggers = triggers;
            }
            record.run_after = run_after;
        }
    }
}

/// Which part of the history a listing covers, as operators' panels group it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryCategory {
    /// Queued, running and canceling.
    Pending,
    /// Failed and canceled.
    Failed,
    /// Succeeded (and merged into another task).
    Finished,
}

impl HistoryCategory {
    /// The states the category covers.
    pub fn states(self) -> &'static [TaskState] {
        match self {
            HistoryCategory::Pending => {
                &[TaskState::Queued, TaskState::Running, TaskState::Canceling]
            }
            HistoryCategory::Failed => &[TaskState::Failed, TaskState::Canceled],
            HistoryCategory::Finished => &[TaskState::Succeeded, TaskState::Merged],
        }
    }
}

/// Which tasks of a history category a listing shows; every field that is
/// set must hold. The default shows all.
///
/// ```
/// use groundcrew_actors::{TaskFilter, Trigger};
///
/// let filter = TaskFilter { kind: Some("artifact".into()), trigger: Some(Trigger::Operator), ..TaskFilter::default() };
/// assert!(!filter.is_empty());
/// assert!(TaskFilter::default().is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// The kind, exactly.
    pub kind: Option<String>,
    /// One of the task's triggers (its requests' triggers merged in count).
    pub trigger: Option<Trigger>,
    /// The start of the target as written (`country:` lists every country).
    pub target_prefix: Option<String>,
    /// Requested at or after this time.
    pub since: Option<Timestamp>,
}

impl TaskFilter {
    /// Whether it shows everything.
    pub fn is_empty(&self) -> bool {
        *self == TaskFilter::default()
    }

    /// Whether `task` passes; stores that filter elsewhere (in SQL) must
    /// agree with this.
    pub fn matches(&self, task: &TaskRecord) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == task.kind)
            && self
                .trigger
                .as_ref()
                .is_none_or(|t| task.triggers.contains(t))
            && self
                .target_prefix
                .as_ref()
                .is_none_or(|p| task.target.to_string().starts_with(p.as_str()))
            && self.since.is_none_or(|s| task.created_at >= s)
    }
}

/// A page of task history, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskPage {
    /// The tasks on this page.
    pub tasks: Vec<TaskRecord>,
    /// How many tasks the category holds in all.
    pub total: u64,
}

/// How much finished history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Terminal tasks older than this many seconds are removed.
    pub max_age_s: Option<u64>,
    /// At most this many terminal tasks are kept (newest first).
    pub max_count: Option<u64>,
}

/// The task journal.
///
/// # Failure
/// A failed `write` changed nothing. The supervisor keeps one write in
/// flight at a time and puts a failed one back in front of what came after
/// it: requests in it are refused and undone, the runtime's own changes
/// (starts, ends, requeues) are written again with backoff until the store
/// takes them.
///
/// # Ordering and durability
/// `write` takes its changes in call order: a change handed over later is
/// never applied before one handed over earlier, even when the caller does not
/// wait for the returned [`Durable`]. The future resolves once the changes
/// (and all earlier ones) would survive a crash.
pub trait TaskStore: Send + Sync + 'static {
    /// A fresh task id, larger than every id the store has handed out.
    fn allocate_id(&self) -> TaskId;

    /// Hands changes over in order; resolves once they are durable.
    fn write(&self, changes: Vec<Change>) -> Durable;

    /// Tasks that were queued or running when the store was last closed,
    /// in id order, for restart recovery.
    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>>;

    /// One task.
    fn get(&self, id: TaskId) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>>;

    /// A page of one history category, newest first, of the tasks that
    /// pass `filter`; `total` counts those.
    fn list(
        &self,
        category: HistoryCategory,
        filter: TaskFilter,
        limit: u64,
        offset: u64,
    ) -> BoxFuture<'static, Result<TaskPage, StoreError>>;

    /// Removes a terminal task from the history; `false` if there is none
    /// (unknown id, or the task is not terminal).
    fn delete(&self, id: TaskId) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Removes terminal tasks beyond the retention limits; returns how many.
    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Whether the store can write, as far as it can tell without writing:
    /// the outcome of its last commit, and for a file whether it is still
    /// the file that was opened. Cheap enough for every health check. The
    /// default (a store that cannot fail) is always `Ok`.
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One artifact as the manifest records it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The entity it belongs to.
    pub entity: EntityName,
    /// SHA-256 of the content, lowercase hex.
    pub hash: String,
    /// Content length in bytes.
    pub size: u64,
    /// When it was last written.
    pub written_at: Timestamp,
    /// Version of the source data it was built from (e.g. a feed version).
    pub source_version: Option<String>,
    /// The task execution that wrote it.
    pub task: Option<TaskId>,
    /// That execution's run token.
    pub run: Option<RunToken>,
}

/// One change to the artifact manifest.
#[derive(Clone, Debug)]
pub enum ManifestChange {
    /// Insert or replace the entity's record.
    Put(ArtifactRecord),
    /// The entity's artifact was removed.
    Remove(EntityName),
}

/// Where the entity writer records what it published.
///
/// Same ordering and durability contract as [`TaskStore::write`].
pub trait Manifest: Send + Sync + 'static {
    /// Hands changes over in order; resolves once they are durable.
    fn write(&self, changes: Vec<ManifestChange>) -> Durable;

    /// The record of one entity.
    fn artifact(
        &self,
        entity: &EntityName,
    ) -> BoxFuture<'static, Result<Option<ArtifactRecord>, StoreError>>;

    /// Every record, ordered by entity name.
    fn artifacts(&self) -> BoxFuture<'static, Result<Vec<ArtifactRecord>, StoreError>>;

    /// The records of several entities, in the order asked (`None` for an
    /// entity without one): the entity writer asks this once per batch
    /// for the entities it has not seen yet. The default asks
    /// [`artifact`](Manifest::artifact) for each in turn; a store that can
    /// answer them in one round trip should.
    fn artifacts_of(
        &self,
        entities: &[EntityName],
    ) -> BoxFuture<'static, Result<Vec<Option<ArtifactRecord>>, StoreError>> {
        let lookups: Vec<_> = entities.iter().map(|e| self.artifact(e)).collect();
        Box::pin(async move {
            let mut records = Vec::with_capacity(lookups.len());
            for lookup in lookups {
                records.push(lookup.await?);
            }
            Ok(records)
        })
    }
}
