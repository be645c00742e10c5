//! Drains N no-op tasks through apalis 1.0 and prints one JSON line with
//! tasks per second, as benches/compare/run.sh expects of every system.
//! Time runs from the first push to the last task's end, as in groundcrew's
//! drains: enqueueing is part of the work.
//!
//! Usage: `apalis-drain memory|sqlite|sqlite-full|postgres N LIMIT [URL]`
//! (`sqlite` is apalis-sqlite as its `setup` configures it, which sets
//! `synchronous = OFF`; `sqlite-full` sets `synchronous = FULL` again, as
//! groundcrew runs; `postgres` needs the database URL).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;

type Done = Arc<(AtomicUsize, usize)>;

/// The job: count, and stop the worker at the last one.
async fn noop(_n: u32, done: Data<Done>, worker: WorkerContext) -> Result<(), BoxDynError> {
    let (count, total) = &**done;
    if count.fetch_add(1, Ordering::SeqCst) + 1 == *total {
        worker.stop()?;
    }
    Ok(())
}

fn report(system: &str, tasks: usize, limit: usize, elapsed: Duration) {
    println!(
        "{}",
        serde_json::json!({
            "system": system,
            "tasks": tasks,
            "limit": limit,
            "secs": elapsed.as_secs_f64(),
            "per_s": tasks as f64 / elapsed.as_secs_f64(),
        })
    );
}

async fn memory(tasks: usize, limit: usize) -> Duration {
    let mut backend = MemoryStorage::new();
    let done: Done = Arc::new((AtomicUsize::new(0), tasks));
    let start = Instant::now();
    backend
        .push_bulk((0..tasks as u32).collect())
        .await
        .unwrap();
    WorkerBuilder::new("memory")
        .backend(backend)
        .concurrency(limit)
        .data(done)
        .build(noop)
        .run()
        .await
        .unwrap();
    start.elapsed()
}

async fn sqlite(tasks: usize, limit: usize, full: bool) -> Duration {
    use apalis_sqlite::{Config, SqlitePoolOptions, SqliteStorage};
    let dir = std::env::temp_dir().join(format!("apalis-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("jobs.db").display());
    // One connection, so that `synchronous = FULL` set after setup() (which
    // turns syncing off) holds for every statement.
    let pool = SqlitePoolOptions::new()
        .max_connections(if full { 1 } else { 10 })
        .connect(&url)
        .await
        .unwrap();
    SqliteStorage::setup(&pool).await.unwrap();
    if full {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&pool)
            .await
            .unwrap();
    }
    let config = Config::default().queue("drain").batch_size(100);
    let mut backend = SqliteStorage::new(&pool).with_config(config);
    let done: Done = Arc::new((AtomicUsize::new(0), tasks));
    let start = Instant::now();
    backend
        .push_bulk((0..tasks as u32).collect())
        .await
        .unwrap();
    WorkerBuilder::new("sqlite")
        .backend(backend)
        .concurrency(limit)
        .data(done)
        .build(noop)
        .run()
        .await
        .unwrap();
    let elapsed = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

async fn postgres(tasks: usize, limit: usize, url: &str) -> Duration {
    use apalis_postgres::{Config, PgPool, PostgresStorage};
    let pool = PgPool::connect(url).await.unwrap();
    PostgresStorage::setup(&pool).await.unwrap();
    let config = Config::default().queue("drain").batch_size(100);
    let mut backend = PostgresStorage::new(&pool)
        .with_config(config)
        .with_pubsub();
    let done: Done = Arc::new((AtomicUsize::new(0), tasks));
    let start = Instant::now();
    backend
        .push_bulk((0..tasks as u32).collect())
        .await
        .unwrap();
    WorkerBuilder::new("postgres")
        .backend(backend)
        .concurrency(limit)
        .data(done)
        .build(noop)
        .run()
        .await
        .unwrap();
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: apalis-drain memory|sqlite|sqlite-full|postgres N LIMIT [URL]";
    let (Some(which), Some(tasks), Some(limit)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let tasks: usize = tasks.parse().expect("N: a number of tasks");
    let limit: usize = limit.parse().expect("LIMIT: a concurrency limit");
    let (system, elapsed) = match which.as_str() {
        "memory" => ("apalis-memory", memory(tasks, limit).await),
        "sqlite" => ("apalis-sqlite", sqlite(tasks, limit, false).await),
        "sqlite-full" => ("apalis-sqlite-full", sqlite(tasks, limit, true).await),
        "postgres" => {
            let url = args.get(4).expect("postgres needs the database URL");
            ("apalis-postgres", postgres(tasks, limit, url).await)
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    report(system, tasks, limit, elapsed);
}
