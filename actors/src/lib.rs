//! groundcrew-actors: the embeddable runtime for background maintenance work.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod entity;
mod memory;
mod metrics;
mod sink;
mod spec;
mod store;
mod time;
mod writer;

pub use entity::{EntityName, EntityNameError, Target, MAX_ENTITY_LEN};
pub use memory::MemoryStore;
pub use metrics::Metrics;
pub use sink::{Artifact, ArtifactSink, FsSink, SinkError, SinkOp};
pub use spec::{Priority, RunToken, TaskId, TaskSpec, TaskState, Trigger};
pub use store::{
    ArtifactRecord, AttemptError, Change, Durable, HistoryCategory, Manifest, ManifestChange,
    Progress, Retention, StoreError, TaskPage, TaskRecord, TaskStore,
};
pub use time::Timestamp;
pub use writer::{EntityWriter, Publish, PublishError, PublishOutcome, Remove};
