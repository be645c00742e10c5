//! [`TaskContext`]: what a running task sees of the runtime. It names the
//! request, carries the cancellation signal, and reports stage and progress
//! to the supervisor, tagged with the execution's run token.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::entity::EntityName;
use crate::entity::Target;
use crate::kind::TaskError;
use crate::message::Report;
use crate::spec::{RunToken, TaskId, Trigger};
use crate::store::Progress;
use crate::supervisor::Supervisor;
use crate::writer::{EntityWriter, Publish, PublishError, PublishOutcome, Remove};

/// Progress reports closer together than this are folded into the next one,
/// so that a task reporting every item cannot flood the supervisor's mailbox.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(20);

/// The running task's handle on the runtime. Cheap to clone; clones share
/// the cancellation signal and the progress throttle.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    id: TaskId,
    run: RunToken,
    attempt: u32,
    kind: String,
    target: Target,
    triggers: Vec<Trigger>,
    params: serde_json::Value,
    cancel: CancellationToken,
    supervisor: Addr<Supervisor>,
    writer: Option<Addr<EntityWriter>>,
    last_progress: Mutex<Option<Instant>>,
}

pub(crate) struct ContextParts {
    pub(crate) id: TaskId,
    pub(crate) run: RunToken,
    pub(crate) attempt: u32,
    pub(crate) kind: String,
    pub(crate) target: Target,
    pub(crate) triggers: Vec<Trigger>,
    pub(crate) params: serde_json::Value,
    pub(crate) cancel: CancellationToken,
    pub(crate) supervisor: Addr<Supervisor>,
    pub(crate) writer: Option<Addr<EntityWriter>>,
}

impl TaskContext {
    pub(crate) fn new(p: ContextParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: p.id,
                run: p.run,
                attempt: p.attempt,
                kind: p.kind,
                target: p.target,
                triggers: p.triggers,
                params: p.params,
                cancel: p.cancel,
                supervisor: p.supervisor,
                writer: p.writer,
                last_progress: Mutex::new(None),
            }),
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.inner.id
    }

    /// This execution's run token.
    pub fn run(&self) -> RunToken {
        self.inner.run
    }

    /// Which execution this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The kind name.
    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// What to work on.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Every distinct trigger of the requests this execution serves.
    pub fn triggers(&self) -> &[Trigger] {
        &self.inner.triggers
    }

    /// The request's parameters.
    pub fn params(&self) -> &serde_json::Value {
        &self.inner.params
    }

    /// The parameters decoded into `T` (`null` decodes as `{}` so that
    /// all-default parameter structs need no body).
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        decode_params(&self.inner.params).map_err(TaskError::fatal)
    }

    /// Reports the stage the execution entered.
    pub fn stage(&self, name: impl Into<String>) {
        self.report(Some(name.into()), None);
    }

    /// Reports progress. Reports closer together than 20 ms are folded
    /// into the next one, except the one that reaches `total`.
    pub fn progress(&self, done: u64, total: u64) {
        let now = Instant::now();
        {
            let mut last = self
                .inner
                .last_progress
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL);
            if !due && done < total {
                return;
            }
            *last = Some(now);
        }
        self.report(None, Some(Progress { done, total }));
    }

    /// Whether cancellation was requested.
    pub fn is_canceled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes once cancellation is requested; race it against slow work
    /// with `tokio::select!`.
    ///
    /// # Cancel safety
    /// Dropping the future and calling again is fine: the signal is level-
    /// triggered.
    pub async fn canceled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// `Err(TaskError::Canceled)` once cancellation was requested: call it
    /// between units of work and return early with `?`.
    pub fn checkpoint(&self) -> Result<(), TaskError> {
        if self.is_canceled() {
            Err(TaskError::Canceled)
        } else {
            Ok(())
        }
    }

    /// Publishes `content` as the artifact of `entity` through the entity
    /// writer, tagged with this execution. Resolves once the artifact and
    /// its manifest record are durable.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the publication: once sent, it
    /// is carried out, unless this execution is stopped hard before the
    /// writer gets to it: then it is refused as
    /// [`StaleRun`](PublishError::StaleRun), as is anything an execution
    /// sends once it no longer holds its task's claim (and the execution is
    /// signaled to stop).
    pub async fn publish(
        &self,
        entity: EntityName,
        content: impl Into<Vec<u8>>,
        source_version: Option<String>,
    ) -> Result<PublishOutcome, PublishError> {
        let writer = self.writer(&entity)?;
        let mut publish = Publish::new(entity, content).with_source(self.id(), self.run());
        publish.source_version = source_version;
        let entity = publish.entity.clone();
        let outcome = writer
            .send(publish)
            .await
            .map_err(|_| PublishError::Closed { entity })?;
        self.stop_if_stale(outcome)
    }

    /// Removes the artifact of `entity` through the entity writer; `true` if
    /// there was one.
    pub async fn remove(&self, entity: EntityName) -> Result<bool, PublishError> {
        let writer = self.writer(&entity)?;
        let remove = Remove {
            entity: entity.clone(),
            source: Some((self.id(), self.run())),
        };
        let removed = writer
            .send(remove)
            .await
            .map_err(|_| PublishError::Closed { entity })?;
        self.stop_if_stale(removed)
    }

    /// A run whose write was refused as stale has lost its claim: it stops
    /// itself, as if canceled, so that it does no further work.
    fn stop_if_stale<T>(&self, result: Result<T, PublishError>) -> Result<T, PublishError> {
        if let Err(PublishError::StaleRun { .. }) = &result {
            self.inner.cancel.cancel();
        }
        result
    }

    fn writer(&self, entity: &EntityName) -> Result<&Addr<EntityWriter>, PublishError> {
        self.inner
            .writer
            .as_ref()
            .ok_or_else(|| PublishError::NoWriter {
                entity: entity.clone(),
            })
    }

    fn report(&self, stage: Option<String>, progress: Option<Progress>) {
        // do_send: a stage report must not be lost to a momentarily full
        // mailbox; the progress throttle above bounds how many arrive.
        self.inner.supervisor.do_send(Report {
            id: self.inner.id,
            run: self.inner.run,
            stage,
            progress,
        });
    }
}

/// Decodes parameters, treating `null` as an empty object.
pub(crate) fn decode_params<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T, String> {
    let value = match params {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        other => other.clone(),
    };
    serde_json::from_value(value).map_err(|e| format!("invalid params: {e}"))
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.inner.id)
            .field("run", &self.inner.run)
            .field("kind", &self.inner.kind)
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}
