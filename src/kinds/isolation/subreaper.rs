//! Subreaper isolation, where no cgroup can be used: the daemon adopts
//! its commands' orphans and kills them by their task id.
//!
//! # How
//! `PR_SET_CHILD_SUBREAPER` makes a process that loses its parent
//! re-parent to the daemon instead of init, so every process a command
//! started stays a descendant of the daemon while it runs. At a run's end
//! each descendant whose `/proc/<pid>/environ` holds the run's
//! `GROUNDCREW_TASK_ID=<id>` gets SIGKILL, round after round until none is
//! left (a process may fork while the list is read).
//!
//! # Reaping
//! Killed orphans are the daemon's children now and must be reaped, but
//! `waitpid(-1)` would steal the exit status of the commands tokio waits
//! for. So only zombie children that are not a command leader are reaped,
//! each by its pid. Leaders are registered while a lock is held across
//! the spawn, so a leader is never mistaken for an orphan.
//!
//! # Limits
//! A process that cleared its environment (`env -i`) is not recognised; a
//! process that escaped while the daemon was not running (it died or was
//! killed) re-parented to init and is out of reach.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use groundcrew_actors::TaskId;
use tokio::process::{Child, Command};

/// How long the kill rounds of a run's release may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between kill rounds, for the kernel to deliver and re-parent.
const POLL: Duration = Duration::from_millis(20);

/// Rounds in a row that must find nothing before a run counts as gone: a
/// process caught mid-exec shows an empty environment for a moment.
const QUIET_ROUNDS: u32 = 2;

/// The daemon as subreaper, with the command leaders tokio waits for.
#[derive(Debug)]
pub(super) struct Reaper {
    leaders: Arc<Mutex<HashSet<libc::pid_t>>>,
}

impl Reaper {
    /// Makes the daemon the child subreaper of everything it starts.
    pub(super) fn start() -> io::Result<Self> {
        // SAFETY: prctl with these arguments only sets a process flag.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            leaders: Arc::default(),
        })
    }

    /// Spawns `command` as a run of `task` and registers its leader.
    pub(super) fn spawn(&self, task: TaskId, command: &mut Command) -> io::Result<(Child, Run)> {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        let leader = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .unwrap_or(0);
        leaders.insert(leader);
        drop(leaders);
        let run = Run {
            marker: format!("GROUNDCREW_TASK_ID={task}"),
            leader,
            leaders: Arc::clone(&self.leaders),
        };
        Ok((child, run))
    }
}

/// One run's processes: the daemon's descendants carrying its marker.
pub(super) struct Run {
    marker: String,
    leader: libc::pid_t,
    leaders: Arc<Mutex<HashSet<libc::pid_t>>>,
}

impl Run {
    /// One round: SIGKILL to every live descendant carrying the marker;
    /// whether there was any.
    pub(super) fn kill(&self) -> bool {
        let victims = descendants_with(&self.marker);
        for &pid in &victims {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        !victims.is_empty()
    }

    /// Kills until none is left, then reaps the orphans. Call after the
    /// leader was reaped.
    pub(super) async fn release(self) {
        self.forget_leader();
        let deadline = Instant::now() + KILL_TIMEOUT;
        let mut quiet = 0;
        while quiet < QUIET_ROUNDS && Instant::now() < deadline {
            quiet = if self.kill() { 0 } else { quiet + 1 };
            tokio::time::sleep(POLL).await;
        }
        self.reap();
    }

    /// For an execution abandoned mid-run: kills and reaps from a thread
    /// (the leader is tokio's to reap, and stays registered until then).
    pub(super) fn abandon(self) {
        std::thread::spawn(move || {
            let deadline = Instant::now() + KILL_TIMEOUT;
            let mut quiet = 0;
            while quiet < QUIET_ROUNDS && Instant::now() < deadline {
                quiet = if self.kill() { 0 } else { quiet + 1 };
                std::thread::sleep(POLL);
            }
            self.reap();
        });
    }

    fn forget_leader(&self) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        leaders.remove(&self.leader);
    }

    /// Reaps the daemon's zombie children that are no command leader: the
    /// adopted orphans of this run and any earlier one that died alone.
    fn reap(&self) {
        let leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        let daemon = daemon_pid();
        for (pid, stat) in processes() {
            if stat.ppid == daemon && stat.zombie && !leaders.contains(&pid) {
                let mut status = 0;
                // SAFETY: waitpid on a specific child of ours, WNOHANG.
                unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            }
        }
    }
}

fn daemon_pid() -> libc::pid_t {
    libc::pid_t::try_from(std::process::id()).unwrap_or(0)
}

/// What is read of `/proc/<pid>/stat`.
struct Stat {
    ppid: libc::pid_t,
    zombie: bool,
}

/// Every process, by pid.
fn processes() -> BTreeMap<libc::pid_t, Stat> {
    let mut all = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            all.insert(pid, stat);
        }
    }
    all
}

fn read_stat(pid: libc::pid_t) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat {
        ppid,
        zombie: state == "Z",
    })
}

/// Live descendants of the daemon whose environment holds `marker`.
fn descendants_with(marker: &str) -> Vec<libc::pid_t> {
    let daemon = daemon_pid();
    let all = processes();
    let descends = |mut pid: libc::pid_t| {
        // Bounded: a pid read mid-change could close a loop.
        for _ in 0..256 {
            match all.get(&pid) {
                Some(stat) if stat.ppid == daemon => return true,
                Some(stat) if stat.ppid > 1 => pid = stat.ppid,
                _ => return false,
            }
        }
        false
    };
    all.iter()
        .filter(|(&pid, stat)| !stat.zombie && pid != daemon && descends(pid))
        .map(|(&pid, _)| pid)
        .filter(|&pid| carries(pid, marker))
        .collect()
}

/// Whether the environment `pid` was started with holds `marker`
/// (`NAME=value`) exactly.
fn carries(pid: libc::pid_t, marker: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_of_this_process_is_read_despite_spaces_in_names() {
        let me = daemon_pid();
        let stat = read_stat(me).unwrap();
        assert!(!stat.zombie);
        // SAFETY: getppid has no preconditions.
        assert_eq!(stat.ppid, unsafe { libc::getppid() });
    }

    #[test]
    fn a_marker_matches_whole_variables_only() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("GROUNDCREW_MARKER_TEST", "17")
            .spawn()
            .unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // The environment is readable once the exec completed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| e.is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(POLL);
        }
        let seen = carries(pid, "GROUNDCREW_MARKER_TEST=17");
        let prefix = carries(pid, "GROUNDCREW_MARKER_TEST=1");
        let longer = carries(pid, "GROUNDCREW_MARKER_TEST=170");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!((seen, prefix, longer), (true, false, false));
    }
}
