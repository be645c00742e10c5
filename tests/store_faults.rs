//! Disk faults against the real daemon: a full store disk, a read-only
//! store, a deleted database and a full artifact disk. Each checks the
//! answer while the fault lasts (503 `store_unavailable`, `/healthz`
//! failing, nothing accepted lost, no torn artifact) and the recovery.
//!
//! The store and artifacts live on small tmpfs mounts, which needs root.
//! Without root the tests that need a mount print why and pass, except
//! under `CI=true`, where they must run. The deleted database needs no
//! mount and always runs.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, Daemon};
use serde_json::{json, Value};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`), or says why it cannot: `None`
    /// means skip (not root, not CI).
    fn mount(test: &str, size: &str) -> Option<Tmpfs> {
        let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                !under_ci,
                "{test}: disk-fault tests must run as root under CI"
            );
            println!("{test}: skipped: mounting a tmpfs needs root");
            return None;
        }
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("run mount");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(!under_ci, "{test}: cannot mount a tmpfs under CI: {why}");
            println!("{test}: skipped: cannot mount a tmpfs: {why}");
            return None;
        }
        Some(Tmpfs {
            _parent: parent,
            path,
        })
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode} {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system of `dir` with one file until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 4096];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

fn submit(d: &Daemon, target: &str) -> (u16, Value) {
    d.call(
        "POST",
        "/api/v1/tasks",
        Some(
            json!({"kind": "test", "target": target, "params": {"times": 1000, "round_ms": 1000}}),
        ),
    )
}

fn healthz(d: &Daemon) -> (u16, Value) {
    d.call_as(None, "GET", "/healthz", None)
}

fn pause(d: &Daemon) {
    let (status, body) = d.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200, "{body}");
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_store_unavailable(status: u16, body: &Value) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
}

/// Every id answers with its task: it was stored durably.
fn assert_stored(d: &Daemon, ids: &BTreeSet<u64>) {
    for id in ids {
        let (status, task) = d.call("GET", &format!("/api/v1/tasks/{id}"), None);
        assert_eq!(status, 200, "accepted task {id} is lost: {task}");
    }
}

#[test]
fn a_full_store_disk_refuses_requests_and_recovers_when_space_returns() {
    let Some(disk) = Tmpfs::mount("full store disk", "3m") else {
        return;
    };
    let d = Daemon::start(&disk.path, &[]);
    pause(&d);
    let mut accepted = BTreeSet::new();
    for n in 0..5 {
        let (status, reply) = submit(&d, &format!("asn:{n}"));
        assert_eq!(status, 202, "{reply}");
        accepted.insert(reply["id"].as_u64().unwrap());
    }
    let filler = fill(&disk.path);

    // Requests succeed while the store's files still have room, then the
    // first that does not fit is refused: 503, never 500, never lost.
    let mut refused = None;
    for n in 5..20_000 {
        let (status, reply) = submit(&d, &format!("asn:{n}"));
        match status {
            202 => {
                accepted.insert(reply["id"].as_u64().unwrap());
            }
            _ => {
                refused = Some((status, reply));
                break;
            }
        }
    }
    let (status, reply) = refused.expect("a full disk refuses requests");
    assert_store_unavailable(status, &reply);
    let (status, health) = healthz(&d);
    assert_eq!(
        (status, &health["status"]),
        (503, &json!("failing")),
        "{health}"
    );
    let (_, panel) = d.call("GET", "/api/v1/panel", None);
    assert_eq!(panel["store"]["ok"], false, "{panel}");
    let (status, reply) = submit(&d, "asn:999999");
    assert_store_unavailable(status, &reply);

    // Space returns: the daemon carries on by itself, no restart.
    std::fs::remove_file(&filler).unwrap();
    wait_until("/healthz to recover", 60, || healthz(&d).0 == 200);
    let (status, reply) = submit(&d, "asn:999999");
    assert_eq!(status, 202, "{reply}");
    accepted.insert(reply["id"].as_u64().unwrap());
    assert_stored(&d, &accepted);

    // Nothing accepted is lost across a crash either.
    let dir = d.data_dir.clone();
    d.kill9();
    let d = Daemon::start(&dir, &[]);
    pause(&d);
    assert_stored(&d, &accepted);
}

#[test]
fn a_deleted_database_is_noticed_and_ids_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    pause(&d);
    let mut ids = BTreeSet::new();
    for n in 0..3 {
        let (status, reply) = submit(&d, &format!("asn:{n}"));
        assert_eq!(status, 202, "{reply}");
        ids.insert(reply["id"].as_u64().unwrap());
    }
    assert_eq!(healthz(&d).0, 200);

    // rm groundcrew.db*
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("groundcrew.db") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let (status, health) = healthz(&d);
    assert_eq!(
        (status, &health["store"]),
        (503, &json!("failing")),
        "{health}"
    );
    let (status, reply) = submit(&d, "asn:100");
    assert_store_unavailable(status, &reply);
    let (status, reply) = submit(&d, "asn:101");
    assert_store_unavailable(status, &reply);
    let (_, panel) = d.call("GET", "/api/v1/panel", None);
    assert_eq!(panel["store"]["ok"], false, "{panel}");
    assert!(
        panel["store"]["error"].as_str().unwrap().contains("gone"),
        "{panel}"
    );

    // No recovery without a restart: the file is gone. The restart starts
    // a new store whose ids continue above every id handed out before.
    d.kill9();
    let d = Daemon::start(dir.path(), &[]);
    assert_eq!(healthz(&d).0, 200);
    let (status, reply) = submit(&d, "asn:0");
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_u64().unwrap();
    assert!(id > *ids.last().unwrap(), "id {id} repeats one of {ids:?}");
}

#[test]
fn a_read_only_store_refuses_to_start_and_starts_once_writable() {
    let Some(disk) = Tmpfs::mount("read-only store", "8m") else {
        return;
    };
    let first;
    {
        let d = Daemon::start(&disk.path, &[]);
        pause(&d);
        let (status, reply) = submit(&d, "asn:1");
        assert_eq!(status, 202, "{reply}");
        first = reply["id"].as_u64().unwrap();
        d.kill9();
    }
    // A mount cannot turn read-only while the daemon holds files open for
    // writing (EBUSY), so the read-only store is met at start.
    disk.remount("ro");
    let mut child = Command::new(binary())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&disk.path)
        .env("GROUNDCREW_FEEDS", "[]")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("groundcrew started on a read-only data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&disk.path.display().to_string())
            && stderr.contains("Read-only file system"),
        "the error names the path and the OS error: {stderr}"
    );

    disk.remount("rw");
    let d = Daemon::start(&disk.path, &[]);
    assert_eq!(healthz(&d).0, 200);
    let (status, _) = d.call("GET", &format!("/api/v1/tasks/{first}"), None);
    assert_eq!(status, 200);
    let (status, reply) = submit(&d, "asn:2");
    assert_eq!(status, 202, "{reply}");
    assert!(reply["id"].as_u64().unwrap() > first);
}

/// Every artifact file under `dir`: entity name to bytes. Temp files (the
/// writer's `.name.tmp-*`) are returned apart.
fn artifact_files(dir: &Path) -> (Vec<(String, Vec<u8>)>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut temps = Vec::new();
    for class in std::fs::read_dir(dir).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&class).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                temps.push(path);
                continue;
            }
            let entity = format!(
                "{}:{}",
                class.file_name().unwrap().to_string_lossy(),
                path.file_stem().unwrap().to_string_lossy()
            );
            files.push((entity, std::fs::read(&path).unwrap()));
        }
    }
    (files, temps)
}

fn entities(d: &Daemon) -> Value {
    let (status, body) = d.call("GET", "/api/v1/entities?limit=10000", None);
    assert_eq!(status, 200, "{body}");
    body
}

fn wait_idle(d: &Daemon, secs: u64) {
    d.wait_panel("the daemon to be idle", secs, |p| p["state"] == "idle");
}

#[test]
fn a_full_artifact_disk_leaves_no_torn_file_and_the_store_unaffected() {
    let Some(disk) = Tmpfs::mount("full artifact disk", "8m") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        format!("artifacts:\n  dir: {}\n", disk.path.display()),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let d = Daemon::start_with_feeds(data.path(), &["--config", &config]);
    wait_until("start-up artifacts", 120, || {
        let e = entities(&d);
        e["total"].as_u64() > Some(0) && e["counts"]["ok"] == e["total"]
    });
    wait_idle(&d, 120);
    let (before, _) = artifact_files(&disk.path);
    assert!(before.len() >= 4, "the sample feed has entities");

    // Lose some artifacts, then fill the disk and ask for them again.
    let lost: Vec<&(String, Vec<u8>)> = before.iter().step_by(2).collect();
    for (entity, _) in &lost {
        let (class, id) = entity.split_once(':').unwrap();
        std::fs::remove_file(disk.path.join(class).join(format!("{id}.txt"))).unwrap();
    }
    let filler = fill(&disk.path);
    let (status, reply) = d.call(
        "POST",
        "/api/v1/entities/rebuild",
        Some(json!({"status": ["missing"]})),
    );
    assert_eq!(status, 202, "{reply}");
    // Whether the publishes fail at once or are retried, the store keeps
    // taking requests meanwhile.
    assert_eq!(healthz(&d).0, 200);
    let (status, reply) = submit(&d, "asn:1");
    assert_eq!(status, 202, "the store is unaffected: {reply}");
    let id = reply["id"].as_u64().unwrap();
    let (status, _) = d.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert!(
        status == 202 || status == 409,
        "cancel of the test task: {status}"
    );

    // No torn file, whatever became of the tasks: every file on the disk
    // is whole (its hash is the manifest's), none is half-written.
    let check_whole = |d: &Daemon| {
        let (files, temps) = artifact_files(&disk.path);
        assert!(temps.is_empty(), "temp files left: {temps:?}");
        let listing = entities(d);
        for (entity, bytes) in &files {
            let record = listing["entities"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["entity"] == json!(entity))
                .unwrap_or_else(|| panic!("{entity} on disk but not listed"));
            assert_ne!(
                record["status"], "corrupt",
                "torn artifact {entity}: {record}"
            );
            let original = before.iter().find(|(e, _)| e == entity).map(|(_, b)| b);
            assert_eq!(
                Some(bytes),
                original,
                "{entity} differs from the clean build"
            );
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    check_whole(&d);

    // Space returns: artifacts come back (by retry, or by asking again).
    std::fs::remove_file(&filler).unwrap();
    wait_idle(&d, 300);
    let (status, reply) = d.call(
        "POST",
        "/api/v1/entities/rebuild",
        Some(json!({"status": ["missing"]})),
    );
    assert!(status == 202 || status == 400, "{status} {reply}");
    wait_until("every artifact back", 300, || {
        let e = entities(&d);
        e["counts"]["ok"] == e["total"]
    });
    wait_idle(&d, 300);
    check_whole(&d);
    let (after, _) = artifact_files(&disk.path);
    assert_eq!(after.len(), before.len());
    assert_eq!(healthz(&d).0, 200);
}
