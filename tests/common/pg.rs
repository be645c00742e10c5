//! A throwaway PostgreSQL 15 server for tests: `initdb` into a temporary
//! directory, a free loopback port, a socket directory of its own, and
//! `fsync=off` (durability across power loss is not what these tests
//! prove). It is stopped and its directory removed on drop.
//!
//! `initdb` refuses to run as root, so as root the directory is handed to
//! user `nobody` and the server runs as that user. Without the binaries
//! (`/usr/lib/postgresql/15/bin`, or `GROUNDCREW_PG_BIN`), [`PgCluster::start`]
//! returns `None` after printing why, so that a developer without
//! PostgreSQL can run the rest; under `CI=true` it panics instead, since CI
//! must run every test.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where Debian's `postgresql-15` puts the server binaries.
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The superuser's password; host connections need it (scram-sha-256), so
/// that tests can check it never shows in a log.
pub const PASSWORD: &str = "pg-test-secret-5b1f";

/// A running test server.
pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    /// The uid and gid the server runs as (`nobody` when we are root).
    owner: Option<(u32, u32)>,
    server: Mutex<Option<Child>>,
    databases: AtomicU64,
    /// Whether the server syncs its WAL (off for tests, on for benches).
    fsync: bool,
}

impl PgCluster {
    /// Starts a fresh server, or `None` (printed) when PostgreSQL is not
    /// installed and this is not CI.
    pub fn start() -> Option<PgCluster> {
        Some(Self::init(Self::binaries()?, false))
    }

    /// Like [`start`](Self::start) with `fsync=on`, for benchmarks of
    /// durable writes.
    pub fn start_durable() -> Option<PgCluster> {
        Some(Self::init(Self::binaries()?, true))
    }

    /// The server's binaries, or `None` (printed) outside CI without them.
    fn binaries() -> Option<PathBuf> {
        let bin = std::env::var_os("GROUNDCREW_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
        if !bin.join("initdb").exists() {
            let why = format!(
                "PostgreSQL 15 is not installed ({} missing)",
                bin.join("initdb").display()
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}: CI must run the PostgreSQL tests (.ci/run installs postgresql-15)"
            );
            eprintln!("skipping PostgreSQL test: {why}");
            return None;
        }
        Some(bin)
    }

    /// One server for the whole test binary, started on first use and
    /// stopped (its directory removed) when the process exits.
    pub fn shared() -> Option<&'static PgCluster> {
        static SHARED: OnceLock<Option<PgCluster>> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(Some(pg)) = SHARED.get() {
                pg.kill();
                if let Some(dir) = &pg.dir {
                    let _ = std::fs::remove_dir_all(dir.path());
                }
            }
        }
        SHARED
            .get_or_init(|| {
                let pg = Self::start();
                if pg.is_some() {
                    // Statics are never dropped: exit is the last chance.
                    // SAFETY: registers a plain function without captures.
                    unsafe { libc::atexit(stop_shared) };
                }
                pg
            })
            .as_ref()
    }

    fn init(bin: PathBuf, fsync: bool) -> PgCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let owner = (unsafe { libc::geteuid() } == 0).then(nobody);
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        for d in [&data, &sock] {
            std::fs::create_dir(d).unwrap();
        }
        if let Some((uid, gid)) = owner {
            // The temporary directory is root's and 0700: let the server in.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for d in [&data, &sock] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cluster = PgCluster {
            dir: Some(dir),
            bin,
            port: 0,
            owner,
            server: Mutex::new(None),
            databases: AtomicU64::new(0),
            fsync,
        };
        let out = cluster
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-N",
                "-A",
                "trust",
                "--auth-host=scram-sha-256",
            ])
            .arg("--pwfile")
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.port = free_port();
        cluster.launch();
        cluster
    }

    /// A command for one of the server's binaries, run as the owner.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.root());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// The cluster's directory (data, socket, log).
    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("cluster directory").path()
    }

    fn launch(&self) {
        let log = std::fs::File::create(self.root().join("server.log")).unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.root().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.root().join("sock"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .args([
                "-c",
                &format!("fsync={}", if self.fsync { "on" } else { "off" }),
            ])
            .args([
                "-c",
                &format!("full_page_writes={}", if self.fsync { "on" } else { "off" }),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        *self.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .expect("run pg_isready");
            if ready.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("server.log")).unwrap_or_default()
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.lock().unwrap().as_ref().map(Child::id)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; returns its URL (with the password).
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("gc_test_{n}");
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
    }

    /// Runs one SQL command as the superuser over the unix socket; returns
    /// what it printed (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// The psql command that runs `sql` in database `db`, to start when
    /// and how a test needs (e.g. in a thread, to hold a lock).
    pub fn psql_command(&self, db: &str, sql: &str) -> Command {
        let mut cmd = self.command("psql");
        cmd.arg("-h")
            .arg(self.root().join("sock"))
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        cmd
    }

    /// Like [`psql`](Self::psql), in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = self.psql_command(db, sql).output().expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server with a fast shutdown (clients are disconnected,
    /// committed work is kept) and waits until it is gone.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            // SIGINT: fast shutdown.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&self) {
        assert!(self.server.lock().unwrap().is_none(), "already running");
        self.launch();
    }

    /// A fast shutdown and a start, as an operator's restart.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Immediate shutdown, then SIGKILL if it lingers.
    fn kill(&self) {
        let Ok(mut server) = self.server.lock() else {
            return;
        };
        if let Some(mut child) = server.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.kill();
        // The TempDir removes the directory (root may remove nobody's files).
        drop(self.dir.take());
    }
}

/// The uid and gid of user `nobody` (gid: its primary group).
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&"nobody")).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("user nobody exists")
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
