//! The entity writer runs one sink operation at a time, whatever the number
//! of concurrent publishers, and batches what queues up meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use groundcrew_actors::{
    Artifact, ArtifactSink, EntityName, EntityWriter, FsSink, Manifest, MemoryStore, Metrics,
    Publish, PublishOutcome, SinkError,
};
use sha2::{Digest, Sha256};

/// Wraps a sink, counting calls and how many ran at once.
struct Counting {
    inner: FsSink,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    publish_calls: AtomicUsize,
}

impl Counting {
    fn new(inner: FsSink) -> Self {
        Counting {
            inner,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            publish_calls: AtomicUsize::new(0),
        }
    }

    fn observe<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Widens the window in which an overlapping call would be seen.
        std::thread::sleep(Duration::from_millis(2));
        let result = f();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl ArtifactSink for Counting {
    fn publish(&self, batch: &[Artifact]) -> Vec<Result<(), SinkError>> {
        self.publish_calls.fetch_add(1, Ordering::SeqCst);
        self.observe(|| self.inner.publish(batch))
    }

    fn remove(&self, entity: &EntityName) -> Result<bool, SinkError> {
        self.observe(|| self.inner.remove(entity))
    }

    fn exists_with_size(&self, entity: &EntityName, size: u64) -> Result<bool, SinkError> {
        self.observe(|| self.inner.exists_with_size(entity, size))
    }
}

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
    let record = Manifest::get(&*manifest, &de).await.unwrap().unwrap();
    let expected: String = Sha256::digest(b"v9")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(record.hash, expected);
    assert_eq!(record.size, 2);
}
