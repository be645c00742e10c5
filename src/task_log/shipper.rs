//! The shipper: takes captured lines off the channel and appends them to
//! the store, a batch per interval.
//!
//! # Batching
//! It waits for a line, then lets [`FLUSH_INTERVAL`] pass so that the lines
//! logged meanwhile join the same append (up to [`MAX_BATCH`]): at most a
//! few appends a second however much the tasks log, each one write in the
//! store's own batching. Appends are never acknowledged to anyone; one that
//! fails is logged and its lines counted as dropped.
//!
//! # Shutdown
//! [`Shipper::stop`] appends what is still buffered and waits for it, so
//! that the last lines of tasks that ended while draining are kept.

use std::sync::Arc;
use std::time::Duration;

use groundcrew_actors::{TaskLog, TaskLogLine};
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

/// How long lines gather before an append.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// The most lines one append takes.
const MAX_BATCH: usize = 4096;

/// The running shipper.
#[derive(Debug)]
pub(crate) struct Shipper {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Shipper {
    /// Starts shipping `lines` to `log` on the current runtime.
    pub(crate) fn start(
        lines: mpsc::Receiver<TaskLogLine>,
        log: Arc<dyn TaskLog>,
        dropped: IntCounter,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(ship(lines, log, dropped, stopped));
        Self { stop, done }
    }

    /// Appends what is buffered, waits for it, and stops.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

async fn ship(
    mut lines: mpsc::Receiver<TaskLogLine>,
    log: Arc<dyn TaskLog>,
    dropped: IntCounter,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            n = lines.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(FLUSH_INTERVAL) => false,
                    _ = &mut stopped => true,
                }
            }
            _ = &mut stopped => true,
        };
        while batch.len() < MAX_BATCH {
            match lines.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            if let Err(e) = log.append_log(std::mem::take(&mut batch)).await {
                dropped.inc_by(n);
                tracing::warn!(error = %e, lines = n, "task log lines were not stored");
            }
        }
        if stopping {
            return;
        }
    }
}
