//! A command's stderr: free text, logged at info up to a rate, with the
//! last lines kept for the failure message.
//!
//! # Rate
//! A command may write faster than a log collector should take, so lines
//! are admitted by a token bucket ([`LOG_BURST`] lines at once, refilled at
//! [`LOG_RATE`] a second). Lines beyond it are not logged but counted; the
//! count is logged (`command stderr lines dropped`, `dropped = N`) with the
//! next line the rate admits, and when stderr closes. The tail quoted in a
//! failure is kept whatever the rate: it never misses the last lines.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use groundcrew_actors::TaskContext;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::ChildStderr;

/// The `tracing` target of the stderr line events (this module's path, as
/// by default), which the task log captures as source `stderr`.
pub(crate) const STDERR_TARGET: &str = "groundcrew::kinds::stderr";

/// The longest stderr line logged; longer lines are cut.
const MAX_STDERR_LINE: usize = 4096;

/// How many of the last stderr lines a failure message quotes.
pub(super) const STDERR_TAIL: usize = 20;

/// Lines a second logged once the burst is spent.
pub(super) const LOG_RATE: u32 = 50;

/// Lines logged at once before the rate applies.
pub(super) const LOG_BURST: u32 = 100;

/// Logs each stderr line (up to the rate) and returns the last
/// [`STDERR_TAIL`] once stderr closes.
pub(super) async fn read_stderr(ctx: &TaskContext, stderr: ChildStderr) -> VecDeque<String> {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL);
    let mut rate = LogRate::new(Instant::now());
    let (task, kind) = (ctx.id().0, ctx.kind());
    while let Ok(Read::Line | Read::TooLong) =
        read_line(&mut reader, MAX_STDERR_LINE, &mut buf).await
    {
        let line = String::from_utf8_lossy(&buf).into_owned();
        match rate.admit(Instant::now()) {
            Admit::Drop => {}
            Admit::Log { dropped } => {
                if dropped > 0 {
                    tracing::info!(task, kind, dropped, "command stderr lines dropped");
                }
                tracing::info!(target: STDERR_TARGET, task, kind, line = %line, "command stderr");
            }
        }
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let dropped = rate.take_dropped();
    if dropped > 0 {
        tracing::info!(task, kind, dropped, "command stderr lines dropped");
    }
    tail
}

/// Whether a line is logged.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// Log it, after reporting the `dropped` lines before it (if any).
    Log { dropped: u64 },
    /// Count it as dropped.
    Drop,
}

/// A token bucket of [`LOG_BURST`] lines refilled at [`LOG_RATE`] a second,
/// and the count of lines it refused since the last one it admitted.
#[derive(Debug)]
pub(super) struct LogRate {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

impl LogRate {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            tokens: f64::from(LOG_BURST),
            at: now,
            dropped: 0,
        }
    }

    pub(super) fn admit(&mut self, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(LOG_RATE)).min(f64::from(LOG_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Admit::Log {
                dropped: self.take_dropped(),
            }
        } else {
            self.dropped += 1;
            Admit::Drop
        }
    }

    /// The lines dropped and not yet reported; resets the count.
    pub(super) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// A line (or the unterminated last one) is in the buffer.
    Line,
    /// The line was longer than the limit: the buffer holds its first
    /// `max` bytes and the rest was skipped.
    TooLong,
    /// End of input.
    End,
}

/// Reads one line of at most `max` bytes into `line` (newline and a
/// trailing `\r` removed). A longer line is consumed whole but only its
/// head is kept, so that a command cannot make the daemon buffer without
/// bound.
///
/// # Cancel safety
/// Not cancel safe: dropping it mid-line loses what was read. Callers
/// keep it inside one long-lived future.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    line: &mut Vec<u8>,
) -> io::Result<Read> {
    line.clear();
    let mut started = false;
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (started, too_long) {
                (false, _) => Read::End,
                (true, false) => Read::Line,
                (true, true) => Read::TooLong,
            });
        }
        started = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = max - line.len();
        if chunk.len() > room {
            too_long = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            if line.last() == Some(&b'\r') && !too_long {
                line.pop();
            }
            return Ok(if too_long { Read::TooLong } else { Read::Line });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_stderr_target_is_this_modules_path() {
        // Log filters written for the module (`groundcrew::kinds=debug`)
        // keep applying to the lines.
        assert_eq!(STDERR_TARGET, module_path!().trim_end_matches("::tests"));
    }

    #[test]
    fn a_burst_is_logged_then_the_rate_applies_and_drops_are_counted() {
        let start = Instant::now();
        let mut rate = LogRate::new(start);
        for _ in 0..LOG_BURST {
            assert_eq!(rate.admit(start), Admit::Log { dropped: 0 });
        }
        for _ in 0..7 {
            assert_eq!(rate.admit(start), Admit::Drop);
        }
        // One line's worth of time later, one line is logged with the count.
        let later = start + Duration::from_secs(1) / LOG_RATE;
        assert_eq!(rate.admit(later), Admit::Log { dropped: 7 });
        assert_eq!(rate.admit(later), Admit::Drop);
        assert_eq!(rate.take_dropped(), 1);
        assert_eq!(rate.take_dropped(), 0);
    }

    #[test]
    fn a_quiet_command_refills_the_burst_but_not_beyond() {
        let start = Instant::now();
        let mut rate = LogRate::new(start);
        for _ in 0..LOG_BURST {
            rate.admit(start);
        }
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..LOG_BURST {
            assert!(matches!(rate.admit(much_later), Admit::Log { .. }));
        }
        assert_eq!(rate.admit(much_later), Admit::Drop);
    }

    async fn lines(input: &[u8], max: usize) -> Vec<(Read, String)> {
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            let read = read_line(&mut reader, max, &mut line).await.unwrap();
            if read == Read::End {
                return out;
            }
            out.push((read, String::from_utf8(line.clone()).unwrap()));
        }
    }

    #[tokio::test]
    async fn lines_are_read_bounded_and_overlong_ones_skipped_whole() {
        let got = lines(b"one\r\ntwo\n0123456789abc\nlast", 8).await;
        assert_eq!(
            got,
            [
                (Read::Line, "one".to_owned()),
                (Read::Line, "two".to_owned()),
                (Read::TooLong, "01234567".to_owned()),
                (Read::Line, "last".to_owned()),
            ]
        );
        assert!(lines(b"", 8).await.is_empty());
    }
}
