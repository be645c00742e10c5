//! groundcrew-actors: the embeddable runtime for background maintenance work
//! inside a long-running actix daemon.
//!
//! A daemon that publishes derived artifacts (one file per country, per
//! autonomous system, ...) has work beside its request path: refreshing
//! artifacts after a feed update, repairing them at startup, rebuilding
//! them when an operator asks. This crate runs that work:
//!
//! ```text
//!   Submit ──▶ Supervisor ──admits up to each pool's limit──▶ TaskActor (one per execution)
//!                │  ▲                                            │  stage / progress / end
//!                │  └────────────────────────────────────────────┘
//!                │ journal                                       │ Publish
//!                ▼                                               ▼
//!            TaskStore                           EntityWriter (one publish at a time,
//!                                                 batched, atomic, durable) ──▶ ArtifactSink
//! ```
//!
//! - The [`Supervisor`] keeps a priority-then-FIFO queue per pool and admits
//!   tasks up to the pool's worker limit, which can change at runtime.
//! - Requests are **coalesced** by (kind, target): a request for a queued
//!   key merges into it; a request for a running key creates at most one
//!   follow-up that waits behind the run, full rebuilds (`all`) included
//!   (a running rebuild listed its entities when it started). A pending full
//!   rebuild (queued, follow-up or in retry backoff) takes in the kind's
//!   per-entity requests and absorbs its pending per-entity tasks. Merging
//!   keeps the higher priority; an interactive request merged into a task in
//!   retry backoff makes it ready at once.
//! - Every change is journaled to a [`TaskStore`] and a request is answered
//!   only once durable; [`MemoryStore`] is the store for embedders that
//!   need no durability.
//! - A [`PanelSnapshot`] answers what an operator panel shows, a
//!   [`StatsSnapshot`] what ended in the last hour or day.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use groundcrew_actors::prelude::*;
//!
//! #[actix::main]
//! async fn main() {
//!     let mut kinds = Registry::new();
//!     kinds
//!         .register("refresh", |ctx: TaskContext| async move {
//!             ctx.stage("rendering");
//!             ctx.progress(1, 1);
//!             Ok(serde_json::json!({ "target": ctx.target().to_string() }))
//!         })
//!         .unwrap();
//!     let supervisor = Supervisor::builder().registry(kinds).pool("background", 2).start().await.unwrap();
//!
//!     let spec = TaskSpec::new("refresh", "country:DE".parse().unwrap(), Trigger::FeedUpdate);
//!     let reply = supervisor.send(Submit(spec)).await.unwrap().unwrap();
//!     assert_eq!(reply.outcome, SubmitOutcome::Queued);
//!
//!     loop {
//!         let panel = supervisor.send(PanelSnapshot::default()).await.unwrap();
//!         if panel.state == Activity::Idle {
//!             break;
//!         }
//!         tokio::time::sleep(Duration::from_millis(5)).await;
//!     }
//! }
//! ```
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod coalesce;
mod context;
mod entity;
mod fence;
mod kind;
mod memory;
mod message;
mod metrics;
mod panel;
mod recovery;
mod shared;
mod sink;
mod spec;
mod stats;
mod store;
mod supervisor;
mod task;
mod task_log;
mod test_kind;
mod time;
mod writer;

/// The hash maps and sets of the hot path (queue, live tasks, journal,
/// claims): foldhash, randomly seeded per process, instead of SipHash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`FastMap`].
pub(crate) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

pub use context::TaskContext;
pub use entity::{EntityName, EntityNameError, Target, MAX_ENTITY_LEN};
pub use kind::{KindError, KindOptions, Registry, Task, TaskError, TaskResult, DEFAULT_POOL};
pub use memory::MemoryStore;
pub use message::{
    AwaitRunEnd, Cancel, CancelError, CancelReply, LimitError, PanelSnapshot, Rebuild,
    SetCancelGrace, SetClusterLimit, SetLimit, StatsSnapshot, StoreHealth, Submit, SubmitError,
    SubmitMany, SubmitOutcome, SubmitReply, DEFAULT_CANCEL_GRACE, FULL_REBUILD_ABOVE,
    MAX_WORKER_LIMIT,
};
pub use metrics::Metrics;
pub use panel::{Activity, Panel, PanelTask, PoolStatus, StoreStatus, Workers};
pub use shared::{HeldRun, NodeStatus, SharedCancel, SharedPending, SharedQueue};
pub use sink::{Artifact, ArtifactSink, FsSink, SinkError, SinkOp};
pub use spec::{Priority, RunToken, TaskId, TaskSpec, TaskState, Trigger};
pub use stats::{
    Percentiles, Stats, StatsBucket, StatsRecorder, StatsSeries, StatsWindow, MAX_SERIES,
};
pub use store::{
    ArtifactRecord, AttemptError, Change, Durable, HistoryCategory, Manifest, ManifestChange,
    Progress, Retention, StoreError, TaskFilter, TaskPage, TaskRecord, TaskStore,
};
pub use supervisor::{Drain, DrainReport, StartError, Supervisor, SupervisorBuilder};
pub use task_log::{
    newest_log_lines, LogLine, TaskLog, TaskLogLine, LOG_LINES_PER_TASK, MAX_LOG_MESSAGE,
    STDERR_SOURCE,
};
pub use test_kind::{check_test_artifact, test_artifact, TestKind};
pub use time::Timestamp;
pub use writer::{
    content_hash, digest_hex, EntityWriter, Publish, PublishError, PublishOutcome, Remove,
    BATCH_MAX_ITEMS,
};

/// The imports most embedders need.
pub mod prelude {
    pub use crate::{
        Activity, Cancel, EntityName, PanelSnapshot, Registry, SetLimit, Submit, SubmitOutcome,
        Supervisor, Target, TaskContext, TaskError, TaskResult, TaskSpec, TaskState, Trigger,
    };
}
