//! The writer thread: the one connection that writes, and group commit.
//!
//! # Group commit
//! Every write is a message on one channel, so the channel's order is the
//! order changes are applied in. The thread blocks for the first message,
//! then takes whatever else is already queued (up to the batch limit),
//! applies it all in one transaction and commits: one WAL sync for the whole
//! batch. Only then does it answer the waiters. A sync costs 0.15–0.7 ms, so
//! a sync per write caps the store at a few thousand writes per second; a
//! batch of hundreds shares that cost.
//!
//! # Failure
//! A message that fails (a coalescing conflict, a bad value) is rolled back
//! alone and its waiter gets the error: the batch is redone with each
//! message in its own savepoint, and the rest of it still commits, so one
//! caller's bad write never takes down another's fire-and-forget progress
//! report. If the transaction itself fails (I/O error, disk full), every
//! waiter in the batch gets the error. Either way the thread keeps serving.
//!
//! Before every commit the writer checks that the database (and its WAL)
//! is still the file it opened, and that the ids the batch stores are
//! covered by the id reservation (see `guard.rs`); a batch that fails
//! either check fails whole, and [`Health`] remembers the last outcome for
//! `TaskStore::writable`. A batch that changes nothing (the supervisor's
//! probe while writes fail) still writes one row, so that it answers
//! whether the store takes writes now.
//!
//! # Shutdown
//! The thread stops at a [`Message::Close`] (sent when the store is
//! dropped), after committing everything queued before it, or when every
//! sender is gone.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use groundcrew_actors::{
    Change, ManifestChange, Retention, StoreError, TaskId, TaskLogLine, TaskRecord, Timestamp,
};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::guard::{IdReservation, OpenedFiles};
use super::rows;

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

    fn set(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// Why a batch could not be committed.
#[derive(Debug)]
enum CommitError {
    Sqlite(rusqlite::Error),
    /// The database file is gone or another file now.
    File(String),
    /// The id reservation could not be extended.
    Ids(PathBuf, std::io::Error),
}

impl From<rusqlite::Error> for CommitError {
    fn from(e: rusqlite::Error) -> Self {
        CommitError::Sqlite(e)
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::Sqlite(e) => write!(f, "{e}"),
            CommitError::File(message) => f.write_str(message),
            CommitError::Ids(path, e) => {
                write!(
                    f,
                    "cannot extend the id reservation {}: {e}",
                    path.display()
                )
            }
        }
    }
}

/// Where an operation's outcome goes: rows affected (tasks deleted for
/// `Delete` and `Prune`, unused otherwise), once its batch is durable.
pub(super) type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// A write, in the order the store was asked for it.
#[derive(Debug)]
pub(super) enum Op {
    Tasks(Vec<Change>),
    Manifest(Vec<ManifestChange>),
    Delete(TaskId),
    Prune(Retention, Timestamp),
    /// Task log lines (see `log.rs`).
    Log(Vec<TaskLogLine>),
}

impl Op {
    /// Whether it changes nothing (an empty task or manifest write).
    fn is_empty(&self) -> bool {
        match self {
            Op::Tasks(changes) => changes.is_empty(),
            Op::Manifest(changes) => changes.is_empty(),
            Op::Log(lines) => lines.is_empty(),
            Op::Delete(_) | Op::Prune(..) => false,
        }
    }
}

/// What the writer thread receives.
#[derive(Debug)]
pub(super) enum Message {
    Apply(Op, Reply),
    /// Commit what came before, then stop.
    Close,
}

/// Owns the write connection; runs on its own thread.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) inbox: Receiver<Message>,
    pub(super) max_batch: usize,
    pub(super) commits: Arc<AtomicU64>,
    pub(super) path: PathBuf,
    pub(super) opened: OpenedFiles,
    pub(super) ids: IdReservation,
    pub(super) health: Arc<Health>,
}

impl Writer {
    /// Serves batches until closed.
    pub(super) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Ok(first) = self.inbox.recv() {
            let mut closing = false;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Apply(op, reply) => batch.push((op, reply)),
                    Message::Close => {
                        closing = true;
                        break;
                    }
                }
                next = if batch.len() < self.max_batch {
                    self.inbox.try_recv().ok()
                } else {
                    None
                };
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if closing {
                break;
            }
        }
    }

    /// Applies and commits one batch, then answers (and empties) it.
    fn commit(&mut self, batch: &mut Vec<(Op, Reply)>) {
        let applied = match self.opened.check() {
            Ok(()) => self.apply(batch),
            Err(gone) => Err(CommitError::File(gone)),
        };
        match applied {
            Ok(outcomes) => {
                // A write that failed alone on a backend error (a full disk
                // inside a savepoint) still means the store cannot write.
                let failed = outcomes.iter().find_map(|o| match o {
                    Err(StoreError::Backend(e)) => Some(e.clone()),
                    _ => None,
                });
                self.health.set(failed);
                self.commits.fetch_add(1, Ordering::Relaxed);
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    // A dropped receiver is a fire-and-forget write: fine.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, size = batch.len(),
                    "task store batch failed");
                let error = match &e {
                    CommitError::File(message) => message.clone(),
                    e => format!("commit to {} failed: {e}", self.path.display()),
                };
                self.health.set(Some(error.clone()));
                let error = StoreError::Backend(error);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Applies the batch in one transaction. Failures are rare (a conflict
    /// is a runtime bug), so the batch first runs without savepoints, which
    /// halves the cost per write; if an op fails, that attempt is rolled
    /// back whole and the batch runs again with each op in a savepoint.
    fn apply(
        &mut self,
        batch: &[(Op, Reply)],
    ) -> Result<Vec<Result<u64, StoreError>>, CommitError> {
        match self.try_apply(batch, false)? {
            Some(outcomes) => Ok(outcomes),
            // Isolating never gives up, so this is always `Some`.
            None => Ok(self.try_apply(batch, true)?.unwrap_or_default()),
        }
    }

    /// One transaction for the batch. Without `isolate`, gives up (`None`,
    /// nothing committed) at the first op that fails.
    fn try_apply(
        &mut self,
        batch: &[(Op, Reply)],
        isolate: bool,
    ) -> Result<Option<Vec<Result<u64, StoreError>>>, CommitError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut high = 0;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (op, _) in batch {
            let outcome = if isolate {
                isolated(&tx, op, &mut high)?
            } else {
                apply_op(&tx, op, &mut high)
            };
            if outcome.is_err() && !isolate {
                // Dropping the transaction rolls it back.
                return Ok(None);
            }
            outcomes.push(outcome);
        }
        if high > 0 {
            self.ids
                .cover(high)
                .map_err(|e| CommitError::Ids(self.ids.path().to_owned(), e))?;
            tx.prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE key = 'next_id'")?
                .execute([high + 1])?;
        }
        if batch.iter().all(|(op, _)| op.is_empty()) {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('probes', 1)
                 ON CONFLICT (key) DO UPDATE SET value = value + 1",
            )?
            .execute([])?;
        }
        tx.commit()?;
        Ok(Some(outcomes))
    }
}

/// Runs one op in a savepoint: on failure only its own changes are undone.
/// The outer error is for failures of the transaction itself.
fn isolated(
    conn: &Connection,
    op: &Op,
    high: &mut u64,
) -> rusqlite::Result<Result<u64, StoreError>> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let outcome = apply_op(conn, op, high);
    if outcome.is_err() {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    Ok(outcome)
}

fn apply_op(conn: &Connection, op: &Op, high: &mut u64) -> Result<u64, StoreError> {
    match op {
        Op::Tasks(changes) => {
            for change in changes {
                apply_change(conn, change, high)?;
            }
            Ok(0)
        }
        Op::Manifest(changes) => {
            for change in changes {
                match change {
                    ManifestChange::Put(record) => rows::put_artifact(conn, record),
                    ManifestChange::Remove(entity) => conn
                        .prepare_cached("DELETE FROM manifest WHERE entity = ?1")
                        .and_then(|mut s| s.execute([entity.as_str()]))
                        .map(drop),
                }
                .map_err(|e| backend(&format!("manifest entry {}", entity_of(change)), e))?;
            }
            Ok(0)
        }
        Op::Delete(id) => conn
            .prepare_cached(
                "DELETE FROM tasks WHERE id = ?1 AND state NOT IN ('queued', 'running', 'canceling')",
            )
            .and_then(|mut s| s.execute([id.0]))
            .map(|n| n as u64)
            .map_err(|e| backend(&format!("delete of task {id}"), e)),
        Op::Prune(retention, now) => prune(conn, *retention, *now).map_err(|e| backend("prune", e)),
        Op::Log(lines) => super::log::append(conn, lines)
            .map(|()| 0)
            .map_err(|e| backend("task log append", e)),
    }
}

fn apply_change(conn: &Connection, change: &Change, high: &mut u64) -> Result<(), StoreError> {
    match change {
        Change::Put(task) => {
            *high = (*high).max(task.id.0);
            rows::put_task(conn, task).map_err(|e| put_error(task, e))
        }
        Change::Merge {
            id,
            merged,
            priority,
            triggers,
            run_after,
        } => rows::merge_task(
            conn,
            *id,
            *merged,
            *priority,
            triggers.as_deref(),
            *run_after,
        )
        .map_err(|e| backend(&format!("merge into task {id}"), e)),
        Change::Report {
            id,
            run,
            stage,
            progress,
        } => conn
            .prepare_cached(
                "UPDATE tasks SET stage = ?3, progress_done = ?4, progress_total = ?5
                 WHERE id = ?1 AND run = ?2 AND state IN ('running', 'canceling')",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.0,
                    run.0,
                    stage,
                    progress.map(|p| p.done),
                    progress.map(|p| p.total),
                ])
            })
            .map(drop)
            .map_err(|e| backend(&format!("report for task {id}"), e)),
    }
}

/// Deletes terminal tasks past the age limit, then beyond the newest
/// `max_count` (by id, the order history pages use).
fn prune(conn: &Connection, retention: Retention, now: Timestamp) -> rusqlite::Result<u64> {
    let mut removed = 0;
    if let Some(age) = retention.max_age_s {
        let cutoff = now.as_millis().saturating_sub(age.saturating_mul(1000));
        removed += conn
            .prepare_cached(
                "DELETE FROM tasks WHERE finished_at < ?1 AND state NOT IN ('queued', 'running', 'canceling')",
            )?
            .execute([cutoff])?;
    }
    if let Some(count) = retention.max_count {
        removed += conn
            .prepare_cached(
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks
                     WHERE state NOT IN ('queued', 'running', 'canceling') ORDER BY id DESC
                     LIMIT -1 OFFSET ?1)",
            )?
            .execute([i64::try_from(count).unwrap_or(i64::MAX)])?;
    }
    Ok(removed as u64)
}

/// A refused put: a unique-index violation is a second queued, follow-up or
/// running task for the same coalescing key.
fn put_error(task: &TaskRecord, e: rusqlite::Error) -> StoreError {
    let unique = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
    if matches!(e.sqlite_error(), Some(f) if f.extended_code == unique) {
        let role = match (task.state.as_str(), task.waiting_behind) {
            ("queued", Some(_)) => "queued follow-up",
            (state, _) => state,
        };
        StoreError::Conflict(format!(
            "task {} (kind {:?}, target {}): another {role} task holds that key ({e})",
            task.id, task.kind, task.target
        ))
    } else {
        backend(&format!("write of task {}", task.id), e)
    }
}

fn entity_of(change: &ManifestChange) -> &str {
    match change {
        ManifestChange::Put(record) => record.entity.as_str(),
        ManifestChange::Remove(entity) => entity.as_str(),
    }
}

fn backend(what: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("{what} failed: {e}"))
}
