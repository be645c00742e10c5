//! [`CommandKind`]: one execution is one run of an external program in its
//! own process group, supervised until it exits, times out or is canceled.
//! The protocol is described in the [module docs](super).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use groundcrew_actors::{Task, TaskContext, TaskError, TaskResult};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use super::isolation::{Enclosure, Isolation};
use super::output::read_output;
use super::stderr::read_stderr;
use crate::config::KindConfig;

/// How long a command's process group gets between SIGTERM and SIGKILL,
/// on timeout, cancel and malformed output. One constant on purpose: the
/// roadmap makes the cancel grace configurable, and this is the one place
/// to read it from then.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// The exit code (`EX_TEMPFAIL` of sysexits.h) that asks for a retry.
pub const EX_TEMPFAIL: i32 = 75;

/// How often a terminating group is checked for having exited.
const POLL: Duration = Duration::from_millis(50);

/// A kind declared in the configuration that runs an external program per
/// execution.
///
/// # Failure
/// Exit status 0 succeeds with the last `result` message (or `null`);
/// [`EX_TEMPFAIL`] is a retryable failure; any other status, a signal, a
/// malformed output line or an unreadable published file is a fatal one.
/// Failures from the exit status quote the last 20 lines of stderr. Its
/// `timeout_s` is the kind's timeout, enforced by the supervisor as for
/// every kind: the execution is canceled and the attempt fails, retryable,
/// with `timed out after N s`.
///
/// # Cancel
/// When the task is canceled, times out or writes a malformed line, the
/// whole process group gets SIGTERM and, [`KILL_GRACE`] later, SIGKILL.
/// When the program exits, whatever it left running in its group is
/// killed: nothing outlives the execution. What left the group (`setsid`,
/// a double fork) is killed with it by the daemon's [`Isolation`]. If the
/// execution's future is dropped (a hard stop at the end of the pool's
/// grace period, when that is shorter than [`KILL_GRACE`]), the group is
/// killed on the spot.
#[derive(Debug, Clone)]
pub struct CommandKind {
    spec: Arc<Spec>,
}

#[derive(Debug)]
struct Spec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    isolation: Isolation,
}

impl CommandKind {
    /// The kind described by `config`; a relative program path containing
    /// a slash is resolved against `data_dir` like every other configured
    /// path (a bare name is looked up on `PATH`). Its runs are enclosed
    /// by `isolation`.
    pub fn new(config: &KindConfig, data_dir: &Path, isolation: Isolation) -> Self {
        let mut command = config.command.iter();
        let program = PathBuf::from(command.next().map_or("", String::as_str));
        let program = if program.is_relative() && program.components().count() > 1 {
            data_dir.join(program)
        } else {
            program
        };
        Self {
            spec: Arc::new(Spec {
                name: config.name.clone(),
                program,
                args: command.cloned().collect(),
                env: config.env.clone(),
                isolation,
            }),
        }
    }
}

impl Task for CommandKind {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, TaskResult> {
        let spec = Arc::clone(&self.spec);
        Box::pin(async move { spec.execute(ctx).await })
    }
}

/// Why a command could not be run or watched (as opposed to the command
/// failing).
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("cannot create a working directory for the command")]
    WorkDir(#[source] io::Error),
    #[error("cannot start command {}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for the command")]
    Wait(#[source] io::Error),
}

/// Why supervision stopped before the command finished on its own.
enum Stop {
    Canceled,
    Failed(TaskError),
}

impl Spec {
    async fn execute(&self, ctx: TaskContext) -> TaskResult {
        // Dropped at the end of the execution, which deletes it with
        // whatever the command left there.
        let workdir = tempfile::Builder::new()
            .prefix("groundcrew-task-")
            .tempdir()
            .map_err(CommandError::WorkDir)?;
        let (mut child, enclosure) = self.spawn(&ctx, workdir.path())?;
        let mut group = Group::of(&child);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            unreachable!("all three streams are piped");
        };
        let params = serde_json::to_vec(ctx.params()).unwrap_or_default();

        let mut feeding = pin!(feed(stdin, params));
        let mut output = pin!(read_output(&ctx, stdout, workdir.path()));
        let mut errors = pin!(read_stderr(&ctx, stderr));
        let mut fed = false;
        let (mut result, mut tail, mut status) = (None, None, None);
        let stop = loop {
            if let (Some(_), Some(_), Some(_)) = (&result, &tail, &status) {
                break None;
            }
            tokio::select! {
                () = &mut feeding, if !fed => fed = true,
                r = &mut output, if result.is_none() => match r {
                    Ok(value) => result = Some(value),
                    Err(e) => break Some(Stop::Failed(e)),
                },
                t = &mut errors, if tail.is_none() => tail = Some(t),
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(CommandError::Wait)?);
                    // Leftovers would hold stdout open and outlive the task.
                    group.kill_leftovers();
                    enclosure.kill();
                }
                () = ctx.canceled() => break Some(Stop::Canceled),
            }
        };
        if let Some(stop) = stop {
            group.terminate(&mut child).await;
            enclosure.release().await;
            return Err(match stop {
                Stop::Canceled => TaskError::Canceled,
                Stop::Failed(e) => e,
            });
        }
        group.disarm();
        enclosure.release().await;
        match (status, result, tail) {
            (Some(status), Some(result), Some(tail)) => outcome(status, result, tail),
            _ => unreachable!("the loop ends early only with a stop"),
        }
    }

    fn spawn(&self, ctx: &TaskContext, workdir: &Path) -> Result<(Child, Enclosure), CommandError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .arg(ctx.target().to_string())
            .current_dir(workdir);
        // The daemon's own GROUNDCREW_ variables configure it and may hold
        // secrets (tokens, the store URL); the command does not need them.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GROUNDCREW_") {
                command.env_remove(name);
            }
        }
        let triggers: Vec<&str> = ctx.triggers().iter().map(|t| t.as_str()).collect();
        command
            .envs(&self.env)
            .env("GROUNDCREW_TASK_ID", ctx.id().to_string())
            .env("GROUNDCREW_KIND", &self.name)
            .env("GROUNDCREW_TARGET", ctx.target().to_string())
            .env("GROUNDCREW_TRIGGER", triggers.join(","))
            .env("GROUNDCREW_ATTEMPT", ctx.attempt().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that signals reach everything it starts.
            .process_group(0)
            .kill_on_drop(true);
        // A daemon killed outright (SIGKILL, OOM) cannot stop the command,
        // and its restart runs the task again: the kernel kills the program
        // when its parent goes. The parent is the spawning thread, one of
        // the supervisor's worker threads, which live as long as the daemon.
        let daemon = std::process::id();
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (prctl, getppid), allocating nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The daemon died before the prctl: the signal never comes.
                if libc::getppid() as u32 != daemon {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        self.isolation
            .spawn(ctx.id(), &mut command)
            .map_err(|source| CommandError::Spawn {
                program: self.program.clone(),
                source,
            })
    }
}

/// The task's outcome from a command that ran to its end.
fn outcome(status: ExitStatus, result: Value, tail: VecDeque<String>) -> TaskResult {
    if status.success() {
        return Ok(result);
    }
    let mut message = match (status.code(), status.signal()) {
        (Some(code), _) => format!("command exited with status {code}"),
        (None, Some(signal)) => format!("command killed by signal {signal}"),
        (None, None) => format!("command ended with {status}"),
    };
    if !tail.is_empty() {
        message.push_str(": ");
        message.push_str(&Vec::from(tail).join("\n"));
    }
    if status.code() == Some(EX_TEMPFAIL) {
        Err(TaskError::retryable(message))
    } else {
        Err(TaskError::fatal(message))
    }
}

/// Writes the params to stdin and closes it. A command that exits without
/// reading them is not an error, so write failures are ignored.
async fn feed(mut stdin: ChildStdin, params: Vec<u8>) {
    let _ = stdin.write_all(&params).await;
    let _ = stdin.shutdown().await;
}

/// The command's process group. Until disarmed, dropping it kills the
/// group, so that an execution abandoned mid-run leaves no processes.
struct Group {
    pgid: Option<libc::pid_t>,
}

impl Group {
    /// The group `child` leads (it was spawned with `process_group(0)`, so
    /// its pid is the group id).
    fn of(child: &Child) -> Self {
        Self {
            pgid: child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()),
        }
    }

    /// Sends `signal` to every process of the group; false when none is
    /// left (or the group is unknown).
    fn signal(&self, signal: libc::c_int) -> bool {
        match self.pgid {
            // SAFETY: kill has no memory-safety preconditions; a negative
            // pid addresses the process group.
            Some(pgid) if pgid > 0 => unsafe { libc::kill(-pgid, signal) == 0 },
            _ => false,
        }
    }

    fn alive(&self) -> bool {
        self.signal(0)
    }

    /// Kills what is left of the group once its leader exited.
    fn kill_leftovers(&self) {
        self.signal(libc::SIGKILL);
    }

    /// SIGTERM to the group, then SIGKILL to whatever is left after
    /// [`KILL_GRACE`]; reaps the leader.
    async fn terminate(&mut self, child: &mut Child) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + KILL_GRACE;
        // The unreaped leader counts as alive, so it is reaped as it goes.
        while Instant::now() < deadline {
            let leader_gone = !matches!(child.try_wait(), Ok(None));
            if leader_gone && !self.alive() {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        if self.alive() {
            self.signal(libc::SIGKILL);
        }
        let _ = child.wait().await;
        self.disarm();
    }

    /// The group is gone: nothing to kill on drop (and its id may be
    /// reused by an unrelated group).
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(lines: &[&str]) -> VecDeque<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    fn failure(result: TaskResult) -> (String, bool) {
        match result {
            Err(TaskError::Failed { message, retryable }) => (message, retryable),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn exit_zero_succeeds_with_the_result() {
        let ok = outcome(
            ExitStatus::from_raw(0),
            serde_json::json!({"n": 1}),
            tail(&["noise"]),
        );
        assert_eq!(ok.unwrap(), serde_json::json!({"n": 1}));
    }

    #[test]
    fn exit_75_is_retryable_and_others_fatal_with_the_stderr_tail() {
        // A raw wait status carries the exit code in its second byte.
        let (message, retryable) = failure(outcome(
            ExitStatus::from_raw(EX_TEMPFAIL << 8),
            Value::Null,
            tail(&["busy"]),
        ));
        assert_eq!(
            (message.as_str(), retryable),
            ("command exited with status 75: busy", true)
        );
        let (message, retryable) = failure(outcome(
            ExitStatus::from_raw(3 << 8),
            Value::Null,
            tail(&["a", "b"]),
        ));
        assert_eq!(
            (message.as_str(), retryable),
            ("command exited with status 3: a\nb", false)
        );
        let (message, retryable) = failure(outcome(
            ExitStatus::from_raw(libc::SIGKILL),
            Value::Null,
            VecDeque::new(),
        ));
        assert_eq!(
            (message.as_str(), retryable),
            ("command killed by signal 9", false)
        );
    }
}
