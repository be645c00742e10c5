//! What only the SQLite store promises: the schema enforces coalescing,
//! everything survives a reopen, files it cannot use are refused untouched,
//! and concurrent writers share commits.

use std::path::Path;
use std::sync::Arc;

use groundcrew::store::{OpenError, SqliteStore};
use groundcrew_actors::{
    ArtifactRecord, Change, HistoryCategory, Manifest, ManifestChange, Priority, StoreError,
    TaskId, TaskRecord, TaskSpec, TaskState, TaskStore, Timestamp, Trigger,
};
use sha2::{Digest, Sha256};

fn task(id: u64, target: &str, state: TaskState) -> TaskRecord {
    let at = Timestamp(1_795_000_000_000);
    let spec = TaskSpec::new("refresh", target.parse().unwrap(), Trigger::FeedUpdate);
    let mut r = TaskRecord::new_queued(TaskId(id), spec, "default".into(), Priority::AUTOMATIC, at);
    r.state = state;
    r.finished_at = state.is_terminal().then_some(at);
    r
}

fn put(record: TaskRecord) -> Vec<Change> {
    vec![Change::Put(Arc::new(record))]
}

fn hash(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_refuses_a_second_task_per_coalescing_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tasks.db")).unwrap();
    let follow_up = |id| TaskRecord {
        waiting_behind: Some(TaskId(1)),
        ..task(id, "country:DE", TaskState::Queued)
    };
    // One running, one queued and one follow-up per key may coexist.
    TaskStore::write(&store, put(task(1, "country:DE", TaskState::Running)))
        .await
        .unwrap();
    TaskStore::write(&store, put(task(2, "country:DE", TaskState::Queued)))
        .await
        .unwrap();
    TaskStore::write(&store, put(follow_up(3))).await.unwrap();
    // Another target, or another kind, is another key.
    TaskStore::write(&store, put(task(4, "country:FR", TaskState::Running)))
        .await
        .unwrap();
    let other_kind = TaskRecord {
        kind: "export".into(),
        ..task(5, "country:DE", TaskState::Running)
    };
    TaskStore::write(&store, put(other_kind)).await.unwrap();

    for duplicate in [
        task(6, "country:DE", TaskState::Running),
        task(7, "country:DE", TaskState::Queued),
        follow_up(8),
    ] {
        let id = duplicate.id;
        let err = TaskStore::write(&store, put(duplicate)).await.unwrap_err();
        match &err {
            StoreError::Conflict(message) => {
                assert!(message.contains("country:DE"), "{message}");
                assert!(message.contains("\"refresh\""), "{message}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(TaskStore::get(&store, id).await.unwrap(), None);
    }

    // Once the running task finishes, the key is free for another run.
    TaskStore::write(&store, put(task(1, "country:DE", TaskState::Succeeded)))
        .await
        .unwrap();
    TaskStore::write(&store, put(task(6, "country:DE", TaskState::Running)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_write_fails_alone_and_later_writes_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tasks.db")).unwrap();
    // Handed over back to back, so they very likely share one batch.
    let first = TaskStore::write(&store, put(task(1, "country:DE", TaskState::Running)));
    let conflict = TaskStore::write(&store, put(task(2, "country:DE", TaskState::Running)));
    let after = TaskStore::write(&store, put(task(3, "country:FR", TaskState::Running)));
    first.await.unwrap();
    assert!(matches!(conflict.await, Err(StoreError::Conflict(_))));
    after.await.unwrap();
    let ids: Vec<u64> = store
        .unfinished()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id.0)
        .collect();
    assert_eq!(ids, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_applies_none_of_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tasks.db")).unwrap();
    TaskStore::write(&store, put(task(1, "country:DE", TaskState::Running)))
        .await
        .unwrap();
    // The first change is fine on its own; the second conflicts with task 1.
    let write = TaskStore::write(
        &store,
        vec![
            Change::Put(Arc::new(task(2, "country:FR", TaskState::Queued))),
            Change::Put(Arc::new(task(3, "country:DE", TaskState::Running))),
        ],
    );
    assert!(matches!(write.await, Err(StoreError::Conflict(_))));
    assert_eq!(TaskStore::get(&store, TaskId(2)).await.unwrap(), None);
    assert_eq!(TaskStore::get(&store, TaskId(3)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything_and_ids_continue_above_deleted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let artifact = ArtifactRecord {
        entity: "country:DE".parse().unwrap(),
        hash: "ab".repeat(32),
        size: 12,
        written_at: Timestamp(1_795_000_000_000),
        source_version: Some("v1".into()),
        task: Some(TaskId(1)),
        run: None,
    };
    let last;
    {
        let store = SqliteStore::open(&path).unwrap();
        let queued = task(store.allocate_id().0, "country:DE", TaskState::Queued);
        let done = task(store.allocate_id().0, "country:FR", TaskState::Succeeded);
        last = done.id;
        TaskStore::write(
            &store,
            vec![Change::Put(Arc::new(queued)), Change::Put(Arc::new(done))],
        )
        .await
        .unwrap();
        Manifest::write(&store, vec![ManifestChange::Put(artifact.clone())])
            .await
            .unwrap();
        // The task with the largest id is gone, but its id stays used.
        assert!(store.delete(last).await.unwrap());
        // Handed over but never awaited: dropping the store still commits it.
        drop(TaskStore::write(
            &store,
            put(task(last.0 + 100, "country:AT", TaskState::Failed)),
        ));
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.allocate_id().0 > last.0 + 100);
    let unfinished = store.unfinished().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].target.to_string(), "country:DE");
    let failed = TaskStore::list(
        &store,
        HistoryCategory::Failed,
        groundcrew_actors::TaskFilter::default(),
        10,
        0,
    )
    .await
    .unwrap();
    assert_eq!(failed.total, 1);
    assert_eq!(Manifest::artifacts(&store).await.unwrap(), vec![artifact]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_from_a_newer_version_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let before = hash(&path);
    match SqliteStore::open(&path) {
        Err(OpenError::TooNew {
            path: p,
            found,
            supported,
        }) => {
            assert_eq!(p, path);
            assert_eq!(found, 999);
            assert!(supported < 999);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert_eq!(hash(&path), before);
    let message = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        message.contains("tasks.db") && message.contains("999"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_file_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    // Deterministic noise, longer than SQLite's 100-byte header.
    let noise: Vec<u8> = (0u32..8192)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &noise).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("tasks.db"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), noise);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_programs_database_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let before = hash(&path);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("other.db"), "{err}");
    assert_eq!(hash(&path), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_directory_is_an_open_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/tasks.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_all_survive_reopen() {
    const WRITERS: u64 = 64;
    const TASKS_EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let before = store.commits();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..TASKS_EACH {
                    let id = store.allocate_id().0;
                    let target = format!("country:W{w}T{i}");
                    TaskStore::write(&*store, put(task(id, &target, TaskState::Queued)))
                        .await
                        .unwrap();
                    TaskStore::write(&*store, put(task(id, &target, TaskState::Succeeded)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let writes = 2 * WRITERS * TASKS_EACH;
    let commits = store.commits() - before;
    assert!(
        commits * 4 < writes,
        "{writes} writes took {commits} commits: group commit is not batching"
    );
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    let page = TaskStore::list(
        &store,
        HistoryCategory::Finished,
        groundcrew_actors::TaskFilter::default(),
        1,
        0,
    )
    .await
    .unwrap();
    assert_eq!(page.total, WRITERS * TASKS_EACH);
    assert!(store.unfinished().await.unwrap().is_empty());
}

/// Removes the database and its WAL and shared-memory files, as
/// `rm groundcrew.db*` would.
fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_refuses_writes_and_a_new_one_never_repeats_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groundcrew.db");
    let mut last = 0;
    {
        let store = SqliteStore::open(&path).unwrap();
        for target in ["country:DE", "country:FR", "country:AT"] {
            let id = store.allocate_id();
            last = id.0;
            TaskStore::write(&store, put(task(id.0, target, TaskState::Queued)))
                .await
                .unwrap();
        }
        assert!(store.writable().is_ok());

        remove_database(&path);
        let why = store.writable().unwrap_err().to_string();
        assert!(
            why.contains("groundcrew.db") && why.contains("gone"),
            "{why}"
        );
        let id = store.allocate_id();
        let write = TaskStore::write(&store, put(task(id.0, "country:IT", TaskState::Queued)));
        match write.await {
            Err(StoreError::Backend(message)) => assert!(message.contains("gone"), "{message}"),
            other => panic!("a write into a deleted database answered {other:?}"),
        }
        // Still refused: nothing is accepted into a file nobody will read.
        assert!(TaskStore::write(&store, Vec::new()).await.is_err());
        assert!(store.writable().is_err());
    }
    // The next start creates a new database; its ids continue above every
    // id the lost one stored.
    let store = SqliteStore::open(&path).unwrap();
    let next = store.allocate_id();
    assert!(next.0 > last, "id {next} handed out again");
    assert_eq!(store.unfinished().await.unwrap(), Vec::new());
    TaskStore::write(&store, put(task(next.0, "country:DE", TaskState::Queued)))
        .await
        .unwrap();
    drop(store);
    // And a plain restart keeps the new database's own sequence.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.allocate_id().0, next.0 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_database_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groundcrew.db");
    let store = SqliteStore::open(&path).unwrap();
    TaskStore::write(&store, put(task(1, "country:DE", TaskState::Queued)))
        .await
        .unwrap();
    let other = dir.path().join("copy.db");
    std::fs::copy(&path, &other).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let write = TaskStore::write(&store, put(task(2, "country:FR", TaskState::Queued)));
    match write.await {
        Err(StoreError::Backend(message)) => assert!(message.contains("replaced"), "{message}"),
        other => panic!("a write into a replaced database answered {other:?}"),
    }
    assert!(store.writable().is_err());
}
