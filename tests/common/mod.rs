//! Shared fixtures for tests that drive the real `groundcrew` binary: start
//! it on a free port, find its address and admin token, call its API, stop
//! it gently or with SIGKILL.
#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running daemon.
pub struct Daemon {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub stdout: mpsc::Receiver<String>,
    /// What it printed up to and including the address line.
    pub printed: Vec<String>,
    /// Killed as in a crash: what it left is for the next start to clean.
    crashed: bool,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_groundcrew")
}

impl Daemon {
    /// Starts `groundcrew serve` on a free loopback port with `data_dir`
    /// and extra arguments, without feeds (so that no start-up artifact work
    /// mixes with what a test submits), and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_with_env(data_dir, extra, &[("GROUNDCREW_FEEDS", "[]")])
    }

    /// Like [`Daemon::start`], with the feeds of the configuration (the
    /// built-in sample feed unless the config file names others).
    pub fn start_with_feeds(data_dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Like [`Daemon::start_with_feeds`], with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::launch(data_dir, extra, env, Stdio::inherit())
    }

    /// Like [`Daemon::start`] with `RUST_LOG=rust_log`, and the daemon's
    /// log (its stderr) as a channel of lines.
    pub fn start_logging(
        data_dir: &Path,
        extra: &[&str],
        rust_log: &str,
    ) -> (Daemon, mpsc::Receiver<String>) {
        Self::start_with_env_logging(
            data_dir,
            extra,
            &[("GROUNDCREW_FEEDS", "[]"), ("RUST_LOG", rust_log)],
        )
    }

    /// Like [`Daemon::start_with_env`], with the daemon's log (its stderr)
    /// as a channel of lines.
    pub fn start_with_env_logging(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Daemon, mpsc::Receiver<String>) {
        let mut daemon = Self::launch(data_dir, extra, env, Stdio::piped());
        let stderr = daemon.child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (daemon, rx)
    }

    fn launch(data_dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Daemon {
        let mut child = Command::new(binary())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start groundcrew");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut printed = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    printed.push(line.clone());
                    if let Some(addr) = line.strip_prefix("groundcrew listening on ") {
                        break addr.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("groundcrew did not report its address: {:?}", child.wait());
                }
            }
        };
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Daemon {
            child,
            base,
            data_dir: data_dir.to_owned(),
            token,
            stdout: rx,
            printed,
            crashed: false,
        }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent()
    }

    /// Sends a request with the admin token; returns status and JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(&self.token), method, path, body)
    }

    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        try_call(&self.base, token, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.crashed = true;
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn signal_and_wait(mut self, signal: i32) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), signal);
        self.child.wait().unwrap()
    }

    pub fn signal(&self, signal: i32) {
        unsafe_kill(self.child.id(), signal);
    }

    /// Polls the panel until `cond` holds; panics after `secs`.
    /// Waits until the daemon is idle and every artifact is `ok`, twice in
    /// a row 100 ms apart (work queued at start may arrive in more than one
    /// batch); returns the entity listing (`limit` entities of it).
    pub fn wait_artifacts_ok(&self, secs: u64, limit: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let path = format!("/api/v1/entities?limit={limit}");
        let mut settled = false;
        loop {
            let (status, body) = self.call("GET", &path, None);
            assert_eq!(status, 200, "{body}");
            let idle = self.call("GET", "/api/v1/panel", None).1["state"] == "idle";
            if idle && body["total"].as_u64() > Some(0) && body["counts"]["ok"] == body["total"] {
                if settled {
                    return body;
                }
                settled = true;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            settled = false;
            assert!(Instant::now() < deadline, "artifacts not all ok: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_panel(&self, what: &str, secs: u64, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, panel) = self.call("GET", "/api/v1/panel", None);
            assert_eq!(status, 200, "{panel}");
            if cond(&panel) {
                return panel;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {panel:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A daemon stopped mid-run leaves its runs' cgroups for the next
        // start on its data dir to remove; a test's data dir sees no next
        // start, so the removal happens here, as that start would do it.
        // After `kill9` the test itself checks what the next start does.
        if !self.crashed {
            remove_cgroups(&self.data_dir);
        }
    }
}

/// Kills and removes the cgroups daemons on `data_dir` left, as a start on
/// it would (a no-op where cgroup isolation is not available).
pub fn remove_cgroups(data_dir: &Path) {
    if let Ok(isolation) =
        groundcrew::kinds::Isolation::start(groundcrew::config::KindsIsolation::Cgroup, data_dir)
    {
        isolation.shutdown();
    }
}

fn unsafe_kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// One API call; `Err` only when the daemon cannot be reached.
pub fn try_call(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let agent = Daemon::agent();
    let resp = match body {
        Some(b) => agent.run(
            req.header("Content-Type", "application/json")
                .body(serde_json::to_vec(&b).unwrap())
                .unwrap(),
        ),
        None => agent.run(req.body(()).unwrap()),
    }
    .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, value))
}

/// The `p`-th percentile (0 to 1) of `sorted` latencies, in milliseconds;
/// 0 when there are none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub const SIGTERM: i32 = 15;
pub const SIGHUP: i32 = 1;

/// Moves the first range with a two-letter country of an ip2asn feed text
/// to `ZZ`: exactly two entities (the old country and `ZZ`) change.
pub fn change_one_line(text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| {
            l.split('\t')
                .nth(3)
                .is_some_and(|c| c.len() == 2 && c != "ZZ")
        })
        .unwrap();
    let mut fields: Vec<&str> = lines[i].split('\t').collect();
    fields[3] = "ZZ";
    lines[i] = fields.join("\t");
    lines.join("\n") + "\n"
}
