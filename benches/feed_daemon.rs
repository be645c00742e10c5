//! The daemon's full build of a generated 500,000-line ip2asn feed, end to
//! end, beside its floor from the same run; printed as JSON lines for
//! benches/compare/run.sh (not a criterion bench: one build takes seconds).
//!
//! - `groundcrew-feed-build`: `groundcrew serve` started on an empty data
//!   directory with the feed configured, timed until every artifact is `ok`
//!   and the panel is idle; with the process's peak and current RSS then.
//! - `write-bytes-floor`: the same artifacts' bytes written as temp files,
//!   one `syncfs`, then renamed into place: the least a durable, atomic
//!   publication of them must do.
//! - `groundcrew-unchanged-restart`: the daemon stopped (SIGTERM) and
//!   started again on the unchanged feed, timed until it is idle with every
//!   artifact `ok`.
//!
//! Usage: `cargo bench --bench feed_daemon -- [LINES]` (default 500,000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, SIGTERM};
use groundcrew::feed::generate_ip2asn;

fn report(system: &str, lines: usize, elapsed: Duration, extra: serde_json::Value) {
    let mut line = serde_json::json!({
        "system": system,
        "tasks": lines,
        "secs": elapsed.as_secs_f64(),
        "per_s": lines as f64 / elapsed.as_secs_f64(),
    });
    line.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    println!("{line}");
}

/// `VmHWM` and `VmRSS` of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Every artifact file under `root`: (path relative to it, bytes).
fn artifacts(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for class in std::fs::read_dir(root).unwrap() {
        let class = class.unwrap().path();
        for file in std::fs::read_dir(&class).unwrap() {
            let path = file.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_owned(), bytes));
        }
    }
    out
}

/// The floor: temp files, one `syncfs`, renames.
fn write_bytes_floor(root: &Path, files: &[(PathBuf, Vec<u8>)]) -> Duration {
    let start = Instant::now();
    for (rel, bytes) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path.with_extension("tmp"), bytes).unwrap();
    }
    let dir = std::fs::File::open(root).unwrap();
    assert_eq!(unsafe { libc::syncfs(dir.as_raw_fd()) }, 0, "syncfs");
    for (rel, _) in files {
        let path = root.join(rel);
        std::fs::rename(path.with_extension("tmp"), &path).unwrap();
    }
    start.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; the one other argument is the count.
    let lines = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("LINES: a number of feed lines"))
        .unwrap_or(500_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    std::fs::write(dir.path().join("feeds/geo.tsv"), generate_ip2asn(lines, 1)).unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        "feeds:\n  - name: geo\n    path: feeds/geo.tsv\n    format: ip2asn\nfeed_poll_ms: 600000\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];

    let start = Instant::now();
    let daemon = Daemon::start_with_feeds(dir.path(), &args);
    let body = daemon.wait_artifacts_ok(600, 1);
    let elapsed = start.elapsed();
    let (peak, now) = rss_mib(daemon.pid());
    let entities = body["total"].as_u64().unwrap_or(0);
    report(
        "groundcrew-feed-build",
        lines,
        elapsed,
        serde_json::json!({ "entities": entities, "peak_rss_mib": peak, "rss_mib": now }),
    );

    let files = artifacts(&dir.path().join("artifacts"));
    let floor = tempfile::tempdir_in(dir.path()).unwrap();
    let elapsed = write_bytes_floor(floor.path(), &files);
    report(
        "write-bytes-floor",
        lines,
        elapsed,
        serde_json::json!({ "entities": files.len() }),
    );

    daemon.signal_and_wait(SIGTERM);
    let start = Instant::now();
    let daemon = Daemon::start_with_feeds(dir.path(), &args);
    daemon.wait_artifacts_ok(600, 1);
    let elapsed = start.elapsed();
    let (peak, now) = rss_mib(daemon.pid());
    report(
        "groundcrew-unchanged-restart",
        lines,
        elapsed,
        serde_json::json!({ "peak_rss_mib": peak, "rss_mib": now }),
    );
    daemon.signal_and_wait(SIGTERM);
}
