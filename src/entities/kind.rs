//! The `artifact` task kind: makes an entity's artifact what the feeds say
//! it should be, through the entity writer. For one entity it publishes
//! the expected content (the writer skips it when unchanged) or removes the
//! artifact of an entity no feed has; for `all` it does that for every
//! entity and removes every orphaned artifact.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use groundcrew_actors::{
    EntityName, PublishError, PublishOutcome, Target, Task, TaskContext, TaskError, TaskResult,
};
use serde_json::json;

use super::feeds::Feeds;

/// Publications in flight at once during a full rebuild: two of the
/// writer's largest batches, so that while it writes one the next is
/// already queued whole (with fewer, the writer starts each batch with
/// what the task has sent back so far, and batches stay small).
pub const IN_FLIGHT: usize = 2 * groundcrew_actors::BATCH_MAX_ITEMS;

/// The `artifact` kind over the daemon's feeds.
#[derive(Debug, Clone)]
pub struct ArtifactKind {
    feeds: Arc<Feeds>,
}

impl ArtifactKind {
    /// The kind, reading expected artifacts from `feeds`.
    pub fn new(feeds: Arc<Feeds>) -> Self {
        Self { feeds }
    }
}

#[derive(Default)]
struct Counts {
    written: u64,
    unchanged: u64,
    removed: u64,
}

impl Counts {
    fn json(&self) -> serde_json::Value {
        json!({"written": self.written, "unchanged": self.unchanged, "removed": self.removed})
    }
}

/// Publishes or removes one entity's artifact: `Some(true)` when written,
/// `Some(false)` when left as it was, `None` when removed. An artifact is
/// only removed while every feed is read, so that a feed failing to load
/// does not take its entities' artifacts with it.
async fn make_current(
    ctx: &TaskContext,
    feeds: &Feeds,
    entity: EntityName,
) -> Result<Option<bool>, TaskError> {
    // Content and version from one reading: a version taken at the start
    // of a rebuild would be recorded with content read later.
    match feeds.current(&entity) {
        (Some(content), version) => {
            let outcome = ctx
                .publish(entity, content, Some(version))
                .await
                .map_err(publish_failure)?;
            Ok(Some(matches!(outcome, PublishOutcome::Written(_))))
        }
        (None, _) if feeds.complete() => {
            ctx.remove(entity).await.map_err(publish_failure)?;
            Ok(None)
        }
        (None, _) => {
            tracing::warn!(%entity, "not removing the artifact: a configured feed has not been read");
            Ok(Some(false))
        }
    }
}

/// A publication failure as a task error: retried with backoff when the
/// writer says trying again may succeed (I/O, manifest errors).
fn publish_failure(e: PublishError) -> TaskError {
    let message = crate::entities::feeds::error_chain(&e);
    if e.is_retryable() {
        TaskError::retryable(message)
    } else {
        TaskError::fatal(message)
    }
}

async fn rebuild_one(ctx: TaskContext, feeds: Arc<Feeds>, entity: EntityName) -> TaskResult {
    ctx.stage("publishing");
    let mut counts = Counts::default();
    match make_current(&ctx, &feeds, entity).await? {
        Some(true) => counts.written += 1,
        Some(false) => counts.unchanged += 1,
        None => counts.removed += 1,
    }
    Ok(counts.json())
}

async fn rebuild_all(ctx: TaskContext, feeds: Arc<Feeds>) -> TaskResult {
    ctx.stage("listing entities");
    let expected: Vec<EntityName> = feeds.all().into_iter().map(|(e, _)| e).collect();
    let wanted: BTreeSet<EntityName> = expected.iter().cloned().collect();
    // Read once: checked per manifest record it would take the catalog
    // lock and copy every feed's status for each of them.
    let complete = feeds.complete();
    let orphans: Vec<EntityName> = feeds
        .manifest()
        .artifacts()
        .await
        .map_err(|e| TaskError::retryable(format!("cannot read the manifest: {e}")))?
        .into_iter()
        .map(|r| r.entity)
        .filter(|e| complete && !wanted.contains(e))
        .collect();
    let total = (expected.len() + orphans.len()) as u64;
    let entities: Vec<EntityName> = expected.into_iter().chain(orphans).collect();
    ctx.stage("publishing");
    ctx.progress(0, total);
    let mut counts = Counts::default();
    let mut failures = Failures::default();
    let mut done = 0;
    let mut results = futures::stream::iter(entities)
        .map(|entity| {
            let (ctx, feeds) = (ctx.clone(), Arc::clone(&feeds));
            async move {
                ctx.checkpoint()?;
                let outcome = make_current(&ctx, &feeds, entity.clone()).await;
                Ok::<_, TaskError>((entity, outcome))
            }
        })
        .buffer_unordered(IN_FLIGHT);
    // One entity failing does not stop the others: the rebuild goes on and
    // reports the failures at its end.
    while let Some((entity, outcome)) = results.try_next().await? {
        match outcome {
            Ok(Some(true)) => counts.written += 1,
            Ok(Some(false)) => counts.unchanged += 1,
            Ok(None) => counts.removed += 1,
            Err(TaskError::Canceled) => return Err(TaskError::Canceled),
            Err(TaskError::Failed { message, retryable }) => {
                failures.add(entity, message, retryable)
            }
        }
        done += 1;
        ctx.progress(done, total);
    }
    match failures.into_error(total) {
        Some(error) => Err(error),
        None => Ok(counts.json()),
    }
}

/// The entities a full rebuild could not make current.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Vec<String>,
    retryable: bool,
}

/// Failed entities named in a rebuild's error.
const FAILURES_NAMED: usize = 5;

impl Failures {
    fn add(&mut self, entity: EntityName, message: String, retryable: bool) {
        self.count += 1;
        // Retried only if every failure may go away by trying again.
        self.retryable = retryable && (self.count == 1 || self.retryable);
        if self.first.len() < FAILURES_NAMED {
            self.first.push(format!("{entity}: {message}"));
        }
    }

    fn into_error(self, total: u64) -> Option<TaskError> {
        if self.count == 0 {
            return None;
        }
        let message = format!(
            "{} of {total} entities failed; first: {}",
            self.count,
            self.first.join("; ")
        );
        tracing::warn!(
            failed = self.count,
            total,
            "full rebuild ended with failed entities"
        );
        Some(TaskError::Failed {
            message,
            retryable: self.retryable,
        })
    }
}

impl Task for ArtifactKind {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, TaskResult> {
        let feeds = Arc::clone(&self.feeds);
        Box::pin(async move {
            match ctx.target().clone() {
                Target::Entity(entity) => rebuild_one(ctx, feeds, entity).await,
                Target::All => rebuild_all(ctx, feeds).await,
            }
        })
    }
}
