//! How records map to PostgreSQL rows and parameters: one column per field,
//! `jsonb` for the structured ones, `timestamptz` for times, `bigint` for
//! ids, counts and run tokens, the state as its name.
//!
//! Writes go out as columns (one array per field, unnested by the batch
//! statement, see `writer.rs`), so a batch of any size is one statement.
//! Values are converted before they join a batch: a number PostgreSQL's
//! `bigint` cannot hold fails that one write, not the batch it would have
//! joined.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use groundcrew_actors::{
    ArtifactRecord, EntityName, Priority, Progress, RunToken, StoreError, Target, TaskId,
    TaskRecord, TaskState, Timestamp, Trigger,
};
use serde_json::Value;
use tokio_postgres::Row;

use crate::store::state::parse_state;

/// The task columns in the order [`task_from_row`] reads them.
pub(super) const TASK_COLUMNS: &str = "id, kind, target, trigger, triggers, params, priority, \
     pool, state, attempts, run, stage, progress_done, progress_total, result, error, errors, \
     merged, waiting_behind, merged_into, created_at, started_at, finished_at, run_after, \
     retry_of";

/// The manifest columns in the order [`artifact_from_row`] reads them.
pub(super) const ARTIFACT_COLUMNS: &str =
    "entity, hash, size, written_at, source_version, task, run";

/// A task record as column values.
#[derive(Clone, Debug)]
pub(super) struct TaskRow {
    pub(super) id: i64,
    kind: String,
    target: String,
    trigger: String,
    triggers: Value,
    params: Value,
    priority: i16,
    pool: String,
    state: TaskState,
    attempts: i64,
    run: Option<i64>,
    stage: Option<String>,
    progress: Option<(i64, i64)>,
    result: Option<Value>,
    error: Option<String>,
    errors: Value,
    merged: i64,
    waiting_behind: Option<i64>,
    merged_into: Option<i64>,
    created_at: SystemTime,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    run_after: Option<SystemTime>,
    retry_of: Option<i64>,
}

impl TaskRow {
    /// Converts a record; fails on numbers beyond `bigint`.
    pub(super) fn new(t: &TaskRecord) -> Result<Self, StoreError> {
        let n = |what: &str, v: u64| big(&format!("task {} {what}", t.id), v);
        Ok(TaskRow {
            id: n("id", t.id.0)?,
            kind: t.kind.clone(),
            target: t.target.to_string(),
            trigger: t.trigger.as_str().to_owned(),
            triggers: to_json(&t.triggers),
            params: t.params.clone(),
            priority: t.priority.0,
            pool: t.pool.clone(),
            state: t.state,
            attempts: i64::from(t.attempts),
            run: t.run.map(|r| n("run token", r.0)).transpose()?,
            stage: t.stage.clone(),
            progress: t
                .progress
                .map(|p| Ok::<_, StoreError>((n("progress", p.done)?, n("progress", p.total)?)))
                .transpose()?,
            result: t.result.clone(),
            error: t.error.clone(),
            errors: to_json(&t.errors),
            merged: n("merged count", t.merged)?,
            waiting_behind: t.waiting_behind.map(|id| n("id", id.0)).transpose()?,
            merged_into: t.merged_into.map(|id| n("id", id.0)).transpose()?,
            created_at: time(t.created_at),
            started_at: t.started_at.map(time),
            finished_at: t.finished_at.map(time),
            run_after: t.run_after.map(time),
            retry_of: t.retry_of.map(|id| n("id", id.0)).transpose()?,
        })
    }

    /// Whether this row, stored, refuses `put`: it holds a later claim (a
    /// larger run token), as the batch upsert's `WHERE` decides.
    pub(super) fn fences(&self, put: &TaskRow) -> bool {
        self.run.is_some() && put.run.is_none_or(|run| Some(run) < self.run)
    }

    /// Applies a progress report the way the stored row would take it:
    /// only while running or canceling with the same run token.
    pub(super) fn report(&mut self, r: &ReportRow) {
        let live = matches!(self.state, TaskState::Running | TaskState::Canceling);
        if live && self.run == Some(r.run) {
            self.stage = r.stage.clone();
            self.progress = r.progress;
        }
    }
}

impl TaskRow {
    /// Applies a merge the way the stored row would take it: only while
    /// queued.
    pub(super) fn merge(&mut self, m: &MergeRow) {
        if self.state == TaskState::Queued {
            self.merged = m.merged;
            self.priority = m.priority;
            if let Some(triggers) = &m.triggers {
                self.triggers = triggers.clone();
            }
            self.run_after = m.run_after;
        }
    }
}

/// `Change::Merge` as column values.
#[derive(Clone, Debug)]
pub(super) struct MergeRow {
    pub(super) id: i64,
    merged: i64,
    priority: i16,
    /// `None`: unchanged.
    pub(super) triggers: Option<Value>,
    run_after: Option<SystemTime>,
}

impl MergeRow {
    pub(super) fn new(
        id: TaskId,
        merged: u64,
        priority: Priority,
        triggers: Option<&[Trigger]>,
        run_after: Option<Timestamp>,
    ) -> Result<Self, StoreError> {
        Ok(MergeRow {
            id: big("merge into task id", id.0)?,
            merged: big(&format!("task {id} merged count"), merged)?,
            priority: priority.0,
            triggers: triggers.map(|t| to_json(&t)),
            run_after: run_after.map(time),
        })
    }
}

/// Merge rows as one array per column.
#[derive(Debug, Default)]
pub(super) struct MergeColumns {
    pub(super) id: Vec<i64>,
    pub(super) merged: Vec<i64>,
    pub(super) priority: Vec<i16>,
    pub(super) triggers: Vec<Option<Value>>,
    pub(super) run_after: Vec<Option<SystemTime>>,
}

impl MergeColumns {
    pub(super) fn push(&mut self, m: MergeRow) {
        self.id.push(m.id);
        self.merged.push(m.merged);
        self.priority.push(m.priority);
        self.triggers.push(m.triggers);
        self.run_after.push(m.run_after);
    }
}

/// A progress report as column values.
#[derive(Clone, Debug)]
pub(super) struct ReportRow {
    pub(super) id: i64,
    pub(super) run: i64,
    stage: Option<String>,
    progress: Option<(i64, i64)>,
}

impl ReportRow {
    pub(super) fn new(
        id: TaskId,
        run: RunToken,
        stage: &Option<String>,
        progress: &Option<Progress>,
    ) -> Result<Self, StoreError> {
        let n = |v: u64| big(&format!("report for task {id}"), v);
        Ok(ReportRow {
            id: n(id.0)?,
            run: n(run.0)?,
            stage: stage.clone(),
            progress: progress
                .map(|p| Ok::<_, StoreError>((n(p.done)?, n(p.total)?)))
                .transpose()?,
        })
    }
}

/// An artifact record as column values.
#[derive(Clone, Debug)]
pub(super) struct ArtifactRow {
    pub(super) entity: String,
    hash: String,
    size: i64,
    written_at: SystemTime,
    source_version: Option<String>,
    task: Option<i64>,
    run: Option<i64>,
}

impl ArtifactRow {
    pub(super) fn new(a: &ArtifactRecord) -> Result<Self, StoreError> {
        let n = |v: u64| big(&format!("manifest entry {}", a.entity), v);
        Ok(ArtifactRow {
            entity: a.entity.as_str().to_owned(),
            hash: a.hash.clone(),
            size: n(a.size)?,
            written_at: time(a.written_at),
            source_version: a.source_version.clone(),
            task: a.task.map(|t| n(t.0)).transpose()?,
            run: a.run.map(|r| n(r.0)).transpose()?,
        })
    }
}

/// Task rows as one array per column, for `unnest`.
#[derive(Debug, Default)]
pub(super) struct TaskColumns {
    pub(super) id: Vec<i64>,
    pub(super) kind: Vec<String>,
    pub(super) target: Vec<String>,
    pub(super) trigger: Vec<String>,
    pub(super) triggers: Vec<Value>,
    pub(super) params: Vec<Value>,
    pub(super) priority: Vec<i16>,
    pub(super) pool: Vec<String>,
    pub(super) state: Vec<&'static str>,
    pub(super) attempts: Vec<i64>,
    pub(super) run: Vec<Option<i64>>,
    pub(super) stage: Vec<Option<String>>,
    pub(super) progress_done: Vec<Option<i64>>,
    pub(super) progress_total: Vec<Option<i64>>,
    pub(super) result: Vec<Option<Value>>,
    pub(super) error: Vec<Option<String>>,
    pub(super) errors: Vec<Value>,
    pub(super) merged: Vec<i64>,
    pub(super) waiting_behind: Vec<Option<i64>>,
    pub(super) merged_into: Vec<Option<i64>>,
    pub(super) created_at: Vec<SystemTime>,
    pub(super) started_at: Vec<Option<SystemTime>>,
    pub(super) finished_at: Vec<Option<SystemTime>>,
    pub(super) run_after: Vec<Option<SystemTime>>,
    pub(super) retry_of: Vec<Option<i64>>,
}

impl TaskColumns {
    pub(super) fn push(&mut self, r: TaskRow) {
        self.id.push(r.id);
        self.kind.push(r.kind);
        self.target.push(r.target);
        self.trigger.push(r.trigger);
        self.triggers.push(r.triggers);
        self.params.push(r.params);
        self.priority.push(r.priority);
        self.pool.push(r.pool);
        self.state.push(r.state.as_str());
        self.attempts.push(r.attempts);
        self.run.push(r.run);
        self.stage.push(r.stage);
        self.progress_done.push(r.progress.map(|p| p.0));
        self.progress_total.push(r.progress.map(|p| p.1));
        self.result.push(r.result);
        self.error.push(r.error);
        self.errors.push(r.errors);
        self.merged.push(r.merged);
        self.waiting_behind.push(r.waiting_behind);
        self.merged_into.push(r.merged_into);
        self.created_at.push(r.created_at);
        self.started_at.push(r.started_at);
        self.finished_at.push(r.finished_at);
        self.run_after.push(r.run_after);
        self.retry_of.push(r.retry_of);
    }
}

/// Report rows as one array per column.
#[derive(Debug, Default)]
pub(super) struct ReportColumns {
    pub(super) id: Vec<i64>,
    pub(super) run: Vec<i64>,
    pub(super) stage: Vec<Option<String>>,
    pub(super) done: Vec<Option<i64>>,
    pub(super) total: Vec<Option<i64>>,
}

impl ReportColumns {
    pub(super) fn push(&mut self, r: ReportRow) {
        self.id.push(r.id);
        self.run.push(r.run);
        self.stage.push(r.stage);
        self.done.push(r.progress.map(|p| p.0));
        self.total.push(r.progress.map(|p| p.1));
    }
}

/// Artifact rows as one array per column.
#[derive(Debug, Default)]
pub(super) struct ArtifactColumns {
    pub(super) entity: Vec<String>,
    pub(super) hash: Vec<String>,
    pub(super) size: Vec<i64>,
    pub(super) written_at: Vec<SystemTime>,
    pub(super) source_version: Vec<Option<String>>,
    pub(super) task: Vec<Option<i64>>,
    pub(super) run: Vec<Option<i64>>,
}

impl ArtifactColumns {
    pub(super) fn push(&mut self, r: ArtifactRow) {
        self.entity.push(r.entity);
        self.hash.push(r.hash);
        self.size.push(r.size);
        self.written_at.push(r.written_at);
        self.source_version.push(r.source_version);
        self.task.push(r.task);
        self.run.push(r.run);
    }
}

/// A value read back that this build cannot decode.
#[derive(Debug, thiserror::Error)]
#[error("column {column} holds {value:?}, which cannot be read back")]
pub(super) struct DecodeError {
    column: &'static str,
    value: String,
}

/// Why reading a row failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RowError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads a row selected with [`TASK_COLUMNS`].
pub(super) fn task_from_row(row: &Row) -> Result<TaskRecord, RowError> {
    let progress = match (row.try_get(12)?, row.try_get(13)?) {
        (Some(done), Some(total)) => Some(Progress {
            done: unsigned(done),
            total: unsigned(total),
        }),
        _ => None,
    };
    let target: String = row.try_get(2)?;
    let state: String = row.try_get(8)?;
    let id = |i| {
        row.try_get::<_, Option<i64>>(i)
            .map(|v| v.map(|v| TaskId(unsigned(v))))
    };
    let at = |i| {
        row.try_get::<_, Option<SystemTime>>(i)
            .map(|v| v.map(millis))
    };
    Ok(TaskRecord {
        id: TaskId(unsigned(row.try_get(0)?)),
        kind: row.try_get(1)?,
        target: Target::parse(&target).map_err(|_| decode("target", &target))?,
        trigger: Trigger::parse(row.try_get(3)?),
        triggers: from_json("triggers", row.try_get(4)?)?,
        params: row.try_get(5)?,
        priority: Priority(row.try_get(6)?),
        pool: row.try_get(7)?,
        state: parse_state(&state).map_err(|_| decode("state", &state))?,
        attempts: u32::try_from(row.try_get::<_, i64>(9)?).unwrap_or(u32::MAX),
        run: row
            .try_get::<_, Option<i64>>(10)?
            .map(|r| RunToken(unsigned(r))),
        stage: row.try_get(11)?,
        progress,
        result: row.try_get(14)?,
        error: row.try_get(15)?,
        errors: from_json("errors", row.try_get(16)?)?,
        merged: unsigned(row.try_get(17)?),
        waiting_behind: id(18)?,
        merged_into: id(19)?,
        created_at: millis(row.try_get(20)?),
        started_at: at(21)?,
        finished_at: at(22)?,
        run_after: at(23)?,
        retry_of: id(24)?,
    })
}

/// Reads a row selected with [`ARTIFACT_COLUMNS`].
pub(super) fn artifact_from_row(row: &Row) -> Result<ArtifactRecord, RowError> {
    let entity: String = row.try_get(0)?;
    Ok(ArtifactRecord {
        entity: EntityName::new(&entity).map_err(|_| decode("entity", &entity))?,
        hash: row.try_get(1)?,
        size: unsigned(row.try_get(2)?),
        written_at: millis(row.try_get(3)?),
        source_version: row.try_get(4)?,
        task: row
            .try_get::<_, Option<i64>>(5)?
            .map(|t| TaskId(unsigned(t))),
        run: row
            .try_get::<_, Option<i64>>(6)?
            .map(|r| RunToken(unsigned(r))),
    })
}

/// A timestamp as PostgreSQL's `timestamptz` (microseconds: milliseconds
/// round-trip exactly).
pub(super) fn time(ts: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ts.as_millis())
}

pub(super) fn millis(t: SystemTime) -> Timestamp {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A stored `bigint` that we wrote from a `u64`, so never negative.
fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn big(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Backend(format!("{what} {v} is beyond PostgreSQL's bigint")))
}

pub(super) fn decode(column: &'static str, value: &str) -> DecodeError {
    DecodeError {
        column,
        value: value.chars().take(80).collect(),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    value: Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(value.clone()).map_err(|_| decode(column, &value.to_string()))
}

/// The record's lists as JSON: serializing plain data cannot fail.
fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
