//! How records map to rows: one column per field, JSON text for the
//! structured ones, integer milliseconds for timestamps, state as its name.
//!
//! Encoding and decoding sit side by side here so that a new field touches
//! one file. Values that cannot be decoded (a state name this build does not
//! know, malformed JSON) become conversion errors that name the column.

use groundcrew_actors::{
    ArtifactRecord, EntityName, Priority, Progress, RunToken, Target, TaskId, TaskRecord,
    Timestamp, Trigger,
};
use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};

use crate::store::state::parse_state;

/// The task columns in the order [`task_from_row`] reads them.
pub(super) const TASK_COLUMNS: &str = "id, kind, target, trigger, triggers, params, priority, \
     pool, state, attempts, run, stage, progress_done, progress_total, result, error, errors, \
     merged, waiting_behind, merged_into, created_at, started_at, finished_at, run_after, \
     retry_of";

/// Inserts or replaces a task. An upsert rather than `INSERT OR REPLACE`:
/// REPLACE would resolve a coalescing-index conflict by deleting the other
/// task, where we want the write refused.
const UPSERT_TASK: &str = "INSERT INTO tasks (id, kind, target, trigger, triggers, params, \
     priority, pool, state, attempts, run, stage, progress_done, progress_total, result, error, \
     errors, merged, waiting_behind, merged_into, created_at, started_at, finished_at, run_after, \
     retry_of) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22, ?23, ?24, ?25) \
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, target = excluded.target, \
     trigger = excluded.trigger, triggers = excluded.triggers, params = excluded.params, \
     priority = excluded.priority, pool = excluded.pool, state = excluded.state, \
     attempts = excluded.attempts, run = excluded.run, stage = excluded.stage, \
     progress_done = excluded.progress_done, progress_total = excluded.progress_total, \
     result = excluded.result, error = excluded.error, errors = excluded.errors, \
     merged = excluded.merged, waiting_behind = excluded.waiting_behind, \
     merged_into = excluded.merged_into, created_at = excluded.created_at, \
     started_at = excluded.started_at, finished_at = excluded.finished_at, \
     run_after = excluded.run_after, retry_of = excluded.retry_of \
     WHERE tasks.run IS NULL OR excluded.run >= tasks.run";

/// Writes one task record.
pub(super) fn put_task(conn: &Connection, t: &TaskRecord) -> rusqlite::Result<()> {
    let millis = |ts: Option<Timestamp>| ts.map(Timestamp::as_millis);
    conn.prepare_cached(UPSERT_TASK)?.execute(params![
        t.id.0,
        t.kind,
        t.target.to_string(),
        t.trigger.as_str(),
        to_json(&t.triggers)?,
        to_json(&t.params)?,
        t.priority.0,
        t.pool,
        t.state.as_str(),
        t.attempts,
        t.run.map(|r| r.0),
        t.stage,
        t.progress.map(|p| p.done),
        t.progress.map(|p| p.total),
        t.result.as_ref().map(to_json).transpose()?,
        t.error,
        to_json(&t.errors)?,
        t.merged,
        t.waiting_behind.map(|id| id.0),
        t.merged_into.map(|id| id.0),
        t.created_at.as_millis(),
        millis(t.started_at),
        millis(t.finished_at),
        millis(t.run_after),
        t.retry_of.map(|id| id.0),
    ])?;
    Ok(())
}

/// Applies `Change::Merge`: a few columns of a queued task, not the
/// whole-record upsert.
pub(super) fn merge_task(
    conn: &Connection,
    id: TaskId,
    merged: u64,
    priority: Priority,
    triggers: Option<&[Trigger]>,
    run_after: Option<Timestamp>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE tasks SET merged = ?2, priority = ?3, triggers = coalesce(?4, triggers),
                run_after = ?5
          WHERE id = ?1 AND state = 'queued'",
    )?
    .execute(params![
        id.0,
        merged,
        priority.0,
        triggers.map(to_json).transpose()?,
        run_after.map(Timestamp::as_millis),
    ])?;
    Ok(())
}

/// Reads a row selected with [`TASK_COLUMNS`].
pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let id = |i| row.get::<_, Option<u64>>(i).map(|v| v.map(TaskId));
    let time = |i| row.get::<_, Option<u64>>(i).map(|v| v.map(Timestamp));
    let progress = match (row.get(12)?, row.get(13)?) {
        (Some(done), Some(total)) => Some(Progress { done, total }),
        _ => None,
    };
    Ok(TaskRecord {
        id: TaskId(row.get(0)?),
        kind: row.get(1)?,
        target: parse(row, 2, Target::parse)?,
        trigger: Trigger::parse(&row.get::<_, String>(3)?),
        triggers: from_json(row, 4)?,
        params: from_json(row, 5)?,
        priority: Priority(row.get(6)?),
        pool: row.get(7)?,
        state: parse(row, 8, parse_state)?,
        attempts: row.get(9)?,
        run: row.get::<_, Option<u64>>(10)?.map(RunToken),
        stage: row.get(11)?,
        progress,
        result: match row.get_ref(14)?.as_str_or_null()? {
            Some(_) => Some(from_json(row, 14)?),
            None => None,
        },
        error: row.get(15)?,
        errors: from_json(row, 16)?,
        merged: row.get(17)?,
        waiting_behind: id(18)?,
        merged_into: id(19)?,
        created_at: Timestamp(row.get(20)?),
        started_at: time(21)?,
        finished_at: time(22)?,
        run_after: time(23)?,
        retry_of: id(24)?,
    })
}

/// The manifest columns in the order [`artifact_from_row`] reads them.
pub(super) const ARTIFACT_COLUMNS: &str =
    "entity, hash, size, written_at, source_version, task, run";

/// Writes one artifact record.
pub(super) fn put_artifact(conn: &Connection, a: &ArtifactRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO manifest (entity, hash, size, written_at, source_version, task, run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        a.entity.as_str(),
        a.hash,
        a.size,
        a.written_at.as_millis(),
        a.source_version,
        a.task.map(|t| t.0),
        a.run.map(|r| r.0),
    ])?;
    Ok(())
}

/// Reads a row selected with [`ARTIFACT_COLUMNS`].
pub(super) fn artifact_from_row(row: &Row<'_>) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        entity: parse(row, 0, EntityName::new)?,
        hash: row.get(1)?,
        size: row.get(2)?,
        written_at: Timestamp(row.get(3)?),
        source_version: row.get(4)?,
        task: row.get::<_, Option<u64>>(5)?.map(TaskId),
        run: row.get::<_, Option<u64>>(6)?.map(RunToken),
    })
}

fn parse<T, E>(row: &Row<'_>, i: usize, f: impl FnOnce(&str) -> Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(i)?;
    f(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(row: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    parse(row, i, |text| serde_json::from_str(text))
}
