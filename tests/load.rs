//! Load on the read side while 10k tasks are queued: clients on loopback
//! hit the panel, the metrics and the event stream of the real daemon. The
//! figures (requests, latency percentiles) go to `benches/results/load.json`
//! for the benchmark records; the test asserts only that no request failed.
//! Speed targets live in the benchmarks, not here.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{percentile_ms, try_call, Daemon};
use serde_json::json;

const QUEUED: u64 = 10_000;
const SUBMITTERS: u64 = 4;
const READERS: usize = 4;
const LOAD_FOR: Duration = Duration::from_secs(5);

#[test]
fn panel_metrics_and_events_answer_every_request_with_10k_tasks_queued() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    // Paused: the tasks stay queued for the whole run.
    let (status, body) = d.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200, "{body}");

    let base = d.base.clone();
    let token = d.token.clone();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let (base, token) = (base.clone(), token.clone());
            std::thread::spawn(move || {
                for i in (s..QUEUED).step_by(SUBMITTERS as usize) {
                    let task = json!({"kind": "test", "target": format!("asn:{}", i + 1)});
                    let (status, body) =
                        try_call(&base, Some(&token), "POST", "/api/v1/tasks", Some(task)).unwrap();
                    assert_eq!(status, 202, "{body}");
                }
            })
        })
        .collect();
    for s in submitters {
        s.join().unwrap();
    }
    let (_, panel) = d.call("GET", "/api/v1/panel", None);
    assert_eq!(panel["pending_total"], QUEUED, "every task queued");

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (base, token) = (base.clone(), token.clone());
            let (stop, failed) = (Arc::clone(&stop), Arc::clone(&failed));
            std::thread::spawn(move || {
                let path = if r % 2 == 0 {
                    "/api/v1/panel"
                } else {
                    "/metrics"
                };
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match try_call(&base, Some(&token), "GET", path, None) {
                        Ok((200, _)) => latencies.push(started.elapsed()),
                        other => {
                            eprintln!("GET {path}: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                (path, latencies)
            })
        })
        .collect();
    let events = {
        let (base, token, stop) = (base.clone(), token.clone(), Arc::clone(&stop));
        std::thread::spawn(move || -> Result<u64, String> {
            use std::io::BufRead;
            let resp = Daemon::agent()
                .get(format!("{base}/api/v1/panel/events?token={token}"))
                .call()
                .map_err(|e| e.to_string())?;
            if resp.status() != 200 {
                return Err(format!("event stream answered {}", resp.status()));
            }
            let mut reader = std::io::BufReader::new(resp.into_body().into_reader());
            let mut events = 0;
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                line.clear();
                if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                    return Err("event stream ended".into());
                }
                events += u64::from(line.starts_with("data:"));
            }
            Ok(events)
        })
    };
    std::thread::sleep(LOAD_FOR);
    stop.store(true, Ordering::Relaxed);

    let mut by_path: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    for r in readers {
        let (path, latencies) = r.join().unwrap();
        by_path.entry(path).or_default().extend(latencies);
    }
    let mut figures = serde_json::Map::new();
    for (path, mut latencies) in by_path {
        latencies.sort();
        figures.insert(
            path.to_owned(),
            json!({
                "requests": latencies.len(),
                "p50_ms": percentile_ms(&latencies, 0.5),
                "p99_ms": percentile_ms(&latencies, 0.99),
            }),
        );
    }
    let events = events.join().unwrap().expect("the event stream streams");
    figures.insert("sse_events".into(), json!(events));
    let results = json!({
        "test": "tests/load.rs",
        "queued_tasks": QUEUED,
        "readers": READERS,
        "seconds": LOAD_FOR.as_secs(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "figures": figures,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("load.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    eprintln!("{results:#}");

    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {results}"
    );
    assert!(events > 0, "no panel event arrived: {results}");
}
