//! A task's own log: the last lines of what its executions logged (tracing
//! events inside the task's span, a command's stderr), kept in the store
//! beside the task so that they survive restarts.
//!
//! # Bounded
//! A store keeps at most [`LOG_LINES_PER_TASK`] lines per task, the newest;
//! an append beyond that drops the oldest. Each message is cut to
//! [`MAX_LOG_MESSAGE`] bytes by [`LogLine::new`]. Lines of a task the store
//! does not hold are dropped, and deleting or pruning a task removes its
//! lines, so that the log never outgrows the history.
//!
//! # Not acknowledged
//! Log lines are diagnostics, not journal: a store batches them with its
//! other writes and nobody waits for them to be durable. A crash may lose
//! the lines of the last moments; it never loses or delays a task change.

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::spec::TaskId;
use crate::store::{Durable, StoreError};
use crate::time::Timestamp;

/// How many lines a store keeps per task (the newest).
pub const LOG_LINES_PER_TASK: usize = 200;

/// The longest message kept, in bytes; longer ones are cut at a character
/// boundary.
pub const MAX_LOG_MESSAGE: usize = 4096;

/// Where a log line came from: `stderr` for a command's standard error,
/// otherwise the `tracing` target of the event.
pub const STDERR_SOURCE: &str = "stderr";

/// One line of a task's log.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was logged.
    pub time: Timestamp,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The `tracing` target of the event, or [`STDERR_SOURCE`].
    pub source: String,
    /// What was logged.
    pub message: String,
}

impl LogLine {
    /// A line, its message cut to [`MAX_LOG_MESSAGE`] bytes and any NUL
    /// replaced by U+FFFD.
    ///
    /// ```
    /// use groundcrew_actors::{LogLine, Timestamp, MAX_LOG_MESSAGE};
    ///
    /// let line = LogLine::new(Timestamp(0), "info", "stderr", "é".repeat(MAX_LOG_MESSAGE));
    /// assert!(line.message.len() <= MAX_LOG_MESSAGE);
    /// ```
    pub fn new(
        time: Timestamp,
        level: impl Into<String>,
        source: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut message: String = message.into();
        // Every store can keep it: PostgreSQL's text refuses NUL.
        if message.contains('\0') {
            message = message.replace('\0', "\u{fffd}");
        }
        if message.len() > MAX_LOG_MESSAGE {
            let mut end = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self {
            time,
            level: level.into(),
            source: source.into(),
            message,
        }
    }
}

/// A line and the task it belongs to, as appended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TaskLogLine {
    /// The task.
    pub task: TaskId,
    /// The line.
    pub line: LogLine,
}

/// Where tasks' log lines are kept.
///
/// # Ordering
/// Lines of one task are read back in the order they were appended, oldest
/// first, across calls.
pub trait TaskLog: Send + Sync + 'static {
    /// Hands lines over; the future resolves once they are stored. Callers
    /// need not wait for it: the lines are applied in call order anyway.
    fn append_log(&self, lines: Vec<TaskLogLine>) -> Durable;

    /// The task's lines, oldest first: at most [`LOG_LINES_PER_TASK`], and
    /// none for an unknown task.
    fn log(&self, task: TaskId) -> BoxFuture<'static, Result<Vec<LogLine>, StoreError>>;
}

/// The newest [`LOG_LINES_PER_TASK`] lines of each task among `lines`, in
/// their order: what an append keeps at most, so that stores need not write
/// lines only to delete them in the same batch.
///
/// ```
/// use groundcrew_actors::{newest_log_lines, LogLine, TaskId, TaskLogLine, Timestamp, LOG_LINES_PER_TASK};
///
/// let line = |task, n: usize| TaskLogLine { task: TaskId(task), line: LogLine::new(Timestamp(0), "info", "t", n.to_string()) };
/// let lines: Vec<_> = (0..LOG_LINES_PER_TASK + 5).map(|n| line(1, n)).chain([line(2, 0)]).collect();
/// let kept = newest_log_lines(lines);
/// assert_eq!(kept.len(), LOG_LINES_PER_TASK + 1);
/// assert_eq!(kept[0].line.message, "5");
/// ```
pub fn newest_log_lines(lines: Vec<TaskLogLine>) -> Vec<TaskLogLine> {
    let mut count: HashMap<TaskId, usize> = HashMap::new();
    for l in &lines {
        *count.entry(l.task).or_default() += 1;
    }
    if count.values().all(|&n| n <= LOG_LINES_PER_TASK) {
        return lines;
    }
    // Skip each task's oldest lines beyond the limit.
    let mut skip: HashMap<TaskId, usize> = count
        .into_iter()
        .map(|(task, n)| (task, n.saturating_sub(LOG_LINES_PER_TASK)))
        .collect();
    lines
        .into_iter()
        .filter(|l| match skip.get_mut(&l.task) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}
