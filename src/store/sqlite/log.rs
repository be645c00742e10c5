//! [`TaskLog`] on SQLite: lines go to the writer thread like every other
//! write and join its next group commit; reads use the read pool.
//!
//! An append inserts the lines of tasks the file holds and then trims each
//! task it touched to its newest [`LOG_LINES_PER_TASK`] lines, in the same
//! transaction. Lines go with their task: a trigger (schema version 4)
//! deletes them when the task is deleted or pruned.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use groundcrew_actors::{
    newest_log_lines, Durable, LogLine, StoreError, TaskId, TaskLog, TaskLogLine, Timestamp,
    LOG_LINES_PER_TASK,
};
use rusqlite::{params, Connection};

use super::writer::Op;
use super::SqliteStore;

impl TaskLog for SqliteStore {
    fn append_log(&self, lines: Vec<TaskLogLine>) -> Durable {
        let done = self.submit(Op::Log(newest_log_lines(lines)));
        Box::pin(async move { done.await.map(drop) })
    }

    fn log(&self, task: TaskId) -> BoxFuture<'static, Result<Vec<LogLine>, StoreError>> {
        self.read("task log", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT time, level, source, message FROM task_log WHERE task = ?1
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let newest_first = stmt.query_map(params![task.0, LOG_LINES_PER_TASK], |row| {
                Ok(LogLine {
                    time: Timestamp(row.get(0)?),
                    level: row.get(1)?,
                    source: row.get(2)?,
                    message: row.get(3)?,
                })
            })?;
            let mut lines = newest_first.collect::<rusqlite::Result<Vec<_>>>()?;
            lines.reverse();
            Ok(lines)
        })
    }
}

/// Inserts lines (of tasks the file holds) and trims the tasks they belong
/// to; runs inside the writer's transaction.
pub(super) fn append(conn: &Connection, lines: &[TaskLogLine]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO task_log (task, time, level, source, message)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?1)",
    )?;
    for TaskLogLine { task, line } in lines {
        insert.execute(params![
            task.0,
            line.time.as_millis(),
            line.level,
            line.source,
            line.message
        ])?;
    }
    let mut trim = conn.prepare_cached(
        "DELETE FROM task_log WHERE task = ?1 AND id <= (SELECT id FROM task_log
             WHERE task = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?;
    let tasks: BTreeSet<TaskId> = lines.iter().map(|l| l.task).collect();
    for task in tasks {
        trim.execute(params![task.0, LOG_LINES_PER_TASK])?;
    }
    Ok(())
}
