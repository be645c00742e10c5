//! [`ArtifactSink`] on PostgreSQL, for `artifacts.sink: postgres`: every
//! node of a cluster publishes to, and reads from, table
//! `groundcrew.artifacts`.
//!
//! A batch is one transaction under a transaction-level advisory lock for
//! the sink, so publication stays serialized cluster-wide. Each artifact's
//! content and its manifest row are written in that transaction, and only
//! if the publishing run still holds its task: the task's stored run is the
//! artifact's, and (on a cluster node) the task is held by this node with
//! an unexpired lease; a removal from a task's run is fenced the same way.
//! The task row is locked `FOR KEY SHARE` until commit, so a rescue (which
//! takes rows `FOR UPDATE SKIP LOCKED`) cannot move it in between, while
//! the journal's and the heartbeat's updates (which change no key) neither
//! wait for it nor deadlock with it. A refused artifact or removal is
//! answered [`SinkError::StaleRun`]; the entity writer counts it as a
//! stale publish or removal. The manifest row is written
//! again by the writer afterwards (with the source version), which changes
//! nothing but that column.

use groundcrew_actors::{
    Artifact, ArtifactSink, EntityName, RunToken, SinkError, StoreError, TaskId,
};

use super::PostgresStore;

/// Bounds on one publication transaction's waits.
const PUBLISH_TIMEOUTS: &str =
    "SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = '60s'";

/// Transaction-level advisory lock key for publication ("gcrwsink").
const SINK_LOCK: i64 = 0x6763_7277_7369_6e6b;

/// Writes an artifact from no task execution (`$4`, `$5` unused).
const PUT_UNFENCED: &str = "
WITH art AS (
    INSERT INTO groundcrew.artifacts (entity, content, hash, size, written_at, task, run)
    VALUES ($1, $2, $3, $4, now(), NULL, NULL)
    ON CONFLICT (entity) DO UPDATE SET content = EXCLUDED.content, hash = EXCLUDED.hash,
        size = EXCLUDED.size, written_at = EXCLUDED.written_at, task = NULL, run = NULL
    RETURNING entity)
INSERT INTO groundcrew.manifest (entity, hash, size, written_at, task, run)
SELECT entity, $3, $4, now(), NULL, NULL FROM art
ON CONFLICT (entity) DO UPDATE SET hash = EXCLUDED.hash, size = EXCLUDED.size,
    written_at = EXCLUDED.written_at, task = NULL, run = NULL
RETURNING entity";

/// Writes an artifact only while run `$6` of task `$5` holds its claim (on
/// node `$7`, with an unexpired lease, when `$7` is not NULL).
const PUT_FENCED: &str = "
WITH allowed AS (
    SELECT t.id FROM groundcrew.tasks t
     WHERE t.id = $5 AND t.run = $6 AND t.state IN ('running', 'canceling')
       AND ($7::text IS NULL OR (t.node = $7 AND t.lease_expires_at > now()))
       FOR KEY SHARE),
art AS (
    INSERT INTO groundcrew.artifacts (entity, content, hash, size, written_at, task, run)
    SELECT $1, $2, $3, $4, now(), $5, $6 FROM allowed
    ON CONFLICT (entity) DO UPDATE SET content = EXCLUDED.content, hash = EXCLUDED.hash,
        size = EXCLUDED.size, written_at = EXCLUDED.written_at, task = EXCLUDED.task,
        run = EXCLUDED.run
    RETURNING entity)
INSERT INTO groundcrew.manifest (entity, hash, size, written_at, task, run)
SELECT entity, $3, $4, now(), $5, $6 FROM art
ON CONFLICT (entity) DO UPDATE SET hash = EXCLUDED.hash, size = EXCLUDED.size,
    written_at = EXCLUDED.written_at, task = EXCLUDED.task, run = EXCLUDED.run
RETURNING entity";

/// Whether run `$2` of task `$1` holds its claim (on node `$3`, with an
/// unexpired lease, when `$3` is not NULL), as [`PUT_FENCED`] checks it;
/// the row stays locked `FOR KEY SHARE` until commit.
const HOLDS_TASK: &str = "
SELECT t.id FROM groundcrew.tasks t
 WHERE t.id = $1 AND t.run = $2 AND t.state IN ('running', 'canceling')
   AND ($3::text IS NULL OR (t.node = $3 AND t.lease_expires_at > now()))
   FOR KEY SHARE";

/// A task id or run token as PostgreSQL's bigint.
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn backend(what: &'static str) -> impl Fn(StoreError) -> SinkError {
    move |e| SinkError::Backend {
        what,
        message: e.to_string(),
    }
}

impl PostgresStore {
    /// The stored content of an entity's artifact, as every node serves it.
    pub fn artifact_content(
        &self,
        entity: &EntityName,
    ) -> futures::future::BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let entity = entity.as_str().to_owned();
        self.read("artifact read", move |client| async move {
            let statement = client
                .prepare_cached("SELECT content FROM groundcrew.artifacts WHERE entity = $1")
                .await?;
            let found = client.query_opt(&statement, &[&entity]).await?;
            Ok(found.map(|row| row.try_get(0)).transpose()?)
        })
    }

    /// The SHA-256 (as [`content_hash`](groundcrew_actors::content_hash)
    /// writes it) of every stored artifact's content, by entity, hashed by
    /// the server: what the integrity check compares with the manifest.
    pub fn artifact_hashes(
        &self,
    ) -> futures::future::BoxFuture<
        'static,
        Result<std::collections::HashMap<String, String>, StoreError>,
    > {
        self.read("artifact hashes", |client| async move {
            let statement = client
                .prepare_cached(
                    "SELECT entity, encode(sha256(content), 'hex') FROM groundcrew.artifacts",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
    }

    /// Publishes a batch in one transaction; `Ok(true)` per artifact written,
    /// `Ok(false)` per artifact refused by the fence.
    fn publish_batch(&self, batch: &[Artifact]) -> Result<Vec<bool>, StoreError> {
        let rows: Vec<_> = batch
            .iter()
            .map(|a| {
                (
                    a.entity.as_str().to_owned(),
                    a.content.clone(),
                    groundcrew_actors::content_hash(&a.content),
                    a.content.len() as i64,
                    a.source.map(|(task, run)| (bigint(task.0), bigint(run.0))),
                )
            })
            .collect();
        let node = self.cluster_node.get().cloned();
        futures::executor::block_on(self.read("artifact publish", move |mut client| async move {
            let tx = client.transaction().await?;
            // A publication that cannot get its locks fails (and is
            // retried) rather than hold the writer forever.
            tx.batch_execute(PUBLISH_TIMEOUTS).await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SINK_LOCK])
                .await?;
            let unfenced = tx.prepare_cached(PUT_UNFENCED).await?;
            let fenced = tx.prepare_cached(PUT_FENCED).await?;
            let mut written = Vec::with_capacity(rows.len());
            for (entity, content, hash, size, source) in &rows {
                let done = match source {
                    None => {
                        tx.execute(&unfenced, &[entity, content, hash, size])
                            .await?
                    }
                    Some((task, run)) => {
                        tx.execute(&fenced, &[entity, content, hash, size, task, run, &node])
                            .await?
                    }
                };
                written.push(done == 1);
            }
            tx.commit().await?;
            Ok(written)
        }))
    }
}

impl ArtifactSink for PostgresStore {
    fn publish(&self, batch: &[Artifact]) -> Vec<Result<(), SinkError>> {
        match self.publish_batch(batch) {
            Ok(written) => batch
                .iter()
                .zip(written)
                .map(|(artifact, written)| match (written, artifact.source) {
                    (true, _) | (false, None) => Ok(()),
                    (false, Some((task, run))) => Err(SinkError::StaleRun {
                        entity: artifact.entity.clone(),
                        task,
                        run,
                    }),
                })
                .collect(),
            Err(e) => {
                let e = backend("publish")(e);
                batch.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }

    fn remove(&self, entity: &EntityName) -> Result<bool, SinkError> {
        self.remove_from(entity, None)
    }

    fn remove_from(
        &self,
        entity: &EntityName,
        source: Option<(TaskId, RunToken)>,
    ) -> Result<bool, SinkError> {
        let name = entity.as_str().to_owned();
        let fence = source.map(|(task, run)| (bigint(task.0), bigint(run.0)));
        let node = self.cluster_node.get().cloned();
        let removed = futures::executor::block_on(self.read(
            "artifact removal",
            move |mut client| async move {
                let tx = client.transaction().await?;
                // A removal that cannot get its locks fails (and is
                // retried) rather than hold the writer forever.
                tx.batch_execute(PUBLISH_TIMEOUTS).await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SINK_LOCK])
                    .await?;
                if let Some((task, run)) = fence {
                    let held = tx.query_opt(HOLDS_TASK, &[&task, &run, &node]).await?;
                    if held.is_none() {
                        return Ok(None);
                    }
                }
                let removed = tx
                    .execute(
                        "DELETE FROM groundcrew.artifacts WHERE entity = $1",
                        &[&name],
                    )
                    .await?;
                tx.commit().await?;
                Ok(Some(removed > 0))
            },
        ))
        .map_err(backend("remove"))?;
        match (removed, source) {
            (Some(removed), _) => Ok(removed),
            (None, Some((task, run))) => Err(SinkError::StaleRun {
                entity: entity.clone(),
                task,
                run,
            }),
            (None, None) => unreachable!("only a fenced removal is refused"),
        }
    }

    fn holds(&self, entity: &EntityName, content: &[u8]) -> Result<bool, SinkError> {
        let stored = futures::executor::block_on(self.artifact_content(entity))
            .map_err(backend("inspect"))?;
        Ok(stored.as_deref() == Some(content))
    }
}
