//! The entity writer runs one sink operation at a time, whatever the number
//! of concurrent publishers, and batches what queues up meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use groundcrew_actors::{
    EntityName, EntityWriter, FsSink, Manifest, MemoryStore, Metrics, Publish, PublishOutcome,
};
use sha2::{Digest, Sha256};

mod common;

use common::counting_sink::Counting;

const WORKERS: usize = 8;
const PER_WORKER: usize = 25;

fn content(worker: usize, i: usize, round: usize) -> String {
    format!("worker {worker} artifact {i} round {round}\n")
}

fn metric(registry: &prometheus::Registry, name: &str) -> prometheus::proto::MetricFamily {
    registry
        .gather()
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

fn writes(registry: &prometheus::Registry, result: &str) -> f64 {
    metric(registry, "groundcrew_artifact_writes_total")
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == result))
        .map_or(0.0, |m| m.get_counter().get_value())
}

#[actix_rt::test]
async fn eight_concurrent_publishers_never_overlap_in_the_sink_and_share_batches() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Counting::new(FsSink::open(dir.path()).unwrap()));
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let writer = EntityWriter::start(sink.clone(), Arc::new(MemoryStore::new()), metrics);

    let mut handles = Vec::new();
    for worker in 0..WORKERS {
        let writer = writer.clone();
        handles.push(actix_rt::spawn(async move {
            // Two rounds: the second replaces every artifact of the first.
            for round in 0..2 {
                for i in 0..PER_WORKER {
                    let entity = format!("w{worker}:a{i}").parse().unwrap();
                    let outcome = writer
                        .send(Publish::new(entity, content(worker, i, round)))
                        .await
                        .unwrap()
                        .unwrap();
                    assert!(matches!(outcome, PublishOutcome::Written(_)), "{outcome:?}");
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }

    assert_eq!(sink.max_in_flight.load(Ordering::SeqCst), 1);
    let publishes = WORKERS * PER_WORKER * 2;
    let calls = sink.publish_calls.load(Ordering::SeqCst);
    assert!(
        calls < publishes,
        "{calls} sink calls for {publishes} publications"
    );
    for worker in 0..WORKERS {
        for i in 0..PER_WORKER {
            let path = dir.path().join(format!("w{worker}/a{i}"));
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                content(worker, i, 1)
            );
        }
    }
    let mailbox = metric(&registry, "groundcrew_writer_mailbox_depth");
    assert_eq!(mailbox.get_metric()[0].get_gauge().get_value(), 0.0);
    assert_eq!(writes(&registry, "written"), publishes as f64);
    assert_eq!(writes(&registry, "failed"), 0.0);
}

#[actix_rt::test]
async fn last_of_several_queued_publications_of_one_entity_wins() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FsSink::open(dir.path()).unwrap());
    let manifest = Arc::new(MemoryStore::new());
    let writer = EntityWriter::start(sink, manifest.clone(), Metrics::unregistered().unwrap());
    let de: EntityName = "country:DE".parse().unwrap();

    // Sends enter the mailbox in call order, so v9 is the last publication.
    let sends: Vec<_> = (0..10)
        .map(|v| writer.send(Publish::new(de.clone(), format!("v{v}"))))
        .collect();
    for answer in futures::future::join_all(sends).await {
        answer.unwrap().unwrap();
    }

    assert_eq!(
        std::fs::read_to_string(dir.path().join("country/DE")).unwrap(),
        "v9"
    );
    let record = manifest.artifact(&de).await.unwrap().unwrap();
    let expected: String = Sha256::digest(b"v9")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(record.hash, expected);
    assert_eq!(record.size, 2);
}

/// With eight workers publishing through their task contexts, the sink
/// still sees one operation at a time, and every artifact lands.
#[actix_rt::test]
async fn tasks_in_a_pool_of_eight_publish_one_at_a_time() {
    use groundcrew_actors::{Registry, Supervisor, TaskContext, TaskState, TaskStore};

    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Counting::new(FsSink::open(dir.path()).unwrap()));
    let store = MemoryStore::new();
    let writer = EntityWriter::start(
        sink.clone(),
        Arc::new(store.clone()),
        Metrics::unregistered().unwrap(),
    );
    let mut registry = Registry::new();
    registry
        .register("render", |ctx: TaskContext| async move {
            let id = match ctx.target() {
                groundcrew_actors::Target::Entity(e) => e.id().to_owned(),
                groundcrew_actors::Target::All => unreachable!(),
            };
            for i in 0..PER_WORKER {
                let entity: EntityName = format!("asn:{id}x{i}").parse()?;
                ctx.publish(entity, content(0, i, 0), Some("v1".into()))
                    .await?;
                ctx.progress(i as u64 + 1, PER_WORKER as u64);
            }
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    let sup = Supervisor::builder()
        .registry(registry)
        .store(Arc::new(store.clone()))
        .writer(writer)
        .pool("background", WORKERS)
        .start()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for w in 0..WORKERS * 2 {
        let spec = groundcrew_actors::TaskSpec::new(
            "render",
            format!("asn:{w}").parse().unwrap(),
            groundcrew_actors::Trigger::Operator,
        );
        ids.push(
            sup.send(groundcrew_actors::Submit(spec))
                .await
                .unwrap()
                .unwrap()
                .id,
        );
    }
    for id in ids {
        let r = loop {
            let r = store.get(id).await.unwrap().unwrap();
            if r.state.is_terminal() {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(r.state, TaskState::Succeeded, "{:?}", r.error);
    }
    assert_eq!(
        sink.max_in_flight.load(Ordering::SeqCst),
        1,
        "two publishes overlapped"
    );
    assert!(
        sink.publish_calls.load(Ordering::SeqCst) < WORKERS * 2 * PER_WORKER,
        "no batching happened"
    );
    let records = store.artifacts().await.unwrap();
    assert_eq!(records.len(), WORKERS * 2 * PER_WORKER);
    let r = records
        .iter()
        .find(|r| r.entity.as_str() == "asn:3x7")
        .unwrap();
    assert_eq!(r.source_version.as_deref(), Some("v1"));
    assert!(
        r.task.is_some() && r.run.is_some(),
        "the publishing execution is recorded"
    );
    let on_disk = std::fs::read_to_string(dir.path().join("asn/3x7")).unwrap();
    assert_eq!(on_disk, content(0, 7, 0));
}
