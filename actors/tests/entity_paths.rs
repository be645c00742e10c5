//! Entity names can never make the writer create a file outside its root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use groundcrew_actors::{EntityName, EntityWriter, FsSink, MemoryStore, Metrics, Publish};

fn entries(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn path_escaping_names_cannot_become_a_publication() {
    for bad in [
        "../x:y",
        "country:../../etc",
        "country:a/b",
        "/abs:x",
        "country:..",
        "country:.",
        ":x",
        "country:",
        ":",
        "",
        "country:DE\0",
        "country\0:DE",
        "country:D\u{e9}",
        "\u{1F30D}:x",
        "country:a\\b",
        "country:~",
    ] {
        let parsed = bad.parse::<EntityName>().map(|e| Publish::new(e, "x"));
        let err = parsed.expect_err(bad);
        assert!(
            err.to_string().contains("invalid entity name"),
            "{bad:?}: {err}"
        );
    }
}

#[actix_rt::test]
async fn valid_names_land_strictly_under_the_root_and_nothing_outside() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("artifacts");
    let sink = Arc::new(FsSink::open(&root).unwrap());
    let before = entries(outer.path());
    let writer = EntityWriter::start(
        sink.clone(),
        Arc::new(MemoryStore::new()),
        Metrics::unregistered().unwrap(),
    );

    let names = ["country:DE", "asn:13335", "feed_2:a-b_C", "c:-", "c:_"];
    for name in names {
        let entity: EntityName = name.parse().unwrap();
        writer
            .send(Publish::new(entity.clone(), name))
            .await
            .unwrap()
            .unwrap();
        let path = sink.artifact_path(&entity).unwrap();
        assert_eq!(path, root.join(entity.class()).join(entity.id()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), name);
    }

    assert_eq!(entries(outer.path()), before);
    let canonical_root = root.canonicalize().unwrap();
    let files = files_under(&root);
    assert_eq!(files.len(), names.len(), "{files:?}");
    for file in files {
        let file = file.canonicalize().unwrap();
        assert!(
            file.starts_with(&canonical_root) && file != canonical_root,
            "{file:?}"
        );
    }
}
