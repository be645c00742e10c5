//! [`Isolation`]: keeping every process a command starts from outliving
//! its task run, including those that leave the command's process group
//! (`setsid`, a double fork).
//!
//! The process group catches what stays in it; isolation catches the rest.
//! One mechanism is in force per daemon, chosen at start from
//! `kinds_isolation`:
//!
//! - **cgroup** ([`cgroup`]): each run gets its own cgroup v2 group,
//!   `task-<id>-<run>` under a base group `groundcrew-<hash of data dir>`
//!   beside the daemon. The command joins it between fork and exec, so
//!   everything it starts is inside from the first instruction and cannot
//!   leave. At the run's end the group is killed as a whole (`cgroup.kill`),
//!   emptied and removed. Groups a crashed daemon left are killed at the
//!   next start with the same data directory.
//! - **subreaper** ([`subreaper`]): the daemon is the child subreaper of
//!   its commands, so orphans re-parent to it rather than to init. At the
//!   run's end every descendant of the daemon whose environment carries the
//!   run's `GROUNDCREW_TASK_ID` is killed, and adopted orphans are reaped
//!   by pid. It cannot catch a process that cleared its environment, nor
//!   anything that escaped while the daemon was not running.
//!
//! `auto` takes cgroup when a writable cgroup2 hierarchy is found, else
//! subreaper; the start-up log says which is in force and why.
//!
//! # Failure
//! A run whose group cannot be created or joined fails to start (`cannot
//! start command`): a command never runs unenclosed in cgroup mode.

mod cgroup;
mod subreaper;

pub use cgroup::Unavailable as CgroupUnavailable;

use std::io;
use std::path::Path;
use std::sync::Arc;

use groundcrew_actors::TaskId;
use tokio::process::{Child, Command};

use crate::config::KindsIsolation;

/// The isolation in force for the daemon's command kinds; cheap to clone.
#[derive(Clone, Debug)]
pub struct Isolation {
    mechanism: Arc<Mechanism>,
}

#[derive(Debug)]
enum Mechanism {
    Cgroup(cgroup::Hierarchy),
    Subreaper(subreaper::Reaper),
}

impl Mechanism {
    fn cgroup(hierarchy: cgroup::Hierarchy) -> Self {
        tracing::info!(isolation = "cgroup", base = %hierarchy.base().display(), "command kinds run in a cgroup per task run");
        Mechanism::Cgroup(hierarchy)
    }

    /// The subreaper, logged with why it is in force.
    fn subreaper(why: &str) -> Result<Self, IsolationError> {
        let reaper = subreaper::Reaper::start().map_err(IsolationError::Subreaper)?;
        tracing::info!(
            isolation = "subreaper",
            reason = why,
            "command kinds run under the daemon as child subreaper"
        );
        Ok(Mechanism::Subreaper(reaper))
    }
}

/// Why the configured isolation cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `kinds_isolation: cgroup` without a cgroup2 group the daemon can
    /// create groups in.
    #[error("kinds_isolation is cgroup, but no writable cgroup2 hierarchy was found")]
    NoCgroup(#[source] CgroupUnavailable),
    /// The daemon could not make itself the subreaper of its commands.
    #[error("cannot become the child subreaper of commands")]
    Subreaper(#[source] io::Error),
}

impl Isolation {
    /// Sets up the isolation `mode` asks for, for the daemon owning
    /// `data_dir`, and logs which one is in force. In cgroup mode, groups
    /// a previous daemon on the same data directory left behind are killed
    /// and removed first.
    pub fn start(mode: KindsIsolation, data_dir: &Path) -> Result<Self, IsolationError> {
        let mechanism = match mode {
            KindsIsolation::Cgroup => {
                let hierarchy =
                    cgroup::Hierarchy::find(data_dir).map_err(IsolationError::NoCgroup)?;
                Mechanism::cgroup(hierarchy)
            }
            KindsIsolation::Subreaper => Mechanism::subreaper("configured")?,
            KindsIsolation::Auto => match cgroup::Hierarchy::find(data_dir) {
                Ok(hierarchy) => Mechanism::cgroup(hierarchy),
                Err(why) => Mechanism::subreaper(&format!(
                    "no writable cgroup2 hierarchy: {}",
                    crate::entities::error_chain(&why)
                ))?,
            },
        };
        Ok(Self {
            mechanism: Arc::new(mechanism),
        })
    }

    /// `cgroup` or `subreaper`.
    pub fn name(&self) -> &'static str {
        match &*self.mechanism {
            Mechanism::Cgroup(_) => "cgroup",
            Mechanism::Subreaper(_) => "subreaper",
        }
    }

    /// Removes what the isolation keeps for the daemon's lifetime (the
    /// base cgroup, when empty); for a clean shutdown.
    pub fn shutdown(&self) {
        if let Mechanism::Cgroup(hierarchy) = &*self.mechanism {
            hierarchy.remove_base();
        }
    }

    /// Spawns `command` as run of `task`, enclosed: what it starts is
    /// killed by [`Enclosure::release`] (or when the enclosure is dropped).
    /// The command must carry `GROUNDCREW_TASK_ID` in its environment.
    pub(super) fn spawn(
        &self,
        task: TaskId,
        command: &mut Command,
    ) -> io::Result<(Child, Enclosure)> {
        let (child, inner) = match &*self.mechanism {
            Mechanism::Cgroup(hierarchy) => {
                let (child, group) = hierarchy.spawn(task, command)?;
                (child, Inner::Cgroup(group))
            }
            Mechanism::Subreaper(reaper) => {
                let (child, run) = reaper.spawn(task, command)?;
                (child, Inner::Subreaper(run))
            }
        };
        Ok((child, Enclosure { inner: Some(inner) }))
    }
}

/// One run's processes, killed as a whole. Until released, dropping it
/// kills them (an execution abandoned mid-run leaves nothing running).
pub(super) struct Enclosure {
    inner: Option<Inner>,
}

enum Inner {
    Cgroup(cgroup::Group),
    Subreaper(subreaper::Run),
}

impl Enclosure {
    /// Kills every process of the run now, without waiting; the run's
    /// leader, once exited, is left for its owner to reap.
    pub(super) fn kill(&self) {
        match &self.inner {
            Some(Inner::Cgroup(group)) => group.kill(),
            Some(Inner::Subreaper(run)) => {
                run.kill();
            }
            None => {}
        }
    }

    /// Kills every process of the run, waits until they are gone and
    /// removes what held them. Call after the leader was reaped.
    pub(super) async fn release(mut self) {
        match self.inner.take() {
            Some(Inner::Cgroup(group)) => group.release().await,
            Some(Inner::Subreaper(run)) => run.release().await,
            None => {}
        }
    }
}

impl Drop for Enclosure {
    fn drop(&mut self) {
        match self.inner.take() {
            Some(Inner::Cgroup(group)) => group.abandon(),
            Some(Inner::Subreaper(run)) => run.abandon(),
            None => {}
        }
    }
}
