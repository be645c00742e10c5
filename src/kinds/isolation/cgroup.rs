//! cgroup v2 isolation: a group per task run, killed and removed as a
//! whole.
//!
//! # Layout
//! The cgroup2 mount comes from `/proc/self/mountinfo` (a unified layout
//! mounts it at `/sys/fs/cgroup`, a hybrid one at `/sys/fs/cgroup/unified`),
//! the daemon's own group from `/proc/self/cgroup`. Under the daemon's
//! group sits a base group `groundcrew-<hash>`, the hash of the data
//! directory's canonical path, so that daemons on different data
//! directories never touch each other's groups and a restart on the same
//! one finds what its predecessor left. Each run gets `task-<id>-<run>`
//! under the base (`run` counts runs within this daemon).
//!
//! No controller is enabled anywhere: the groups only hold processes.
//! That keeps cgroup v2's "no internal processes" rule out of the way
//! (it binds only groups that hand controllers down), so the base can sit
//! beside the daemon in a group that holds the daemon's own process.
//!
//! # Killing
//! `cgroup.kill` (Linux 5.14) kills every process of the group at once,
//! including those forking meanwhile. Without it the group is frozen,
//! every pid in `cgroup.procs` gets SIGKILL (fatal signals reach frozen
//! processes) and the freeze is lifted. Removal waits until
//! `cgroup.events` says `populated 0`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use groundcrew_actors::TaskId;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

/// How long a killed group may take to empty before it is left for the
/// next start to remove.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long dropping a run's group may block waiting for it to empty.
const ABANDON_WAIT: Duration = Duration::from_millis(100);

/// How often a killed group is checked for being empty.
const POLL: Duration = Duration::from_millis(20);

/// Runs started by this daemon, for unique group names.
static RUNS: AtomicU64 = AtomicU64::new(1);

/// Why no cgroup2 group can be used.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// No cgroup2 file system is mounted.
    #[error("no cgroup2 mount in /proc/self/mountinfo")]
    NoMount,
    /// The daemon's membership could not be read.
    #[error("no cgroup2 entry (0::) in /proc/self/cgroup")]
    NoMembership,
    /// A file the detection reads could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The daemon's group does not accept new groups or processes.
    #[error("cgroup {path} is not writable")]
    NotWritable {
        /// The group's directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// The daemon's base group: where its runs' groups are created.
#[derive(Debug)]
pub(super) struct Hierarchy {
    base: PathBuf,
}

impl Hierarchy {
    /// The base group for the daemon on `data_dir`, after killing and
    /// removing the run groups a previous daemon left in it.
    pub(super) fn find(data_dir: &Path) -> Result<Self, Unavailable> {
        let own = own_group()?;
        writable(&own)?;
        let hierarchy = Self {
            base: own.join(base_name(data_dir)),
        };
        hierarchy.remove_leftovers();
        Ok(hierarchy)
    }

    pub(super) fn base(&self) -> &Path {
        &self.base
    }

    /// Removes the base group if no run group is left in it.
    pub(super) fn remove_base(&self) {
        let _ = fs::remove_dir(&self.base);
    }

    /// Creates the run's group and spawns `command` into it: the child
    /// writes itself into `cgroup.procs` between fork and exec.
    pub(super) fn spawn(&self, task: TaskId, command: &mut Command) -> io::Result<(Child, Group)> {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let path = self.base.join(format!("task-{task}-{run}"));
        self.create(&path)?;
        let group = Group {
            path,
            base: Some(self.base.clone()),
        };
        let procs = File::options()
            .write(true)
            .open(group.path.join("cgroup.procs"))?;
        let fd = procs.as_raw_fd();
        // SAFETY: the closure runs between fork and exec and calls only
        // write(2) on a descriptor the parent keeps open until spawn
        // returns, allocating nothing. "0" moves the writing process.
        unsafe {
            command.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // On failure the group is dropped, which removes it.
        let child = command.spawn()?;
        drop(procs);
        Ok((child, group))
    }

    /// Creates the run group at `path` and the base if needed. The base
    /// exists only while runs do, so that a daemon killed between runs
    /// leaves no trace in the hierarchy; a run ending meanwhile may remove
    /// it between the two steps, hence the retry.
    fn create(&self, path: &Path) -> io::Result<()> {
        let mut tries = 0;
        loop {
            match fs::create_dir(&self.base) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            match fs::create_dir(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    /// Kills and removes the run groups in the base; the previous daemon
    /// on this data directory died without doing it.
    fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("task-") {
                continue;
            }
            let group = Group {
                path: entry.path(),
                base: None,
            };
            let alive = group.populated();
            group.kill();
            let deadline = Instant::now() + EMPTY_TIMEOUT;
            while group.populated() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            match fs::remove_dir(&group.path) {
                Ok(()) => {
                    tracing::warn!(group = %group.path.display(), killed_processes = alive, "removed a task cgroup left by a previous daemon")
                }
                Err(e) => {
                    tracing::error!(group = %group.path.display(), error = %e, "cannot remove a task cgroup left by a previous daemon")
                }
            }
            std::mem::forget(group);
        }
        self.remove_base();
    }
}

/// One run's group. Dropping it kills what is inside and removes it in
/// the background.
pub(super) struct Group {
    path: PathBuf,
    /// The base, removed after the group when no other run is left in it.
    base: Option<PathBuf>,
}

impl Group {
    /// Kills every process in the group.
    pub(super) fn kill(&self) {
        if write(&self.path.join("cgroup.kill"), "1").is_err() {
            self.kill_frozen();
        }
    }

    /// Before Linux 5.14 (no `cgroup.kill`): freeze, so that nothing forks
    /// while the list is read, kill each, thaw.
    fn kill_frozen(&self) {
        let _ = write(&self.path.join("cgroup.freeze"), "1");
        if let Ok(procs) = fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.parse::<libc::pid_t>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = write(&self.path.join("cgroup.freeze"), "0");
    }

    /// Kills, waits until the group is empty and removes it.
    pub(super) async fn release(self) {
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        loop {
            self.kill();
            if !self.populated() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        self.remove();
        std::mem::forget(self);
    }

    /// For an execution abandoned mid-run: kills now and removes the group
    /// once empty, from a thread if that takes longer than a moment.
    pub(super) fn abandon(self) {
        self.kill();
        // A killed group usually empties within milliseconds: waiting that
        // long here (a hard stop is rare) removes it before a daemon exit
        // right after could leave it to the next start.
        let deadline = Instant::now() + ABANDON_WAIT;
        while self.populated() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if !self.populated() {
            self.remove();
            std::mem::forget(self);
            return;
        }
        let group = Group {
            path: self.path.clone(),
            base: self.base.clone(),
        };
        std::mem::forget(self);
        std::thread::spawn(move || {
            let deadline = Instant::now() + EMPTY_TIMEOUT;
            while group.populated() && Instant::now() < deadline {
                group.kill();
                std::thread::sleep(POLL);
            }
            group.remove();
            std::mem::forget(group);
        });
    }

    /// Whether a process is left in the group (or below it). An unreadable
    /// `cgroup.events` counts as empty: the group is gone.
    fn populated(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|l| l == "populated 1"))
    }

    fn remove(&self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(group = %self.path.display(), error = %e, "cannot remove a task cgroup; the next start removes it");
            }
        }
        if let Some(base) = &self.base {
            // Fails while another run's group is in it, as it should.
            let _ = fs::remove_dir(base);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        self.remove();
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    File::options()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// `groundcrew-` and 16 hex digits of the SHA-256 of the data directory's
/// canonical path (the path as given when it cannot be resolved).
fn base_name(data_dir: &Path) -> String {
    let path = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("groundcrew-{hex}")
}

/// The daemon's own cgroup2 group, as a directory.
fn own_group() -> Result<PathBuf, Unavailable> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|source| Unavailable::Read {
            path: PathBuf::from(path),
            source,
        })
    };
    let mountinfo = read("/proc/self/mountinfo")?;
    let membership = read("/proc/self/cgroup")?;
    let (mount_root, mount_point) = cgroup2_mount(&mountinfo).ok_or(Unavailable::NoMount)?;
    let own = membership
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or(Unavailable::NoMembership)?;
    Ok(group_dir(&mount_root, &mount_point, own))
}

/// The root and mount point of the first cgroup2 mount in `mountinfo`:
/// `id parent dev root mountpoint options [optional...] - fstype ...`.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split(' ').skip(3);
        let root = unescape(fields.next()?);
        let point = unescape(fields.next()?);
        Some((root, PathBuf::from(point)))
    })
}

/// The directory of group `own` (a path from the cgroup namespace's root)
/// under a mount of the hierarchy's `root` at `point`.
fn group_dir(root: &str, point: &Path, own: &str) -> PathBuf {
    let relative = own
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(own)
        .trim_start_matches('/');
    if relative.is_empty() {
        point.to_owned()
    } else {
        point.join(relative)
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether groups can be created in `group` and processes moved there.
fn writable(group: &Path) -> Result<(), Unavailable> {
    let refuse = |source| Unavailable::NotWritable {
        path: group.to_owned(),
        source,
    };
    // Moving a process between two groups needs write access to their
    // common ancestor's cgroup.procs: the daemon's group, for its runs.
    for path in [group.to_owned(), group.join("cgroup.procs")] {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| refuse(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: c is a valid NUL-terminated string.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
            return Err(refuse(io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn the_cgroup2_mount_is_found_in_a_hybrid_layout() {
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(("/".to_owned(), PathBuf::from("/sys/fs/cgroup/unified")))
        );
        assert_eq!(
            cgroup2_mount(&HYBRID.replace("cgroup2 cgroup2", "x x")),
            None
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        let line = "41 31 0:38 / /mnt/cg\\040two rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(line).unwrap().1, PathBuf::from("/mnt/cg two"));
    }

    #[test]
    fn the_own_group_is_placed_under_the_mount() {
        let point = Path::new("/sys/fs/cgroup");
        assert_eq!(group_dir("/", point, "/"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(
            group_dir("/", point, "/system.slice/gc.service"),
            PathBuf::from("/sys/fs/cgroup/system.slice/gc.service")
        );
        // A mount of a sub-tree (a container's bind mount).
        assert_eq!(
            group_dir("/lxc/c1", point, "/lxc/c1/app"),
            PathBuf::from("/sys/fs/cgroup/app")
        );
    }

    #[test]
    fn base_names_differ_by_data_dir_and_are_stable() {
        let a = base_name(Path::new("/nonexistent/a"));
        assert_eq!(a, base_name(Path::new("/nonexistent/a")));
        assert_ne!(a, base_name(Path::new("/nonexistent/b")));
        assert!(a.starts_with("groundcrew-") && a.len() == "groundcrew-".len() + 16);
    }

    /// Root only (skipped with a message otherwise, never under CI=true):
    /// a real group with a forking shell in it.
    #[test]
    fn the_freeze_fallback_kills_every_process_of_a_group() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "needs root, and CI=true must run it"
            );
            eprintln!("skipping: the freeze fallback needs root");
            return;
        }
        let own = own_group().unwrap();
        let group = Group {
            path: own.join(format!("groundcrew-test-{}", std::process::id())),
            base: None,
        };
        fs::create_dir(&group.path).unwrap();
        let procs = File::options()
            .write(true)
            .open(group.path.join("cgroup.procs"))
            .unwrap();
        let fd = procs.as_raw_fd();
        let mut shell = std::process::Command::new("sh");
        shell.args(["-c", "sleep 300 & setsid sleep 300 & wait"]);
        // SAFETY: only write(2) between fork and exec, as in `spawn`.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut shell, move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut shell = shell.spawn().unwrap();
        drop(procs);
        let count = || {
            fs::read_to_string(group.path.join("cgroup.procs"))
                .map(|p| p.lines().count())
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while count() < 3 && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert_eq!(count(), 3, "the shell and its two sleeps");
        group.kill_frozen();
        while group.populated() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        // Dropping the group (on failure too) kills what is left and
        // removes it.
        assert!(
            !group.populated(),
            "processes left in {}",
            group.path.display()
        );
        shell.wait().unwrap();
    }
}
