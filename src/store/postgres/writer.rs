//! The writer task: group commit, one statement per batch.
//!
//! # Group commit
//! Every write is a message on one channel, so the channel's order is the
//! order changes apply in. The task waits for the first message, takes
//! whatever else is queued (up to the batch limit) and folds the journal
//! writes among it into one [`Fold`]: the last put of each task, the
//! reports that no put in the batch overwrites (one per task and run), the
//! last change of each manifest entry. The fold goes out as a single
//! statement (`BATCH`: data-modifying CTEs over `unnest`ed arrays), which
//! PostgreSQL runs as one transaction, one round trip and one WAL flush
//! for the whole batch. Only then are its callers answered.
//!
//! Folding keeps the result of applying the changes one by one: a put
//! replaces the whole record, so an earlier put or report of the same task
//! is overwritten anyway (unless the earlier put holds a later claim: the
//! fencing rule of the upsert applies between the puts of a batch too); a report after a put is applied to the put's row
//! in memory, under the same rule the stored row would apply it (running
//! or canceling, same run token); the remaining reports touch tasks the
//! batch does not put, so their order against the puts does not matter.
//! `Delete` and `Prune` read what is stored, so they end the fold: what
//! came before commits first, then they run alone. So do task log lines
//! (one statement per append; the daemon appends a few times a second).
//!
//! A new [`Change`] variant gets an arm in [`Fold::add`]; one that cannot
//! be folded ends the fold like `Delete`.
//!
//! # Failure
//! A write whose values PostgreSQL cannot hold (a number beyond `bigint`)
//! fails alone, before it joins the batch. A batch that fails (connection
//! lost, server restarting) changed nothing, and every caller in it gets
//! [`StoreError::Backend`]. After a connection failure the writer waits
//! ([`Backoff`]) before it connects again; writes meanwhile fail at once
//! with the last error, and when the wait is over the writer probes the
//! server itself (`SELECT 1`), so that [`Health`], which keeps the last
//! outcome for `TaskStore::writable`, recovers without waiting for a write.
//!
//! # Shutdown
//! The task stops at a [`Message::Close`] (sent when the store is dropped),
//! after committing everything queued before it, or when every sender is
//! gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use groundcrew_actors::{
    Change, ManifestChange, Retention, StoreError, TaskId, TaskLogLine, Timestamp,
};
use tokio::sync::{mpsc, oneshot};

use super::connection::Backoff;
use super::node::NodeLock;
use super::rows::{
    self, ArtifactColumns, ArtifactRow, MergeColumns, MergeRow, ReportColumns, ReportRow,
    TaskColumns, TaskRow,
};

/// The outcome of the last commit, shared with the store's handle.
#[derive(Debug, Default)]
pub(super) struct Health {
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// Where an operation's outcome goes: tasks deleted for `Delete` and
/// `Prune`, 0 otherwise.
pub(super) type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// A write, in the order the store was asked for it.
#[derive(Debug)]
pub(super) enum Op {
    Tasks(Vec<Change>),
    Manifest(Vec<ManifestChange>),
    Delete(TaskId),
    Prune(Retention, Timestamp),
    /// Task log lines, one statement of their own (see `log.rs`).
    Log(Vec<TaskLogLine>),
}

/// What the writer task receives.
#[derive(Debug)]
pub(super) enum Message {
    Apply(Op, Reply),
    /// Commit what came before, then stop and say so.
    Close(oneshot::Sender<()>),
}

/// The batch statement. Reports, merges and puts touch disjoint tasks
/// (a report only a running task, a merge only a queued one), manifest
/// removals and puts disjoint entities (see [`Fold`]), so the order in
/// which PostgreSQL runs the CTEs does not matter.
const BATCH: &str = "
WITH reported AS (
    UPDATE groundcrew.tasks t
       SET stage = r.stage, progress_done = r.done, progress_total = r.total
      FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])
           AS r(id, run, stage, done, total)
     WHERE t.id = r.id AND t.run = r.run AND t.state IN ('running', 'canceling')
), merged_in AS (
    UPDATE groundcrew.tasks t
       SET merged = m.merged, priority = m.priority,
           triggers = coalesce(m.triggers, t.triggers), run_after = m.run_after
      FROM unnest($40::bigint[], $41::bigint[], $42::smallint[], $43::jsonb[],
                  $44::timestamptz[]) AS m(id, merged, priority, triggers, run_after)
     WHERE t.id = m.id AND t.state = 'queued'
), put AS (
    INSERT INTO groundcrew.tasks (id, kind, target, trigger, triggers, params, priority,
        pool, state, attempts, run, stage, progress_done, progress_total, result, error,
        errors, merged, waiting_behind, merged_into, created_at, started_at, finished_at,
        run_after, retry_of)
    SELECT * FROM unnest($6::bigint[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
        $11::jsonb[], $12::smallint[], $13::text[], $14::text[], $15::bigint[],
        $16::bigint[], $17::text[], $18::bigint[], $19::bigint[], $20::jsonb[],
        $21::text[], $22::jsonb[], $23::bigint[], $24::bigint[], $25::bigint[],
        $26::timestamptz[], $27::timestamptz[], $28::timestamptz[], $29::timestamptz[],
        $38::bigint[])
    ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, target = excluded.target,
        trigger = excluded.trigger, triggers = excluded.triggers, params = excluded.params,
        priority = excluded.priority, pool = excluded.pool, state = excluded.state,
        attempts = excluded.attempts, run = excluded.run, stage = excluded.stage,
        progress_done = excluded.progress_done, progress_total = excluded.progress_total,
        result = excluded.result, error = excluded.error, errors = excluded.errors,
        merged = excluded.merged, waiting_behind = excluded.waiting_behind,
        merged_into = excluded.merged_into, created_at = excluded.created_at,
        started_at = excluded.started_at, finished_at = excluded.finished_at,
        run_after = excluded.run_after, retry_of = excluded.retry_of,
        node = CASE WHEN excluded.state IN ('running', 'canceling')
                    THEN groundcrew.tasks.node END,
        lease_expires_at = CASE WHEN excluded.state IN ('running', 'canceling')
                                THEN groundcrew.tasks.lease_expires_at END
    -- Fencing: a put from an older claim than the stored one is dropped;
    -- on a cluster ($39 names this node) a put of the current claim only
    -- while this node holds its lease.
    WHERE groundcrew.tasks.run IS NULL OR excluded.run > groundcrew.tasks.run
       OR (excluded.run = groundcrew.tasks.run AND ($39::text IS NULL
           OR (groundcrew.tasks.node = $39 AND groundcrew.tasks.lease_expires_at > now()
               AND groundcrew.tasks.state IN ('running', 'canceling'))))
), removed AS (
    DELETE FROM groundcrew.manifest WHERE entity = ANY($30::text[])
), published AS (
    INSERT INTO groundcrew.manifest (entity, hash, size, written_at, source_version, task, run)
    SELECT * FROM unnest($31::text[], $32::text[], $33::bigint[], $34::timestamptz[],
        $35::text[], $36::bigint[], $37::bigint[])
    ON CONFLICT (entity) DO UPDATE SET hash = excluded.hash, size = excluded.size,
        written_at = excluded.written_at, source_version = excluded.source_version,
        task = excluded.task, run = excluded.run
), woke AS (
    -- On a cluster, an ended run may let another node's follow-up run:
    -- wake the nodes (delivered at commit).
    SELECT pg_notify('groundcrew_tasks', ended.pool)
      FROM (SELECT DISTINCT e.pool FROM unnest($13::text[], $14::text[]) AS e(pool, state)
             WHERE $39::text IS NOT NULL AND e.state NOT IN ('running', 'canceling')) ended
)
SELECT (SELECT count(*) FROM woke)";

const DELETE: &str = "DELETE FROM groundcrew.tasks WHERE id = $1 AND category <> 'pending'";
const PRUNE_BY_AGE: &str =
    "DELETE FROM groundcrew.tasks WHERE finished_at < $1 AND category <> 'pending'";
const PRUNE_BY_COUNT: &str = "DELETE FROM groundcrew.tasks WHERE id IN (
    SELECT id FROM groundcrew.tasks WHERE category <> 'pending' ORDER BY id DESC OFFSET $1)";

/// Many journal writes as one batch, with the result of applying them in
/// order.
#[derive(Debug, Default)]
struct Fold {
    puts: Vec<TaskRow>,
    /// Index in `puts` by task id.
    put_at: HashMap<i64, usize>,
    /// Reports for tasks not put in this batch, the last one per run.
    reports: HashMap<i64, Vec<ReportRow>>,
    /// Merges into tasks not put in this batch, the last one per task.
    merges: HashMap<i64, MergeRow>,
    /// The last change per manifest entity (`None`: removed).
    artifacts: HashMap<String, Option<ArtifactRow>>,
    waiters: Vec<Reply>,
}

/// One change, converted and checked, ready to fold.
enum Folded {
    Put(Box<TaskRow>),
    Report(ReportRow),
    Merge(MergeRow),
    Artifact(String, Option<ArtifactRow>),
}

impl Fold {
    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Folds one write in; a write with a value that cannot be stored
    /// fails alone and joins nothing.
    fn add(&mut self, op: Op, reply: Reply) {
        let converted: Result<Vec<Folded>, StoreError> = match &op {
            Op::Tasks(changes) => changes
                .iter()
                .map(|change| match change {
                    Change::Put(record) => TaskRow::new(record).map(|r| Folded::Put(Box::new(r))),
                    Change::Report {
                        id,
                        run,
                        stage,
                        progress,
                    } => ReportRow::new(*id, *run, stage, progress).map(Folded::Report),
                    Change::Merge {
                        id,
                        merged,
                        priority,
                        triggers,
                        run_after,
                    } => MergeRow::new(*id, *merged, *priority, triggers.as_deref(), *run_after)
                        .map(Folded::Merge),
                })
                .collect(),
            Op::Manifest(changes) => changes
                .iter()
                .map(|change| match change {
                    ManifestChange::Put(record) => ArtifactRow::new(record)
                        .map(|row| Folded::Artifact(row.entity.clone(), Some(row))),
                    ManifestChange::Remove(entity) => {
                        Ok(Folded::Artifact(entity.as_str().to_owned(), None))
                    }
                })
                .collect(),
            Op::Delete(_) | Op::Prune(..) | Op::Log(_) => {
                unreachable!("deletes and log lines do not fold")
            }
        };
        match converted {
            Ok(changes) => {
                changes.into_iter().for_each(|c| self.apply(c));
                self.waiters.push(reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn apply(&mut self, change: Folded) {
        match change {
            Folded::Put(row) => {
                let row = *row;
                self.reports.remove(&row.id);
                self.merges.remove(&row.id);
                match self.put_at.get(&row.id) {
                    // The fencing rule of the upsert, between two puts of
                    // one batch: an older claim does not replace a later one.
                    Some(&i) if self.puts[i].fences(&row) => {}
                    Some(&i) => self.puts[i] = row,
                    None => {
                        self.put_at.insert(row.id, self.puts.len());
                        self.puts.push(row);
                    }
                }
            }
            Folded::Report(report) => match self.put_at.get(&report.id) {
                Some(&i) => self.puts[i].report(&report),
                None => {
                    let runs = self.reports.entry(report.id).or_default();
                    runs.retain(|r| r.run != report.run);
                    runs.push(report);
                }
            },
            // A merge after a put is applied to the put's row, as the
            // stored row would take it; otherwise the last one per task
            // goes out, keeping the triggers of an earlier one when it
            // added none.
            Folded::Merge(mut merge) => match self.put_at.get(&merge.id) {
                Some(&i) => self.puts[i].merge(&merge),
                None => {
                    if let Some(earlier) = self.merges.remove(&merge.id) {
                        if merge.triggers.is_none() {
                            merge.triggers = earlier.triggers;
                        }
                    }
                    self.merges.insert(merge.id, merge);
                }
            },
            Folded::Artifact(entity, row) => {
                self.artifacts.insert(entity, row);
            }
        }
    }
}

/// Owns the write path; runs as a task on the store's runtime.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) inbox: mpsc::UnboundedReceiver<Message>,
    pub(super) max_batch: usize,
    pub(super) commits: Arc<AtomicU64>,
    pub(super) health: Arc<Health>,
    pub(super) node: Arc<NodeLock>,
    /// This node's name once the store serves a cluster's shared queue.
    pub(super) cluster_node: Arc<std::sync::OnceLock<String>>,
    pub(super) target: String,
    pub(super) backoff: Backoff,
}

impl Writer {
    /// Serves batches until closed. While the connection is lost, probes
    /// the server when the backoff allows, so that `writable` recovers
    /// without waiting for the next write.
    pub(super) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let first = if self.backoff.failing() {
                tokio::select! {
                    message = self.inbox.recv() => message,
                    () = tokio::time::sleep(self.backoff.remaining()) => {
                        self.probe().await;
                        continue;
                    }
                }
            } else {
                self.inbox.recv().await
            };
            let Some(first) = first else {
                return;
            };
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.inbox.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            if self.serve(&mut batch).await {
                return;
            }
        }
    }

    /// Asks the server whether it answers again.
    async fn probe(&mut self) {
        let outcome = self
            .execute("probe", |client| async move {
                client.simple_query("SELECT 1").await.map(drop)
            })
            .await;
        match outcome {
            Ok(()) => tracing::info!(target = %self.target, "PostgreSQL answers again"),
            // Refused before trying (the node lock is not held): wait too.
            Err(_) if !self.backoff.waiting() => self.backoff.failed(),
            Err(_) => {}
        }
    }

    /// Commits a batch in order; `true` once a `Close` was served.
    async fn serve(&mut self, batch: &mut Vec<Message>) -> bool {
        let mut fold = Fold::default();
        for message in batch.drain(..) {
            match message {
                Message::Apply(op @ (Op::Tasks(_) | Op::Manifest(_)), reply) => {
                    fold.add(op, reply);
                }
                Message::Apply(op, reply) => {
                    self.commit(std::mem::take(&mut fold)).await;
                    let outcome = self.alone(op).await;
                    let _ = reply.send(outcome);
                }
                Message::Close(done) => {
                    self.commit(fold).await;
                    let _ = done.send(());
                    return true;
                }
            }
        }
        self.commit(fold).await;
        false
    }

    /// Commits a fold and answers its callers.
    async fn commit(&mut self, fold: Fold) {
        if fold.is_empty() {
            return;
        }
        let outcome = self.statement(&fold).await;
        if outcome.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        for waiter in fold.waiters {
            // A dropped receiver is a fire-and-forget write: fine.
            let _ = waiter.send(outcome.clone().map(|()| 0));
        }
    }

    /// Runs the batch statement for a fold.
    async fn statement(&mut self, fold: &Fold) -> Result<(), StoreError> {
        let mut tasks = TaskColumns::default();
        fold.puts.iter().cloned().for_each(|r| tasks.push(r));
        let mut reports = ReportColumns::default();
        fold.reports
            .values()
            .flatten()
            .cloned()
            .for_each(|r| reports.push(r));
        let mut merges = MergeColumns::default();
        fold.merges.values().cloned().for_each(|m| merges.push(m));
        let mut removed = Vec::new();
        let mut artifacts = ArtifactColumns::default();
        for (entity, row) in &fold.artifacts {
            match row {
                Some(row) => artifacts.push(row.clone()),
                None => removed.push(entity.clone()),
            }
        }
        let (r, t, a, m) = (&reports, &tasks, &artifacts, &merges);
        let node = self.cluster_node.get().cloned();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 44] = [
            &r.id,
            &r.run,
            &r.stage,
            &r.done,
            &r.total,
            &t.id,
            &t.kind,
            &t.target,
            &t.trigger,
            &t.triggers,
            &t.params,
            &t.priority,
            &t.pool,
            &t.state,
            &t.attempts,
            &t.run,
            &t.stage,
            &t.progress_done,
            &t.progress_total,
            &t.result,
            &t.error,
            &t.errors,
            &t.merged,
            &t.waiting_behind,
            &t.merged_into,
            &t.created_at,
            &t.started_at,
            &t.finished_at,
            &t.run_after,
            &removed,
            &a.entity,
            &a.hash,
            &a.size,
            &a.written_at,
            &a.source_version,
            &a.task,
            &a.run,
            &t.retry_of,
            &node,
            &m.id,
            &m.merged,
            &m.priority,
            &m.triggers,
            &m.run_after,
        ];
        self.execute("journal batch", |client| async move {
            let statement = client.prepare_cached(BATCH).await?;
            client.execute(&statement, &params).await.map(drop)
        })
        .await
    }

    /// Runs a delete or prune on its own; returns how many tasks went.
    async fn alone(&mut self, op: Op) -> Result<u64, StoreError> {
        match op {
            Op::Delete(id) => {
                let id = i64::try_from(id.0).unwrap_or(i64::MAX);
                self.execute("delete", |client| async move {
                    let statement = client.prepare_cached(DELETE).await?;
                    client.execute(&statement, &[&id]).await
                })
                .await
            }
            Op::Prune(retention, now) => {
                let cutoff = retention.max_age_s.map(|age| {
                    let ms = now.as_millis().saturating_sub(age.saturating_mul(1000));
                    rows::time(Timestamp(ms))
                });
                let keep = retention
                    .max_count
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
                self.execute("prune", |mut client| async move {
                    let tx = client.transaction().await?;
                    let mut removed = 0;
                    if let Some(cutoff) = cutoff {
                        removed += tx.execute(PRUNE_BY_AGE, &[&cutoff]).await?;
                    }
                    if let Some(keep) = keep {
                        removed += tx.execute(PRUNE_BY_COUNT, &[&keep]).await?;
                    }
                    tx.commit().await?;
                    Ok(removed)
                })
                .await
            }
            Op::Log(lines) => {
                let columns = super::log::LogColumns::new(&lines)?;
                self.execute("task log append", |client| async move {
                    columns.append(&client).await
                })
                .await
            }
            Op::Tasks(_) | Op::Manifest(_) => unreachable!("journal writes fold"),
        }
    }

    /// Gets a connection and runs `work` on it, minding the backoff and the
    /// node lock, and records the outcome in [`Health`].
    async fn execute<T, F, Fut>(&mut self, what: &str, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        if let Some(refusal) = self.node.refusal() {
            self.health.set(Some(refusal.clone()));
            return Err(StoreError::Backend(refusal));
        }
        if self.backoff.waiting() {
            let error = self
                .health
                .last_error()
                .unwrap_or_else(|| format!("PostgreSQL {} is unreachable; retrying", self.target));
            return Err(StoreError::Backend(error));
        }
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(e) => return Err(self.failed(what, &e, true)),
        };
        let closed = client.is_closed();
        match work(client).await {
            Ok(value) => {
                self.backoff.succeeded();
                self.health.set(None);
                Ok(value)
            }
            // Errors without a database error code are the connection's.
            Err(e) => {
                let lost = closed || e.as_db_error().is_none();
                Err(self.failed(what, &e, lost))
            }
        }
    }

    fn failed(&mut self, what: &str, e: &dyn std::error::Error, lost: bool) -> StoreError {
        let message = format!(
            "{what} on PostgreSQL {} failed: {}",
            self.target,
            crate::entities::error_chain(e)
        );
        tracing::error!(error = %message, "task store write failed");
        if lost {
            self.backoff.failed();
        }
        self.health.set(Some(message.clone()));
        StoreError::Backend(message)
    }
}
