//! Embedding groundcrew in an actix daemon: a custom kind that renders one
//! artifact per entity and publishes it through the entity writer, with the
//! panel printed as the work goes.
//!
//! Run with `cargo run -p groundcrew-actors --example embed`; artifacts land
//! in a temporary directory whose path is printed.

use std::sync::Arc;
use std::time::Duration;

use groundcrew_actors::prelude::*;
use groundcrew_actors::{EntityWriter, FsSink, MemoryStore, Metrics, PublishOutcome};

/// Renders a country's artifact in five steps, publishing it at the end.
async fn render_country(ctx: TaskContext) -> TaskResult {
    let Target::Entity(entity) = ctx.target().clone() else {
        return Err(TaskError::fatal("render works on one entity at a time"));
    };
    ctx.stage("collecting prefixes");
    let mut lines = String::new();
    for i in 0..5u64 {
        ctx.checkpoint()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        lines.push_str(&format!("192.0.2.{}/32\n", i * 8));
        ctx.progress(i + 1, 5);
    }
    ctx.stage("publishing");
    let outcome = ctx.publish(entity, lines, Some("feed-v1".into())).await?;
    let written = matches!(outcome, PublishOutcome::Written(_));
    Ok(serde_json::json!({ "written": written, "hash": outcome.record().hash }))
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(FsSink::open(dir.path())?.with_extension("txt"));
    let writer = EntityWriter::start(sink, store.clone(), metrics.clone());

    let mut kinds = Registry::new();
    kinds.register("render", render_country)?;
    let supervisor = Supervisor::builder()
        .registry(kinds)
        .store(store)
        .writer(writer)
        .metrics(metrics)
        .pool("background", 2)
        .start()
        .await?;

    for country in ["DE", "FR", "NL"] {
        let spec = TaskSpec::new(
            "render",
            format!("country:{country}").parse()?,
            Trigger::FeedUpdate,
        );
        let reply = supervisor.send(Submit(spec)).await??;
        println!(
            "submitted country:{country}: task {} {:?}",
            reply.id, reply.outcome
        );
    }
    // A repeated request while the first is queued is merged into it.
    let again = TaskSpec::new("render", "country:NL".parse()?, Trigger::Operator);
    println!(
        "again country:NL: {:?}",
        supervisor.send(Submit(again)).await??.outcome
    );

    loop {
        let panel = supervisor.send(PanelSnapshot::default()).await?;
        for t in &panel.running {
            let progress = t
                .progress
                .map(|p| format!("{}/{}", p.done, p.total))
                .unwrap_or_default();
            println!(
                "  running {:<16} stage={:<20} {progress}",
                t.name,
                t.stage.as_deref().unwrap_or("-")
            );
        }
        if panel.state == Activity::Idle {
            break;
        }
        println!(
            "  {} of {} workers busy, {} pending",
            panel.workers.active, panel.workers.limit, panel.pending_total
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for entry in std::fs::read_dir(dir.path().join("country"))? {
        let entry = entry?;
        println!(
            "artifact {} ({} bytes)",
            entry.path().display(),
            entry.metadata()?.len()
        );
    }
    Ok(())
}
