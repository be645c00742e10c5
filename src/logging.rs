//! Log output: `tracing` events to stderr, human-readable or one JSON
//! object per line, filtered by the configured level (`RUST_LOG` wins when
//! set, so that an operator can turn up one module without a reload).
//!
//! Beside it, the task log's capture layer (see `task_log`) takes every
//! event at `info` and above that belongs to a task, whatever the
//! configured level: a task's page shows what it did even when the
//! daemon's own log is kept quiet.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};
use crate::task_log::{self, Captured};

/// Installs the global subscriber and returns the task log's captured
/// lines. Fails if a subscriber is already installed.
pub(crate) fn init(log: &LogConfig) -> Result<Captured, Box<dyn std::error::Error + Send + Sync>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&log.level)?,
    };
    let (capture, captured) = task_log::capture();
    let registry = tracing_subscriber::registry().with(capture.with_filter(LevelFilter::INFO));
    let output = fmt::layer().with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => registry
            .with(output.json().flatten_event(true).with_filter(filter))
            .try_init()?,
        LogFormat::Pretty => registry.with(output.with_filter(filter)).try_init()?,
    }
    Ok(captured)
}
