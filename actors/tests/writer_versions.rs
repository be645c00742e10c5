//! An unchanged publication still records the source version it was built
//! from, so an artifact the current source agrees with is never listed as
//! built from an older version.

use std::sync::Arc;

use groundcrew_actors::{
    EntityName, EntityWriter, FsSink, Manifest, MemoryStore, Metrics, Publish, PublishOutcome,
};

#[actix_rt::test]
async fn unchanged_publish_records_the_new_source_version() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FsSink::open(dir.path()).unwrap());
    let store = Arc::new(MemoryStore::new());
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let writer = EntityWriter::start(sink, store.clone(), metrics);
    let entity: EntityName = "geo:a".parse().unwrap();

    let first = writer
        .send(Publish::new(entity.clone(), "same\n").with_source_version("geo@1"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, PublishOutcome::Written(_)));

    let again = writer
        .send(Publish::new(entity.clone(), "same\n").with_source_version("geo@2"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&again, PublishOutcome::Unchanged(r) if r.source_version.as_deref() == Some("geo@2")),
        "unchanged outcome must carry the new version: {again:?}"
    );
    assert_eq!(again.record().hash, first.record().hash);

    let record = store.artifact(&entity).await.unwrap().expect("record kept");
    assert_eq!(record.source_version.as_deref(), Some("geo@2"));
    assert_eq!(record.written_at, first.record().written_at);
}
