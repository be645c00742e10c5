//! Reading a command's stdout: JSON lines (see [`protocol`](super::protocol))
//! applied in order, with stage and progress coalesced
//! ([`report`](super::report)).
//!
//! Lines are framed by tokio-util's `LinesCodec` with a maximum length:
//! a line over [`MAX_LINE`](protocol::MAX_LINE) fails the execution as soon
//! as that many bytes arrived without a newline, rather than after the
//! daemon read the whole line (which may never end).

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use groundcrew_actors::{TaskContext, TaskError};
use serde_json::Value;
use std::time::Instant;

use tokio::process::ChildStdout;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::protocol::{self, LineError, LineProblem, Message};
use super::report::{Flush, Reports};

/// The largest file a `publish` message may name.
const MAX_PUBLISH_BYTES: u64 = 256 * 1024 * 1024;

/// Why the command's stdout could not be read (as opposed to the command
/// writing something wrong).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the command's output")]
struct StdoutError(#[source] io::Error);

/// Applies the command's stdout messages in order; the last `result` (or
/// null) once stdout closes.
///
/// # Cancel safety
/// Not cancel safe: dropping it loses what was read of the current line and
/// the reports not yet flushed. The caller keeps it in one long-lived
/// future.
pub(super) async fn read_output(
    ctx: &TaskContext,
    stdout: ChildStdout,
    workdir: &Path,
) -> Result<Value, TaskError> {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(protocol::MAX_LINE));
    let mut reports = Reports::default();
    let mut result = Value::Null;
    let mut number = 0;
    loop {
        let due = reports.due();
        let next = tokio::select! {
            next = lines.next() => next,
            () = sleep_until(due), if due.is_some() => {
                flush(ctx, reports.take_due(Instant::now()));
                continue;
            }
        };
        let Some(read) = next else { break };
        number += 1;
        let at = |problem| {
            TaskError::from(LineError {
                line: number,
                problem,
            })
        };
        let line = match read {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                return Err(at(LineProblem::TooLong {
                    max: protocol::MAX_LINE,
                }))
            }
            // The codec's only InvalidData error is a line that is not UTF-8.
            Err(LinesCodecError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(at(LineProblem::NotUtf8))
            }
            Err(LinesCodecError::Io(e)) => return Err(TaskError::from(StdoutError(e))),
        };
        match protocol::parse(&line).map_err(at)? {
            None => {}
            Some(Message::Stage(stage)) => reports.stage(stage),
            Some(Message::Progress { done, total }) => reports.progress(done, total),
            Some(Message::Result(value)) => result = value,
            Some(Message::Publish { entity, path }) => {
                let content = read_published(workdir.join(path)).await.map_err(at)?;
                ctx.publish(entity, content, None)
                    .await
                    .map_err(|e| at(LineProblem::Publish(e)))?;
            }
        }
        flush(ctx, reports.take_due(Instant::now()));
    }
    flush(ctx, Some(reports.take_all()));
    Ok(result)
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}

fn flush(ctx: &TaskContext, flush: Option<Flush>) {
    let Some(Flush { stage, progress }) = flush else {
        return;
    };
    if let Some(stage) = stage {
        ctx.stage(stage);
    }
    if let Some((done, total)) = progress {
        ctx.progress(done, total);
    }
}

/// Reads a published file, refusing one over [`MAX_PUBLISH_BYTES`] before
/// holding it all in memory.
async fn read_published(path: PathBuf) -> Result<Vec<u8>, LineProblem> {
    let read = tokio::task::spawn_blocking(move || {
        let read = std::fs::File::open(&path).and_then(|file| {
            let mut content = Vec::new();
            file.take(MAX_PUBLISH_BYTES + 1).read_to_end(&mut content)?;
            Ok(content)
        });
        match read {
            Ok(content) if content.len() as u64 > MAX_PUBLISH_BYTES => Err(LineProblem::TooLarge {
                path,
                max: MAX_PUBLISH_BYTES,
            }),
            Ok(content) => Ok(content),
            Err(source) => Err(LineProblem::Unreadable { path, source }),
        }
    })
    .await;
    read.unwrap_or_else(|e| {
        Err(LineProblem::Unreadable {
            path: PathBuf::new(),
            source: io::Error::other(e),
        })
    })
}
