//! The admin API's submit path on the real daemon (SQLite, its embedded
//! default), printed as JSON lines for benches/compare/run.sh (not a
//! criterion bench: it starts a daemon and runs for seconds).
//!
//! - `groundcrew-http-submit`: 3 clients, each on its own keep-alive
//!   connection, each sending one `POST /api/v1/tasks` at a time (distinct
//!   targets, so nothing coalesces) for a few seconds; submits per second
//!   and the latency percentiles of a durable answer.
//! - `groundcrew-http-batch`: the 3 clients sending arrays of 1,000 tasks
//!   (encoded before the clock starts); accepted tasks per second, each
//!   durable before its answer.
//! - `http-floor`: the same 3 clients on `GET /healthz` (no store write):
//!   what the HTTP stack alone costs on this machine in the same run.
//! - `groundcrew-panel-get`: then, with everything submitted still queued
//!   and 100 event streams (`/api/v1/panel/events`) open, the 3 clients on
//!   `GET /api/v1/panel`; `queued` says how many tasks the panel counted.
//!
//! The worker pool is paused (limit 0) so that the queue only grows and
//! the figures are of the submit path alone.
//!
//! Usage: `cargo bench --bench http_submit -- [SECONDS]` (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{percentile_ms, Daemon};
use serde_json::{json, Value};

const CLIENTS: usize = 3;
const BATCH: usize = 1000;
/// Most batches sent (encoded beforehand): 600k tasks.
const BATCHES: usize = 600;
const STREAMS: usize = 100;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// Where the daemon listens and its admin token (a [`Daemon`] is not
/// `Sync`; the clients share this).
struct Api {
    base: String,
    token: String,
}

fn post(agent: &ureq::Agent, d: &Api, path: &str, body: &Value) -> u16 {
    post_bytes(agent, d, path, serde_json::to_vec(body).unwrap())
}

fn post_bytes(agent: &ureq::Agent, d: &Api, path: &str, body: Vec<u8>) -> u16 {
    let resp = agent
        .post(format!("{}{path}", d.base))
        .header("Authorization", format!("Bearer {}", d.token))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("daemon reachable");
    let status = resp.status().as_u16();
    resp.into_body().read_to_string().unwrap();
    status
}

/// `GET path` with the admin token: its status and body.
fn get(agent: &ureq::Agent, d: &Api, path: &str) -> (u16, String) {
    let resp = agent
        .get(format!("{}{path}", d.base))
        .header("Authorization", format!("Bearer {}", d.token))
        .call()
        .expect("daemon reachable");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_to_string().unwrap())
}

fn get_json(agent: &ureq::Agent, d: &Api, path: &str) -> Value {
    let (status, body) = get(agent, d, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `STREAMS` event streams reading for `run`; each counts its events in
/// `events`. A stream ends with the request's timeout.
fn open_streams(
    d: &Api,
    run: Duration,
    events: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..STREAMS)
        .map(|_| {
            let url = format!("{}/api/v1/panel/events?token={}", d.base, d.token);
            let events = Arc::clone(events);
            std::thread::spawn(move || {
                use std::io::BufRead;
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(run + Duration::from_secs(2)))
                    .build()
                    .into();
                let resp = agent.get(url).call().expect("event stream opens");
                let mut reader = std::io::BufReader::new(resp.into_body().into_reader());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.starts_with("data:") {
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                    line.clear();
                }
            })
        })
        .collect()
}

/// `CLIENTS` threads calling `request(client, n)` for `run`; every
/// request's latency.
fn clients(
    run: Duration,
    request: impl Fn(&ureq::Agent, usize, u64) -> bool + Sync,
) -> Vec<Duration> {
    let mut all = std::thread::scope(|s| {
        let request = &request;
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                s.spawn(move || {
                    let agent = agent();
                    let mut lat = Vec::new();
                    let end = Instant::now() + run;
                    let mut n = 0;
                    while Instant::now() < end {
                        let t = Instant::now();
                        if !request(&agent, c, n) {
                            break;
                        }
                        lat.push(t.elapsed());
                        n += 1;
                    }
                    lat
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    all.sort();
    all
}

fn report(system: &str, run: Duration, lat: &[Duration], tasks: usize) {
    println!(
        "{}",
        json!({
            "system": system,
            "tasks": tasks,
            "secs": run.as_secs_f64(),
            "per_s": tasks as f64 / run.as_secs_f64(),
            "clients": CLIENTS,
            "p50_ms": percentile_ms(lat, 0.5),
            "p99_ms": percentile_ms(lat, 0.99),
            "max_ms": percentile_ms(lat, 1.0),
        })
    );
}

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let run = Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let (status, body) = daemon.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200, "{body}");
    let d = Api {
        base: daemon.base.clone(),
        token: daemon.token.clone(),
    };

    let lat = clients(run, |agent, _, _| {
        assert_eq!(get(agent, &d, "/healthz").0, 200);
        true
    });
    report("http-floor", run, &lat, lat.len());

    let lat = clients(run, |agent, c, n| {
        let task =
            json!({"kind": "test", "target": format!("asn:{c}-{n}"), "params": {"times": 1}});
        assert_eq!(post(agent, &d, "/api/v1/tasks", &task), 202);
        true
    });
    report("groundcrew-http-submit", run, &lat, lat.len());

    // The batches' bodies are encoded before the clock starts, so that the
    // clients' own JSON work does not take the daemon's cores.
    let bodies: Vec<Vec<u8>> = (0..BATCHES)
        .map(|n| {
            let batch: Vec<Value> = (0..BATCH)
                .map(|i| json!({"kind": "test", "target": format!("asn:b{n}-{i}"), "params": {"times": 1}}))
                .collect();
            serde_json::to_vec(&batch).unwrap()
        })
        .collect();
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let lat = clients(run, |agent, _, _| {
        let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed) as usize) else {
            return false;
        };
        let status = post_bytes(agent, &d, "/api/v1/tasks", body.clone());
        assert_eq!(status, 202, "batch answered {status}");
        true
    });
    let elapsed = start.elapsed();
    let sent = (next.load(Ordering::Relaxed) as usize).min(BATCHES);
    report(
        "groundcrew-http-batch",
        elapsed,
        &lat[..sent.min(lat.len())],
        sent * BATCH,
    );
    let agent = agent();

    let events = Arc::new(AtomicU64::new(0));
    let streams = open_streams(&d, run, &events);
    let lat = clients(run, |agent, _, _| {
        get_json(agent, &d, "/api/v1/panel");
        true
    });
    let queued = get_json(&agent, &d, "/api/v1/panel")["pending_total"].clone();
    for s in streams {
        s.join().unwrap();
    }
    println!(
        "{}",
        json!({
            "system": "groundcrew-panel-get",
            "tasks": lat.len(),
            "secs": run.as_secs_f64(),
            "per_s": lat.len() as f64 / run.as_secs_f64(),
            "clients": CLIENTS,
            "streams": STREAMS,
            "stream_events": events.load(Ordering::Relaxed),
            "queued": queued,
            "p50_ms": percentile_ms(&lat, 0.5),
            "p99_ms": percentile_ms(&lat, 0.99),
            "max_ms": percentile_ms(&lat, 1.0),
        })
    );
}
