//! [`Capture`]: the `tracing` layer that turns a task's events into its log
//! lines.
//!
//! # Which events
//! An event belongs to a task when it names one in an integer field `task`
//! (the supervisor's and the API's events about a task do), or else when
//! it happens inside the span the supervisor opens around each execution
//! (named `task`, with the task's id in field `id`: everything a kind logs
//! while it runs). A command's stderr line (target [`STDERR_TARGET`], its
//! text in field `line`) becomes a line of source `stderr`; every other
//! event a line of its `tracing` target, its message followed by its other
//! fields as `key=value` (the task's own `task`, `kind` and `target`
//! fields left out).
//!
//! # Never blocking
//! Events are handed to the [shipper](super::shipper) through a bounded
//! channel with `try_send`: when it is full the line is dropped and counted
//! in `groundcrew_task_log_lines_dropped_total`, and the task that logged
//! goes on at once.

use std::fmt::{self, Write as _};

use groundcrew_actors::{LogLine, TaskId, TaskLogLine, Timestamp, STDERR_SOURCE};
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::kinds::STDERR_TARGET;

/// The name of the span the supervisor runs each execution in.
const TASK_SPAN: &str = "task";
/// Its field holding the task id.
const TASK_SPAN_ID: &str = "id";

/// The layer; see the module docs.
#[derive(Debug)]
pub(crate) struct Capture {
    lines: mpsc::Sender<TaskLogLine>,
    dropped: IntCounter,
}

impl Capture {
    pub(crate) fn new(lines: mpsc::Sender<TaskLogLine>, dropped: IntCounter) -> Self {
        Self { lines, dropped }
    }
}

/// The task a span stands for, kept in the span's extensions.
struct TaskSpan(TaskId);

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != TASK_SPAN {
            return;
        }
        let mut task = IdField {
            name: TASK_SPAN_ID,
            id: None,
        };
        attrs.record(&mut task);
        if let (Some(task), Some(span)) = (task.id, ctx.span(id)) {
            span.extensions_mut().insert(TaskSpan(TaskId(task)));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let task = fields.task.map(TaskId).or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<TaskSpan>().map(|t| t.0))
        });
        let Some(task) = task else {
            return;
        };
        let meta = event.metadata();
        let level = meta.level().as_str().to_ascii_lowercase();
        let line = match fields.line {
            Some(text) if meta.target() == STDERR_TARGET => {
                LogLine::new(Timestamp::now(), level, STDERR_SOURCE, text)
            }
            _ => LogLine::new(Timestamp::now(), level, meta.target(), fields.text()),
        };
        if self.lines.try_send(TaskLogLine { task, line }).is_err() {
            self.dropped.inc();
        }
    }
}

/// Finds one integer field by name.
struct IdField {
    name: &'static str,
    id: Option<u64>,
}

impl Visit for IdField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == self.name {
            self.id = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == self.name {
            self.id = u64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// An event's fields: the task it names, a stderr line, the message and
/// the rest as `key=value`.
#[derive(Default)]
struct Fields {
    task: Option<u64>,
    line: Option<String>,
    message: String,
    rest: String,
}

impl Fields {
    /// The message, then the other fields.
    fn text(self) -> String {
        let line = self.line.map(|l| format!("line={l}"));
        [Some(self.message), line, Some(self.rest)]
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn other(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // The task's own identity is the page it is shown on; `log.*` are
        // the `log` crate's bridged metadata.
        if matches!(name, "task" | "kind" | "target") || name.starts_with("log.") {
            return;
        }
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
        let _ = write!(self.rest, "{name}={value}");
    }
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task" => self.task = Some(value),
            _ => self.other(field, format_args!("{value}")),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "task" => self.task = u64::try_from(value).ok(),
            _ => self.other(field, format_args!("{value}")),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "line" => self.line = Some(value.to_owned()),
            _ => self.other(field, format_args!("{value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "line" => self.line = Some(format!("{value:?}")),
            _ => self.other(field, format_args!("{value:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use groundcrew_actors::{Registry, Submit, Supervisor, TaskContext, TaskSpec, Trigger};
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("dropped_total", "dropped").unwrap()
    }

    /// Events with a `task` field, stderr lines among them, as the command
    /// kind and the supervisor log them; events of no task are left out.
    #[test]
    fn events_naming_a_task_become_its_lines_and_others_are_left_out() {
        let (sender, mut lines) = mpsc::channel(16);
        let subscriber = tracing_subscriber::registry().with(Capture::new(sender, counter()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(task = 5u64, kind = "geo", state = %"failed", "task ended");
            tracing::info!(target: STDERR_TARGET, task = 5u64, kind = "geo", line = %"boom", "command stderr");
            tracing::warn!(caller = "ops", "no task here");
        });
        let first = lines.try_recv().unwrap();
        assert_eq!(first.task, TaskId(5));
        assert_eq!(
            (first.line.level.as_str(), first.line.message.as_str()),
            ("info", "task ended state=failed")
        );
        assert_eq!(first.line.source, module_path!());
        let stderr = lines.try_recv().unwrap();
        assert_eq!(
            (stderr.line.source.as_str(), stderr.line.message.as_str()),
            ("stderr", "boom")
        );
        assert!(
            lines.try_recv().is_err(),
            "an event of no task was captured"
        );
    }

    /// What a kind logs while the supervisor runs it belongs to the task:
    /// the supervisor's span (`task`, field `id`) says which.
    #[test]
    fn events_inside_a_supervised_execution_are_its_lines() {
        let (sender, mut lines) = mpsc::channel(64);
        let subscriber = tracing_subscriber::registry()
            .with(Capture::new(sender, counter()).with_filter(LevelFilter::INFO));
        let _default = tracing::subscriber::set_default(subscriber);
        let id = actix::System::new().block_on(async {
            let mut kinds = Registry::new();
            kinds
                .register("noisy", |_: TaskContext| async move {
                    tracing::info!(rows = 3, "inside the run");
                    tracing::debug!("below the capture level");
                    Ok(serde_json::Value::Null)
                })
                .unwrap();
            // No worker threads: executions run here, under this thread's
            // subscriber.
            let supervisor = Supervisor::builder()
                .registry(kinds)
                .worker_threads(0)
                .start()
                .await
                .unwrap();
            let spec = TaskSpec::new("noisy", "asn:1".parse().unwrap(), Trigger::Api);
            let id = supervisor.send(Submit(spec)).await.unwrap().unwrap().id;
            tracing::info!("outside any task");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            while !seen
                .iter()
                .any(|l: &TaskLogLine| l.line.message.starts_with("task ended"))
            {
                let line = tokio::time::timeout_at(deadline, lines.recv()).await;
                seen.push(line.expect("the task ended in time").unwrap());
            }
            let ran: Vec<_> = seen
                .iter()
                .filter(|l| l.line.source == module_path!())
                .map(|l| (l.task, l.line.level.as_str(), l.line.message.as_str()))
                .collect();
            assert_eq!(ran, [(id, "info", "inside the run rows=3")], "{seen:#?}");
            assert!(seen.iter().all(|l| l.task == id), "{seen:#?}");
            id
        });
        assert!(id.0 > 0);
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        let (sender, mut lines) = mpsc::channel(1);
        let dropped = counter();
        let subscriber = tracing_subscriber::registry().with(Capture::new(sender, dropped.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..3 {
                tracing::info!(task = 1u64, n, "busy");
            }
        });
        assert_eq!(lines.try_recv().unwrap().line.message, "busy n=0");
        assert!(lines.try_recv().is_err());
        assert_eq!(dropped.get(), 2);
    }
}
