//! The entity writer: the one path by which artifacts are published.
//!
//! [`EntityWriter`] is an actor whose handlers only forward requests to one
//! dedicated thread. That thread owns the [`ArtifactSink`] and the
//! [`Manifest`]: it takes everything queued since its last round as one
//! batch, skips artifacts whose content is unchanged, hands the rest to the
//! sink in one call (one sync for the lot), records them in the manifest,
//! and only then answers each caller. Publication is thereby serialized
//! however many tasks publish at once, and its cost grows with the bytes
//! written rather than with the number of syncs.

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::entity::EntityName;
use crate::fence::{Runs, WriterFence};
use crate::metrics::Metrics;
use crate::sink::{Artifact, ArtifactSink, SinkError};
use crate::spec::{RunToken, TaskId};
use crate::store::{ArtifactRecord, Manifest, ManifestChange, StoreError};
use crate::time::Timestamp;

/// Most publications written as one batch: each batch costs a `syncfs`,
/// directory syncs and a manifest commit, so a full rebuild of ~76k
/// artifacts is about twenty batches rather than a hundred and fifty.
pub const BATCH_MAX_ITEMS: usize = 4096;
/// Most manifest records the writer keeps between batches; past it, it
/// forgets them all and asks the manifest again (one request per batch):
/// a full rebuild would otherwise keep a record of every artifact.
const RECORDS_KEPT: usize = 2 * BATCH_MAX_ITEMS;
/// How long the writer waits for a next publication before it closes a
/// batch: less than one sync costs (0.15–0.7 ms).
const GATHER: std::time::Duration = std::time::Duration::from_micros(200);
/// Most content bytes written as one batch (the batch may exceed it by the
/// publication that crossed it).
const BATCH_MAX_BYTES: usize = 64 << 20;

/// Publishes an entity's artifact: the complete new content.
///
/// Answered with [`PublishOutcome`] once the file and its manifest record are
/// durable.
#[derive(Clone, Debug)]
pub struct Publish {
    /// The entity.
    pub entity: EntityName,
    /// The complete content.
    pub content: Vec<u8>,
    /// Version of the source data it was built from.
    pub source_version: Option<String>,
    /// The task execution publishing it.
    pub source: Option<(TaskId, RunToken)>,
}

impl Publish {
    /// A publication with no source information.
    pub fn new(entity: EntityName, content: impl Into<Vec<u8>>) -> Self {
        Publish {
            entity,
            content: content.into(),
            source_version: None,
            source: None,
        }
    }

    /// Records the version of the source data.
    pub fn with_source_version(mut self, version: impl Into<String>) -> Self {
        self.source_version = Some(version.into());
        self
    }

    /// Records the task execution publishing it.
    pub fn with_source(mut self, task: TaskId, run: RunToken) -> Self {
        self.source = Some((task, run));
        self
    }
}

impl Message for Publish {
    type Result = Result<PublishOutcome, PublishError>;
}

/// Removes an entity's artifact and its manifest record.
///
/// Answered with `true` if there was a file or a record to remove.
#[derive(Clone, Debug)]
pub struct Remove {
    /// The entity.
    pub entity: EntityName,
    /// The task execution removing it; only logged, as the manifest keeps no
    /// record of removed artifacts.
    pub source: Option<(TaskId, RunToken)>,
}

impl Message for Remove {
    type Result = Result<bool, PublishError>;
}

/// What a successful [`Publish`] did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PublishOutcome {
    /// The content was written; the record is the new manifest entry.
    Written(ArtifactRecord),
    /// The artifact already had this content; nothing was touched and the
    /// record is the existing manifest entry.
    Unchanged(ArtifactRecord),
}

impl PublishOutcome {
    /// The manifest record of the artifact as it now is.
    pub fn record(&self) -> &ArtifactRecord {
        match self {
            PublishOutcome::Written(r) | PublishOutcome::Unchanged(r) => r,
        }
    }
}

/// A [`Publish`] or [`Remove`] that failed, naming the entity.
///
/// When it fails, the manifest still describes the previous artifact and
/// the file is the previous one or, if only the manifest write failed, the
/// new one; publishing again repairs either.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The sink could not store or remove the artifact.
    #[error("cannot publish artifact of {entity}")]
    Sink {
        /// The entity.
        entity: EntityName,
        /// What the sink reported.
        #[source]
        source: SinkError,
    },
    /// The manifest could not be read or written.
    #[error("cannot record artifact of {entity} in the manifest")]
    Manifest {
        /// The entity.
        entity: EntityName,
        /// What the manifest reported.
        #[source]
        source: StoreError,
    },
    /// The writer has stopped; the request was not carried out.
    #[error("entity writer is closed; artifact of {entity} was not published")]
    Closed {
        /// The entity.
        entity: EntityName,
    },
    /// The supervisor was started without an entity writer.
    #[error("no entity writer is configured; artifact of {entity} was not published")]
    NoWriter {
        /// The entity.
        entity: EntityName,
    },
    /// The execution that sent it no longer holds its task's claim (it was
    /// stopped hard, or a later execution took over): nothing was written.
    #[error(
        "task {task} run {stale} no longer holds its claim (current run: {}); artifact of {entity} was not changed",
        current.map_or_else(|| "none".to_owned(), |c| c.0.to_string())
    )]
    StaleRun {
        /// The entity.
        entity: EntityName,
        /// The task.
        task: TaskId,
        /// The token the write carried.
        stale: RunToken,
        /// The token of the execution that holds the claim, if one does.
        current: Option<RunToken>,
    },
}

impl PublishError {
    /// Whether trying again later may succeed: I/O errors of the sink (a
    /// full disk, an unwritable directory) and manifest errors are; a path
    /// outside the sink's root, a missing or closed writer are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            PublishError::Sink { source, .. } => {
                matches!(source, SinkError::Io { .. } | SinkError::Backend { .. })
            }
            PublishError::Manifest { .. } => true,
            PublishError::Closed { .. }
            | PublishError::NoWriter { .. }
            | PublishError::StaleRun { .. } => false,
        }
    }
}

/// Serializes and batches every artifact publication.
///
/// # Messages
/// - [`Publish`] → [`PublishOutcome`]: `Written` once file and manifest
///   record are durable, or `Unchanged` when the manifest holds the same
///   SHA-256 and the sink holds exactly that content (then nothing is
///   touched).
///   Publications that arrive while a batch is being written form the next
///   batch, made durable with one sync. When one batch holds several
///   publications of one entity, the last one is written and all of them get
///   its answer.
/// - [`Remove`] → `bool`: deletes the file and the manifest record; `true`
///   if either existed. It is ordered with the publications around it.
///
/// Dropping the response future does not cancel a request the actor has
/// accepted: it is carried out and its answer discarded.
///
/// # Failure
/// A sink or manifest error fails only the publications it concerns, with a
/// [`PublishError`] naming the entity; the manifest keeps describing the
/// previous artifact and the writer goes on serving. No caller is answered
/// `Written` before its file and record are durable. A sink that panics
/// stops the writer: every later request fails with [`PublishError::Closed`].
///
/// # Shutdown
/// When the actor stops (its system stops or every address is dropped),
/// requests it already accepted are still written and answered; the
/// writer thread ends once they are done.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use groundcrew_actors::{EntityWriter, FsSink, MemoryStore, Metrics, Publish, PublishOutcome};
///
/// #[actix_rt::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let dir = tempfile::tempdir()?;
///     let sink = Arc::new(FsSink::open(dir.path())?.with_extension("txt"));
///     let manifest = Arc::new(MemoryStore::new());
///     let writer = EntityWriter::start(sink, manifest, Metrics::unregistered()?);
///     let publish = || Publish::new("country:DE".parse().unwrap(), "DE 1.2.3.0/24\n");
///
///     let first = writer.send(publish()).await??;
///     assert!(matches!(first, PublishOutcome::Written(_)));
///     assert_eq!(std::fs::read_to_string(dir.path().join("country/DE.txt"))?, "DE 1.2.3.0/24\n");
///     let again = writer.send(publish()).await??;
///     assert_eq!(again, PublishOutcome::Unchanged(first.record().clone()));
///     Ok(())
/// }
/// ```
pub struct EntityWriter {
    jobs: mpsc::Sender<Job>,
    metrics: Metrics,
}

impl fmt::Debug for EntityWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityWriter").finish_non_exhaustive()
    }
}

impl EntityWriter {
    /// Starts the writer thread and the actor in the current actix system.
    ///
    /// The writer must be the only one writing `manifest`: it remembers the
    /// records it has read or written instead of asking again.
    ///
    /// # Panics
    /// Outside a running actix system, or if the OS refuses a thread.
    pub fn start(
        sink: Arc<dyn ArtifactSink>,
        manifest: Arc<dyn Manifest>,
        metrics: Metrics,
    ) -> Addr<EntityWriter> {
        let (jobs, queue) = mpsc::channel();
        let worker = Worker {
            sink,
            manifest,
            metrics: metrics.clone(),
            records: HashMap::new(),
            // Manifest futures may need the runtime the actor runs on (a
            // store backed by tokio I/O); the worker thread enters it.
            runtime: tokio::runtime::Handle::try_current().ok(),
            failures: FailureLog::default(),
            fence: WriterFence::default(),
        };
        std::thread::Builder::new()
            .name("groundcrew-writer".into())
            .spawn(move || worker.run(queue))
            .expect("cannot spawn the entity writer thread");
        EntityWriter { jobs, metrics }.start()
    }

    fn submit<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, PublishError>>) -> Job,
        entity: EntityName,
    ) -> ResponseFuture<Result<T, PublishError>> {
        let (reply, answer) = oneshot::channel();
        self.metrics.writer_mailbox.inc();
        if self.jobs.send(make(reply)).is_err() {
            self.metrics.writer_mailbox.dec();
            self.metrics
                .artifact_writes
                .with_label_values(&["failed"])
                .inc();
        }
        // A dropped reply means the writer thread is gone.
        Box::pin(async move { answer.await.unwrap_or(Err(PublishError::Closed { entity })) })
    }
}

impl Actor for EntityWriter {
    type Context = Context<Self>;
}

impl Handler<Publish> for EntityWriter {
    type Result = ResponseFuture<Result<PublishOutcome, PublishError>>;

    fn handle(&mut self, msg: Publish, _: &mut Self::Context) -> Self::Result {
        let entity = msg.entity.clone();
        self.submit(|reply| Job::Publish(msg, reply), entity)
    }
}

impl Handler<Remove> for EntityWriter {
    type Result = ResponseFuture<Result<bool, PublishError>>;

    fn handle(&mut self, msg: Remove, _: &mut Self::Context) -> Self::Result {
        let entity = msg.entity.clone();
        self.submit(|reply| Job::Remove(msg, reply), entity)
    }
}

type Reply<T> = oneshot::Sender<Result<T, PublishError>>;

enum Job {
    Publish(Publish, Reply<PublishOutcome>),
    Remove(Remove, Reply<bool>),
    Fence(Arc<Runs>),
}

/// Hands the writer the supervisor's table of current claims: from then on
/// a write from an execution that does not hold its task's claim is
/// refused with [`PublishError::StaleRun`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Fence(pub(crate) Arc<Runs>);

impl Handler<Fence> for EntityWriter {
    type Result = ();

    fn handle(&mut self, Fence(runs): Fence, _: &mut Self::Context) {
        // A writer whose thread is gone refuses everything anyway.
        let _ = self.jobs.send(Job::Fence(runs));
    }
}

/// A manifest record to write, the replies waiting on it, and the outcome
/// they get once it is durable.
type ToRecord = (
    ArtifactRecord,
    Vec<Reply<PublishOutcome>>,
    fn(ArtifactRecord) -> PublishOutcome,
);

/// A publication whose content has been hashed, waiting for its batch.
struct Pending {
    publish: Publish,
    hash: String,
    replies: Vec<Reply<PublishOutcome>>,
}

/// The writer thread's state: the only user of the sink and the manifest.
struct Worker {
    sink: Arc<dyn ArtifactSink>,
    manifest: Arc<dyn Manifest>,
    metrics: Metrics,
    /// Manifest records known to be current; `None` for a known absence.
    /// At most [`RECORDS_KEPT`] between batches.
    records: HashMap<EntityName, Option<ArtifactRecord>>,
    runtime: Option<tokio::runtime::Handle>,
    failures: FailureLog,
    fence: WriterFence,
}

impl Worker {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        // recv keeps returning queued jobs after the actor (the sender) is
        // gone, so accepted requests are still answered at shutdown.
        while let Ok(first) = queue.recv() {
            let mut bytes = job_bytes(&first);
            let mut batch = vec![first];
            // Group commit with a short gathering window: publications of a
            // rebuild arrive a few microseconds apart, and a batch closed at
            // the first gap costs a whole sync more (a stream's first job
            // would make a batch of one). Waiting at most GATHER for each
            // next job costs a lone publication less than one sync does.
            while batch.len() < BATCH_MAX_ITEMS && bytes < BATCH_MAX_BYTES {
                let Ok(job) = queue.recv_timeout(GATHER) else {
                    break;
                };
                bytes += job_bytes(&job);
                batch.push(job);
            }
            self.run_batch(batch);
        }
        tracing::debug!("entity writer stopped");
    }

    /// Runs publications in batches and each removal between them, so that a
    /// removal is ordered with the publications around it.
    fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut publications = Vec::new();
        for job in jobs {
            match job {
                Job::Fence(runs) => self.fence.attach(runs),
                Job::Publish(publish, reply) => {
                    let (source, entity) = (publish.source, &publish.entity);
                    match self.fence.check(source, entity, "publish", &self.metrics) {
                        Ok(()) => publications.push((publish, reply)),
                        Err(e) => self.answer(reply, Err(e), |_| "written"),
                    }
                }
                Job::Remove(remove, reply) => {
                    let checked =
                        self.fence
                            .check(remove.source, &remove.entity, "remove", &self.metrics);
                    if let Err(e) = checked {
                        self.answer(reply, Err(e), |_| "removed");
                        continue;
                    }
                    self.publish_all(std::mem::take(&mut publications));
                    tracing::debug!(
                        entity = %remove.entity,
                        source = ?remove.source,
                        "removing artifact"
                    );
                    let result = self.remove(&remove.entity, remove.source);
                    self.answer(reply, result, |_| "removed");
                }
            }
        }
        self.publish_all(publications);
        if self.records.len() > RECORDS_KEPT {
            self.records = HashMap::new();
        }
    }

    fn publish_all(&mut self, publications: Vec<(Publish, Reply<PublishOutcome>)>) {
        if publications.is_empty() {
            return;
        }
        let started = Instant::now();
        let count = publications.len();
        let mut to_write = Vec::new();
        // Manifest records to write, with the outcome each answers: the
        // written ones, and unchanged ones restamped with their new source
        // version (so that an artifact the current feeds still agree with
        // is not listed stale), share one manifest write.
        let mut to_record: Vec<ToRecord> = Vec::new();
        let pending = coalesce(publications);
        self.look_up(pending.iter().map(|p| &p.publish.entity));
        for pending in pending {
            match self.unchanged(&pending) {
                Ok(Some(record)) => match &pending.publish.source_version {
                    Some(version) if record.source_version.as_ref() != Some(version) => {
                        let record = ArtifactRecord {
                            source_version: Some(version.clone()),
                            ..record
                        };
                        let unchanged = PublishOutcome::Unchanged as fn(_) -> _;
                        to_record.push((record, pending.replies, unchanged));
                    }
                    _ => self.answer_all(pending.replies, Ok(PublishOutcome::Unchanged(record))),
                },
                Ok(None) => to_write.push(pending),
                Err(e) => self.answer_all(pending.replies, Err(e)),
            }
        }
        let written = to_write.len();
        if !to_write.is_empty() {
            to_record.extend(self.write(to_write));
        }
        self.record_durably(to_record);
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.artifact_write_seconds.observe(seconds);
        tracing::debug!(count, written, seconds, "artifact batch done");
    }

    /// The current record if the artifact already has this content.
    fn unchanged(&mut self, pending: &Pending) -> Result<Option<ArtifactRecord>, PublishError> {
        let entity = &pending.publish.entity;
        let size = pending.publish.content.len() as u64;
        let Some(record) = self.record(entity)? else {
            return Ok(None);
        };
        if record.hash != pending.hash || record.size != size {
            return Ok(None);
        }
        // The file may have been deleted or damaged behind our back, even
        // to the same length: only its very bytes prove it current. An
        // inspection error just means we write it again.
        let on_disk = self
            .sink
            .holds(entity, &pending.publish.content)
            .unwrap_or(false);
        Ok(on_disk.then_some(record))
    }

    /// Publishes the files; returns the records of those written, for the
    /// manifest (the failed ones are answered here).
    fn write(&mut self, pending: Vec<Pending>) -> Vec<ToRecord> {
        let (meta, artifacts): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .map(|p| {
                let Publish {
                    entity,
                    content,
                    source_version,
                    source,
                } = p.publish;
                let record = ArtifactRecord {
                    entity: entity.clone(),
                    hash: p.hash,
                    size: content.len() as u64,
                    written_at: Timestamp::now(),
                    source_version,
                    task: source.map(|(task, _)| task),
                    run: source.map(|(_, run)| run),
                };
                (
                    (record, p.replies),
                    Artifact {
                        entity,
                        content,
                        source,
                    },
                )
            })
            .unzip();
        let results = self.sink.publish(&artifacts);
        debug_assert_eq!(results.len(), meta.len(), "sink answered a different batch");

        let mut stored = Vec::new();
        for ((record, replies), result) in meta.into_iter().zip(results) {
            match result {
                Ok(()) => stored.push((record, replies, PublishOutcome::Written as fn(_) -> _)),
                Err(SinkError::StaleRun { entity, task, run }) => {
                    // The shared sink's own fence: nothing was written.
                    self.metrics
                        .stale_runs
                        .with_label_values(&["publish"])
                        .inc();
                    tracing::warn!(task = task.0, run = run.0, %entity,
                        "the artifact sink refused a publication from an execution that no longer holds its task's claim");
                    let stale = PublishError::StaleRun {
                        entity,
                        task,
                        stale: run,
                        current: None,
                    };
                    self.answer_all(replies, Err(stale));
                }
                Err(source) => {
                    // The file may or may not be the new one; the next
                    // publication must not trust the old record to skip.
                    self.records.remove(&record.entity);
                    let entity = record.entity;
                    self.answer_all(replies, Err(PublishError::Sink { entity, source }));
                }
            }
        }
        stored
    }

    /// Writes the records to the manifest in one write, then answers each
    /// with its outcome, or with the manifest's error.
    fn record_durably(&mut self, entries: Vec<ToRecord>) {
        if entries.is_empty() {
            return;
        }
        let changes = entries
            .iter()
            .map(|(record, _, _)| ManifestChange::Put(record.clone()))
            .collect();
        let durable = self.block_on(self.manifest.write(changes));
        for (record, replies, outcome) in entries {
            let entity = record.entity.clone();
            match &durable {
                Ok(()) => {
                    self.records.insert(entity, Some(record.clone()));
                    self.answer_all(replies, Ok(outcome(record)));
                }
                Err(source) => {
                    self.records.remove(&entity);
                    let source = source.clone();
                    self.answer_all(replies, Err(PublishError::Manifest { entity, source }));
                }
            }
        }
    }

    fn remove(
        &mut self,
        entity: &EntityName,
        from: Option<(TaskId, RunToken)>,
    ) -> Result<bool, PublishError> {
        let had_record = self.record(entity)?.is_some();
        let had_file = match self.sink.remove_from(entity, from) {
            Ok(had_file) => had_file,
            Err(SinkError::StaleRun { entity, task, run }) => {
                // The shared sink's own fence: nothing was removed.
                self.metrics.stale_runs.with_label_values(&["remove"]).inc();
                tracing::warn!(task = task.0, run = run.0, %entity,
                    "the artifact sink refused a removal from an execution that no longer holds its task's claim");
                return Err(PublishError::StaleRun {
                    entity,
                    task,
                    stale: run,
                    current: None,
                });
            }
            Err(source) => {
                return Err(PublishError::Sink {
                    entity: entity.clone(),
                    source,
                })
            }
        };
        self.records.remove(entity);
        self.block_on(
            self.manifest
                .write(vec![ManifestChange::Remove(entity.clone())]),
        )
        .map_err(|source| PublishError::Manifest {
            entity: entity.clone(),
            source,
        })?;
        self.records.insert(entity.clone(), None);
        Ok(had_file || had_record)
    }

    /// Reads the records of the entities not known yet in one manifest
    /// request, rather than one request each (a first full build asks for
    /// every entity). On failure nothing is learnt, and [`Self::record`]
    /// asks for each again, failing the publications it cannot answer.
    fn look_up<'a>(&mut self, entities: impl Iterator<Item = &'a EntityName>) {
        let unknown: Vec<EntityName> = entities
            .filter(|e| !self.records.contains_key(*e))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return;
        }
        match self.block_on(self.manifest.artifacts_of(&unknown)) {
            Ok(records) if records.len() == unknown.len() => {
                self.records.extend(unknown.into_iter().zip(records));
            }
            Ok(_) => tracing::warn!("the manifest answered a lookup of a different length"),
            Err(e) => tracing::debug!(error = %e, "batched manifest lookup failed"),
        }
    }

    fn record(&mut self, entity: &EntityName) -> Result<Option<ArtifactRecord>, PublishError> {
        if let Some(known) = self.records.get(entity) {
            return Ok(known.clone());
        }
        let record = self
            .block_on(self.manifest.artifact(entity))
            .map_err(|source| PublishError::Manifest {
                entity: entity.clone(),
                source,
            })?;
        self.records.insert(entity.clone(), record.clone());
        Ok(record)
    }

    fn block_on<T>(&self, future: BoxFuture<'static, T>) -> T {
        match &self.runtime {
            Some(runtime) => runtime.block_on(future),
            None => futures::executor::block_on(future),
        }
    }

    fn answer_all(
        &self,
        replies: Vec<Reply<PublishOutcome>>,
        result: Result<PublishOutcome, PublishError>,
    ) {
        for reply in replies {
            self.answer(reply, result.clone(), |outcome| match outcome {
                PublishOutcome::Written(_) => "written",
                PublishOutcome::Unchanged(_) => "unchanged",
            });
        }
    }

    fn answer<T>(
        &self,
        reply: Reply<T>,
        result: Result<T, PublishError>,
        label: fn(&T) -> &'static str,
    ) {
        let label = match &result {
            Ok(value) => label(value),
            // Counted and logged by the fence.
            Err(PublishError::StaleRun { .. }) => "refused",
            Err(e) => {
                if let Some(suppressed) = self.failures.due(std::time::Instant::now()) {
                    let cause = std::error::Error::source(e).map(ToString::to_string);
                    tracing::warn!(error = %e, cause, suppressed, "artifact publication failed");
                }
                "failed"
            }
        };
        self.metrics
            .artifact_writes
            .with_label_values(&[label])
            .inc();
        self.metrics.writer_mailbox.dec();
        // The caller may have stopped waiting; the work is done either way.
        let _ = reply.send(result);
    }
}

/// Failed publications are logged at most once per
/// [`FailureLog::INTERVAL`], each line with how many were not logged since
/// the last: a full disk fails every publication of a rebuild, and one line
/// per artifact would flood the log. The metric counts every one.
#[derive(Debug, Default)]
struct FailureLog {
    last: std::cell::Cell<Option<std::time::Instant>>,
    suppressed: std::cell::Cell<u64>,
}

impl FailureLog {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    /// `Some(failures not logged since the last line)` when a failure at
    /// `now` is to be logged; `None` when it is only counted.
    fn due(&self, now: std::time::Instant) -> Option<u64> {
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < Self::INTERVAL)
        {
            self.suppressed.set(self.suppressed.get() + 1);
            return None;
        }
        self.last.set(Some(now));
        Some(self.suppressed.replace(0))
    }
}

/// Hashes each publication and folds several of one entity into the last
/// one, which carries every caller's reply.
fn coalesce(publications: Vec<(Publish, Reply<PublishOutcome>)>) -> Vec<Pending> {
    let mut pending: Vec<Pending> = Vec::with_capacity(publications.len());
    let mut index: HashMap<EntityName, usize> = HashMap::new();
    for (publish, reply) in publications {
        let hash = content_hash(&publish.content);
        match index.get(&publish.entity) {
            Some(&i) => {
                let earlier = &mut pending[i];
                earlier.replies.push(reply);
                earlier.publish = publish;
                earlier.hash = hash;
            }
            None => {
                index.insert(publish.entity.clone(), pending.len());
                pending.push(Pending {
                    publish,
                    hash,
                    replies: vec![reply],
                });
            }
        }
    }
    pending
}

/// The hash the manifest records for an artifact's content: SHA-256,
/// lowercase hex. Whoever checks artifacts against the manifest must hash
/// the same way, so this is the one definition.
///
/// ```
/// assert_eq!(
///     groundcrew_actors::content_hash(b"abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn content_hash(content: &[u8]) -> String {
    digest_hex(&Sha256::digest(content).into())
}

/// A SHA-256 digest written as [`content_hash`] writes it (lowercase hex),
/// for whoever keeps digests as bytes and compares them with the manifest.
///
/// ```
/// assert_eq!(groundcrew_actors::digest_hex(&[0xab; 32]), "ab".repeat(32));
/// ```
pub fn digest_hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn job_bytes(job: &Job) -> usize {
    match job {
        Job::Publish(publish, _) => publish.content.len(),
        Job::Remove(..) | Job::Fence(_) => 0,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn failed_publications_are_logged_once_per_interval_with_the_count_left_out() {
        let log = super::FailureLog::default();
        let t0 = std::time::Instant::now();
        assert_eq!(log.due(t0), Some(0));
        for ms in [1, 10, 999] {
            assert_eq!(log.due(t0 + std::time::Duration::from_millis(ms)), None);
        }
        assert_eq!(
            log.due(t0 + std::time::Duration::from_millis(1000)),
            Some(3)
        );
        assert_eq!(log.due(t0 + std::time::Duration::from_millis(1001)), None);
    }

    use super::*;

    #[test]
    fn hashes_are_lowercase_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn coalesce_keeps_the_last_publication_of_an_entity_with_every_reply() {
        let de: EntityName = "country:DE".parse().unwrap();
        let fr: EntityName = "country:FR".parse().unwrap();
        let mut receivers = Vec::new();
        let publications = [(&de, "1"), (&fr, "2"), (&de, "3")]
            .into_iter()
            .map(|(entity, content)| {
                let (tx, rx) = oneshot::channel();
                receivers.push(rx);
                (Publish::new(entity.clone(), content), tx)
            })
            .collect();
        let pending = coalesce(publications);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].publish.entity, de);
        assert_eq!(pending[0].publish.content, b"3");
        assert_eq!(pending[0].hash, content_hash(b"3"));
        assert_eq!(pending[0].replies.len(), 2);
        assert_eq!(pending[1].replies.len(), 1);
    }
}
