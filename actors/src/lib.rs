//! groundcrew-actors: the embeddable runtime for background maintenance work.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod coalesce;
mod context;
mod entity;
mod kind;
mod memory;
mod message;
mod metrics;
mod panel;
mod recovery;
mod spec;
mod store;
mod supervisor;
mod task;
mod test_kind;
mod time;

pub use context::TaskContext;
pub use entity::{EntityName, EntityNameError, Target, MAX_ENTITY_LEN};
pub use kind::{KindError, KindOptions, Registry, Task, TaskError, TaskResult, DEFAULT_POOL};
pub use memory::MemoryStore;
pub use message::{
    Cancel, CancelError, CancelReply, LimitError, PanelSnapshot, SetLimit, Submit, SubmitError,
    SubmitOutcome, SubmitReply, MAX_WORKER_LIMIT,
};
pub use metrics::Metrics;
pub use panel::{Activity, Panel, PanelTask, PoolStatus, Workers};
pub use spec::{Priority, RunToken, TaskId, TaskSpec, TaskState, Trigger};
pub use store::{
    ArtifactRecord, AttemptError, Change, Durable, HistoryCategory, Manifest, ManifestChange,
    Progress, Retention, StoreError, TaskPage, TaskRecord, TaskStore,
};
pub use supervisor::{StartError, Supervisor, SupervisorBuilder};
pub use test_kind::TestKind;
pub use time::Timestamp;
