//! Readers only ever see complete artifacts, and the writer touches nothing
//! when the content is unchanged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use groundcrew_actors::{
    EntityName, EntityWriter, FsSink, Manifest, MemoryStore, Metrics, Publish, PublishOutcome,
    Remove, RunToken, TaskId,
};

const MIB: usize = 1 << 20;

struct Fixture {
    dir: tempfile::TempDir,
    manifest: Arc<MemoryStore>,
    writer: Addr<EntityWriter>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FsSink::open(dir.path()).unwrap().with_extension("txt"));
    let manifest = Arc::new(MemoryStore::new());
    let writer = EntityWriter::start(sink, manifest.clone(), Metrics::unregistered().unwrap());
    Fixture {
        dir,
        manifest,
        writer,
    }
}

impl Fixture {
    async fn publish(&self, entity: &EntityName, content: &[u8]) -> PublishOutcome {
        self.writer
            .send(Publish::new(entity.clone(), content))
            .await
            .unwrap()
            .unwrap()
    }
}

fn de() -> EntityName {
    "country:DE".parse().unwrap()
}

#[actix_rt::test]
async fn readers_see_only_complete_contents_while_large_artifacts_are_replaced() {
    let f = fixture();
    let path = f.dir.path().join("country/DE.txt");
    let a = vec![b'a'; MIB];
    let b = vec![b'b'; MIB];
    let stop = Arc::new(AtomicBool::new(false));
    let complete_reads = Arc::new(AtomicUsize::new(0));

    let reader = {
        let (path, stop, complete_reads) = (path.clone(), stop.clone(), complete_reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match std::fs::read(&path) {
                    Ok(seen) => {
                        let whole = seen.len() == MIB
                            && (seen.iter().all(|&c| c == b'a') || seen.iter().all(|&c| c == b'b'));
                        assert!(
                            whole,
                            "read a partial or mixed artifact of {} bytes",
                            seen.len()
                        );
                        complete_reads.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
                }
            }
        })
    };

    for round in 0..20 {
        let content = if round % 2 == 0 { &a } else { &b };
        let outcome = f.publish(&de(), content).await;
        assert!(
            matches!(outcome, PublishOutcome::Written(_)),
            "round {round}"
        );
        // Lets the reader catch the file between replacements too.
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("reader saw a partial artifact");
    assert!(
        complete_reads.load(Ordering::SeqCst) > 0,
        "reader never saw the artifact"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b);
}

#[actix_rt::test]
async fn unchanged_content_is_skipped_without_touching_file_or_manifest() {
    let f = fixture();
    let path = f.dir.path().join("country/DE.txt");
    let first = f
        .writer
        .send(Publish::new(de(), "DE 1.2.3.0/24\n").with_source(TaskId(7), RunToken(1)))
        .await
        .unwrap()
        .unwrap();
    let PublishOutcome::Written(written) = first else {
        panic!("first publication not written: {first:?}");
    };
    assert_eq!(
        (written.task, written.run),
        (Some(TaskId(7)), Some(RunToken(1)))
    );
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();

    actix_rt::time::sleep(Duration::from_millis(20)).await;
    let again = f.publish(&de(), b"DE 1.2.3.0/24\n").await;
    assert_eq!(again, PublishOutcome::Unchanged(written.clone()));
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    let record = f.manifest.artifact(&de()).await.unwrap();
    assert_eq!(record, Some(written));
}

#[actix_rt::test]
async fn deleted_artifact_is_written_again_even_with_unchanged_content() {
    let f = fixture();
    let path = f.dir.path().join("country/DE.txt");
    f.publish(&de(), b"same").await;
    std::fs::remove_file(&path).unwrap();
    let outcome = f.publish(&de(), b"same").await;
    assert!(matches!(outcome, PublishOutcome::Written(_)), "{outcome:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"same");
}

#[actix_rt::test]
async fn remove_deletes_the_file_and_the_manifest_record() {
    let f = fixture();
    let path = f.dir.path().join("country/DE.txt");
    f.publish(&de(), b"gone soon").await;
    let remove = || Remove {
        entity: de(),
        source: None,
    };

    assert!(f.writer.send(remove()).await.unwrap().unwrap());
    assert!(!path.exists());
    assert_eq!(f.manifest.artifact(&de()).await.unwrap(), None);
    assert!(!f.writer.send(remove()).await.unwrap().unwrap());

    // After a removal the same content counts as new.
    let outcome = f.publish(&de(), b"gone soon").await;
    assert!(matches!(outcome, PublishOutcome::Written(_)), "{outcome:?}");
}
