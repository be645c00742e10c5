//! Task kinds declared in the configuration: external commands.
//!
//! Each entry of the `kinds` configuration key registers a kind that runs
//! an external program once per execution ([`CommandKind`]). The program
//! does the work; the daemon supplies the target, schedules, retries,
//! reports, and publishes artifacts through its entity writer.
//!
//! # Invocation
//! - **Arguments**: the configured `command`, then the target (`all` or an
//!   entity such as `country:DE`) as the last argument.
//! - **Environment**: the daemon's, without its own `GROUNDCREW_*`
//!   variables (they may hold secrets), plus the kind's `env`, plus
//!   `GROUNDCREW_TASK_ID`, `GROUNDCREW_KIND`, `GROUNDCREW_TARGET`,
//!   `GROUNDCREW_TRIGGER` (the triggers of the merged requests, comma
//!   separated) and `GROUNDCREW_ATTEMPT` (from 1).
//! - **Stdin**: the request's params as JSON, then closed.
//! - **Working directory**: a fresh temporary directory, deleted after the
//!   execution.
//! - **Process group**: its own, so that signals reach every process it
//!   starts.
//! - **Isolation**: a cgroup of its own per run, or the daemon as its
//!   subreaper (`kinds_isolation`, see [`Isolation`]): what leaves the
//!   process group is killed at the run's end all the same.
//!
//! # Output protocol
//! Stdout carries one JSON object per line, each with exactly one key:
//!
//! | line | effect |
//! |---|---|
//! | `{"stage": "download"}` | reports the stage |
//! | `{"progress": [40, 100]}` | reports progress, done of total |
//! | `{"publish": {"entity": "country:DE", "path": "de.txt"}}` | the file (at most 256 MiB; relative to the working directory) becomes the entity's artifact |
//! | `{"result": {...}}` | any JSON: the task's result (the last one wins) |
//!
//! Blank lines are ignored. Any other line, a line over 1 MiB, an invalid
//! entity name or an unreadable file ends the execution: the process group
//! is killed and the task fails, naming the line:
//! `command output line 3: unknown key "stagee"; expected stage, progress,
//! publish or result`. Messages are applied in order; a publication is
//! durable before the next line is read.
//!
//! A line over 1 MiB fails as soon as 1 MiB arrived without a newline.
//! `stage` and `progress` are coalesced: at most one report of each per
//! 100 ms goes to the supervisor, the latest value winning, and what is
//! pending when stdout closes is reported then.
//!
//! Stderr is free text: lines are logged (at info, with the task id) up to
//! 50 a second after a burst of 100; lines beyond are counted and the count
//! logged (`command stderr lines dropped`). The last 20 lines are quoted
//! when the exit status fails the task, whatever the rate.
//!
//! # Outcome
//! - exit 0: succeeded, with the last `result` or `null`;
//! - exit 75 (`EX_TEMPFAIL`): a retryable failure, retried up to the
//!   kind's `max_attempts`;
//! - any other status or a signal: a fatal failure,
//!   `command exited with status 3: <last stderr lines>`;
//! - past `timeout_s` (the kind's timeout, which the supervisor enforces
//!   for every kind): a retryable failure, `timed out after N s`;
//! - canceled: canceled.
//!
//! On timeout, cancel or a malformed line the group gets SIGTERM, then
//! SIGKILL 2 s later. When the program exits on its own, whatever it left
//! running in its group is killed. The program gets `PR_SET_PDEATHSIG`
//! (SIGKILL): a daemon killed outright takes it along, so the restart does
//! not run the task beside a survivor. A grace period shorter than
//! [`KILL_GRACE`] (a pool's, a cancel's or the drain's) ends with a hard
//! stop, which kills the group when the execution's future is dropped.

mod command;
mod isolation;
mod output;
mod protocol;
#[cfg(test)]
mod protocol_fuzz;
mod report;
mod stderr;

pub use command::{CommandKind, EX_TEMPFAIL, KILL_GRACE};
pub use isolation::{CgroupUnavailable, Isolation, IsolationError};
pub(crate) use stderr::STDERR_TARGET;

/// Kind names the daemon registers itself; configured kinds cannot use them.
pub const BUILT_IN_KINDS: [&str; 2] = [crate::entities::ARTIFACT_KIND, TEST_KIND];

/// The built-in `test` kind ([`groundcrew_actors::TestKind`]).
pub const TEST_KIND: &str = "test";
