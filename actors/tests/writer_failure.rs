//! A failing sink fails only the publications it concerns: callers get an
//! error naming the entity, the manifest keeps the previous record, and the
//! writer goes on serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use groundcrew_actors::{
    Artifact, ArtifactSink, EntityName, EntityWriter, FsSink, Manifest, MemoryStore, Metrics,
    Publish, PublishError, PublishOutcome, SinkError, SinkOp,
};

/// Fails every artifact of class `broken`, and everything while `down`.
struct Flaky {
    inner: FsSink,
    down: AtomicBool,
}

impl Flaky {
    fn refuses(&self, entity: &EntityName) -> bool {
        self.down.load(Ordering::SeqCst) || entity.class() == "broken"
    }

    fn error(entity: &EntityName) -> SinkError {
        SinkError::io(
            SinkOp::WriteTemp,
            entity.as_str(),
            std::io::Error::other("disk on fire"),
        )
    }
}

impl ArtifactSink for Flaky {
    fn publish(&self, batch: &[Artifact]) -> Vec<Result<(), SinkError>> {
        let healthy: Vec<Artifact> = batch
            .iter()
            .filter(|a| !self.refuses(&a.entity))
            .cloned()
            .collect();
        let mut results = self.inner.publish(&healthy).into_iter();
        batch
            .iter()
            .map(|a| {
                if self.refuses(&a.entity) {
                    Err(Self::error(&a.entity))
                } else {
                    results.next().unwrap()
                }
            })
            .collect()
    }

    fn remove(&self, entity: &EntityName) -> Result<bool, SinkError> {
        if self.refuses(entity) {
            return Err(Self::error(entity));
        }
        self.inner.remove(entity)
    }

    fn holds(&self, entity: &EntityName, content: &[u8]) -> Result<bool, SinkError> {
        self.inner.holds(entity, content)
    }
}

fn entity(name: &str) -> EntityName {
    name.parse().unwrap()
}

#[actix_rt::test]
async fn sink_failure_names_the_entity_and_spares_the_rest_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Flaky {
        inner: FsSink::open(dir.path()).unwrap(),
        down: AtomicBool::new(false),
    });
    let manifest = Arc::new(MemoryStore::new());
    let writer = EntityWriter::start(sink, manifest.clone(), Metrics::unregistered().unwrap());

    let (bad, good) = futures::join!(
        writer.send(Publish::new(entity("broken:x"), "x")),
        writer.send(Publish::new(entity("country:DE"), "de")),
    );
    let err = bad.unwrap().unwrap_err();
    assert!(matches!(err, PublishError::Sink { .. }), "{err:?}");
    assert!(err.to_string().contains("broken:x"), "{err}");
    assert!(err.is_retryable(), "an I/O error is retryable: {err:?}");
    assert!(matches!(good.unwrap().unwrap(), PublishOutcome::Written(_)));
    assert_eq!(manifest.artifact(&entity("broken:x")).await.unwrap(), None);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("country/DE")).unwrap(),
        "de"
    );
}

#[actix_rt::test]
async fn failed_replacement_keeps_the_previous_artifact_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Flaky {
        inner: FsSink::open(dir.path()).unwrap(),
        down: AtomicBool::new(false),
    });
    let manifest = Arc::new(MemoryStore::new());
    let writer = EntityWriter::start(
        sink.clone(),
        manifest.clone(),
        Metrics::unregistered().unwrap(),
    );
    let de = entity("country:DE");
    let old = writer
        .send(Publish::new(de.clone(), "old"))
        .await
        .unwrap()
        .unwrap();

    sink.down.store(true, Ordering::SeqCst);
    let err = writer
        .send(Publish::new(de.clone(), "new"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("country:DE"), "{err}");
    assert_eq!(
        manifest.artifact(&de).await.unwrap().as_ref(),
        Some(old.record())
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("country/DE")).unwrap(),
        "old"
    );

    // The writer is still serving once the sink recovers.
    sink.down.store(false, Ordering::SeqCst);
    let new = writer
        .send(Publish::new(de.clone(), "new"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(new, PublishOutcome::Written(_)), "{new:?}");
    assert_eq!(
        manifest.artifact(&de).await.unwrap().as_ref(),
        Some(new.record())
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("country/DE")).unwrap(),
        "new"
    );
}
