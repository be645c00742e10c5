//! [`TaskLog`] on PostgreSQL: an append is one statement through the
//! writer task (in call order with the journal), a read one query on the
//! pool.
//!
//! The statement inserts the lines of tasks the database holds and trims
//! each task it touched to its newest [`LOG_LINES_PER_TASK`] lines. The
//! trim runs in the same statement as the insert and so does not see the
//! new rows: it keeps `LOG_LINES_PER_TASK - n` of the old ones for a task
//! given `n` new lines. Lines go with their task: a trigger (schema
//! version 4) deletes them when the task is deleted or pruned.

use std::time::SystemTime;

use futures::future::BoxFuture;
use groundcrew_actors::{
    newest_log_lines, Durable, LogLine, StoreError, TaskId, TaskLog, TaskLogLine,
    LOG_LINES_PER_TASK,
};

use super::rows;
use super::writer::Op;
use super::PostgresStore;

const APPEND: &str = "
WITH added AS (
    INSERT INTO groundcrew.task_log (task, time, level, source, message)
    SELECT l.task, l.time, l.level, l.source, l.message
      FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
           WITH ORDINALITY AS l(task, time, level, source, message, n)
     WHERE EXISTS (SELECT 1 FROM groundcrew.tasks t WHERE t.id = l.task)
     ORDER BY l.n
    RETURNING task
)
DELETE FROM groundcrew.task_log old
 USING (SELECT task, count(*) AS n FROM added GROUP BY task) a
 WHERE old.task = a.task
   AND old.id <= (SELECT id FROM groundcrew.task_log
                   WHERE task = a.task ORDER BY id DESC
                  OFFSET greatest($6 - a.n, 0) LIMIT 1)";

const READ: &str = "SELECT time, level, source, message FROM groundcrew.task_log
    WHERE task = $1 ORDER BY id DESC LIMIT $2";

impl TaskLog for PostgresStore {
    fn append_log(&self, lines: Vec<TaskLogLine>) -> Durable {
        self.durable(Op::Log(newest_log_lines(lines)))
    }

    fn log(&self, task: TaskId) -> BoxFuture<'static, Result<Vec<LogLine>, StoreError>> {
        self.read("task log", move |client| async move {
            let Ok(task) = i64::try_from(task.0) else {
                return Ok(Vec::new());
            };
            let limit = LOG_LINES_PER_TASK as i64;
            let statement = client.prepare_cached(READ).await?;
            let found = client.query(&statement, &[&task, &limit]).await?;
            let mut lines = found
                .iter()
                .map(|row| {
                    Ok(LogLine {
                        time: rows::millis(row.try_get(0)?),
                        level: row.try_get(1)?,
                        source: row.try_get(2)?,
                        message: row.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, rows::RowError>>()?;
            lines.reverse();
            Ok(lines)
        })
    }
}

/// Lines as one array per column, for [`APPEND`].
#[derive(Debug, Default)]
pub(super) struct LogColumns {
    task: Vec<i64>,
    time: Vec<SystemTime>,
    level: Vec<String>,
    source: Vec<String>,
    message: Vec<String>,
}

impl LogColumns {
    /// Converts lines; fails on a task id beyond `bigint`.
    pub(super) fn new(lines: &[TaskLogLine]) -> Result<Self, StoreError> {
        let mut columns = LogColumns::default();
        for TaskLogLine { task, line } in lines {
            let id = i64::try_from(task.0).map_err(|_| {
                StoreError::Backend(format!("task id {task} is beyond PostgreSQL's bigint"))
            })?;
            columns.task.push(id);
            columns.time.push(rows::time(line.time));
            columns.level.push(line.level.clone());
            columns.source.push(line.source.clone());
            columns.message.push(line.message.clone());
        }
        Ok(columns)
    }

    /// Runs the append; returns the old lines trimmed.
    pub(super) async fn append(
        &self,
        client: &deadpool_postgres::Object,
    ) -> Result<u64, tokio_postgres::Error> {
        let keep = LOG_LINES_PER_TASK as i64;
        let statement = client.prepare_cached(APPEND).await?;
        client
            .execute(
                &statement,
                &[
                    &self.task,
                    &self.time,
                    &self.level,
                    &self.source,
                    &self.message,
                    &keep,
                ],
            )
            .await
    }
}
