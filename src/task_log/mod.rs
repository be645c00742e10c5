//! Each task's own log, as the daemon captures it: a `tracing` layer
//! ([`capture`]) picks the events that belong to a task and hands them
//! through a bounded channel to a [`shipper`], which appends them to the
//! store's [`TaskLog`](groundcrew_actors::TaskLog) in periodic batches.
//!
//! ```text
//!  task's events ──try_send──▶ [channel, 8192 lines] ──▶ shipper ──every 200 ms──▶ store
//!            (full: dropped and counted)
//! ```
//!
//! The layer is installed with the global subscriber before the store is
//! open; [`capture`] returns it with the channel's other end, which the
//! daemon starts the shipper on once the store is there.

mod capture;
mod shipper;

use groundcrew_actors::TaskLogLine;
use prometheus::IntCounter;
use tokio::sync::mpsc;

pub(crate) use self::capture::Capture;
pub(crate) use self::shipper::Shipper;

/// Lines the channel holds before new ones are dropped: a few seconds of
/// a very busy daemon, against the shipper's 200 ms interval.
const CHANNEL_LINES: usize = 8192;

/// The lines captured so far, and the counter of the ones dropped.
#[derive(Debug)]
pub(crate) struct Captured {
    /// The channel's receiving end.
    pub(crate) lines: mpsc::Receiver<TaskLogLine>,
    /// `groundcrew_task_log_lines_dropped_total`, to register with the
    /// daemon's metrics.
    pub(crate) dropped: IntCounter,
}

/// A capture layer and what it captures.
pub(crate) fn capture() -> (Capture, Captured) {
    let (sender, lines) = mpsc::channel(CHANNEL_LINES);
    let dropped = IntCounter::new(
        "groundcrew_task_log_lines_dropped_total",
        "Task log lines not kept: the capture channel was full or the store refused them.",
    )
    .expect("the metric's name and help are valid");
    (
        Capture::new(sender, dropped.clone()),
        Captured { lines, dropped },
    )
}
