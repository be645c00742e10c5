//! What is particular to the PostgreSQL store, beyond the conformance
//! suite: the test server itself, ids across reopen, writes across a
//! server restart, and migrations run twice.

mod common;

use common::pg::PgCluster;

#[test]
fn test_cluster_serves_restarts_and_leaves_nothing_behind() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_database();
    pg.psql_in(
        "gc_test_0",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (7)",
    );
    pg.restart();
    assert_eq!(pg.psql_in("gc_test_0", "SELECT x FROM t"), "7");
    pg.stop();
    assert_eq!(pg.pid(), None);
    pg.start_again();
    assert_eq!(pg.psql("SELECT 1"), "1");
    let (root, pid) = (pg.root().to_owned(), pg.pid().unwrap());
    drop(pg);
    assert!(!root.exists(), "{} left behind", root.display());
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
    assert!(!alive, "postgres {pid} still runs");
}

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use groundcrew::store::{PostgresOpenError, PostgresStore};
use groundcrew_actors::{
    Change, Priority, StoreError, TaskId, TaskRecord, TaskSpec, TaskState, TaskStore, Timestamp,
    Trigger,
};

fn task(id: u64, target: &str) -> TaskRecord {
    let spec = TaskSpec::new("refresh", target.parse().unwrap(), Trigger::Api);
    TaskRecord::new_queued(
        TaskId(id),
        spec,
        "default".into(),
        Priority::AUTOMATIC,
        Timestamp::now(),
    )
}

fn put(record: TaskRecord) -> Vec<Change> {
    vec![Change::Put(Arc::new(record))]
}

#[test]
fn ids_never_repeat_after_reopen_or_beside_another_store() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let store = PostgresStore::open(&url).unwrap();
        // More than one block, so that refills count too.
        for _ in 0..300 {
            let id = store.allocate_id();
            assert!(seen.insert(id), "{id:?} handed out twice");
        }
        let last = *seen.last().unwrap();
        block_on(store.write(put(task(last.0, "asn:1")))).unwrap();
    }
    // Two stores on one database at once (as two nodes would be).
    let (a, b) = (
        PostgresStore::open(&url).unwrap(),
        PostgresStore::open(&url).unwrap(),
    );
    for _ in 0..300 {
        for store in [&a, &b] {
            let id = store.allocate_id();
            assert!(seen.insert(id), "{id:?} handed out twice");
        }
    }
}

#[test]
fn a_write_while_the_server_restarts_fails_and_a_later_one_succeeds() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database();
    let store = PostgresStore::open(&url).unwrap();
    block_on(store.write(put(task(1, "asn:1")))).unwrap();
    assert!(store.writable().is_ok());

    pg.stop();
    let failed = block_on(store.write(put(task(2, "asn:2"))));
    assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
    let error = store.writable().unwrap_err().to_string();
    assert!(
        error.contains("PostgreSQL postgres://postgres@127.0.0.1:"),
        "{error}"
    );
    assert!(!error.contains(common::pg::PASSWORD), "{error}");

    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = block_on(store.write(put(task(3, "asn:3")))) {
        assert!(Instant::now() < deadline, "never wrote again: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(store.writable().is_ok());
    let stored: Vec<u64> = block_on(store.unfinished())
        .unwrap()
        .iter()
        .map(|t| t.id.0)
        .collect();
    assert_eq!(stored, [1, 3], "the failed write changed nothing");
}

#[test]
fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    // Two stores migrating at once: the advisory lock serializes them.
    let opened: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&url).map(drop))
        })
        .collect();
    for open in opened {
        open.join().unwrap().unwrap();
    }
    let store = PostgresStore::open(&url).unwrap();
    block_on(store.write(put(task(5, "asn:5")))).unwrap();
    drop(store);
    assert_eq!(
        pg.psql_in(
            &db,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM groundcrew.schema_version"
        ),
        "1,2,3,4,5,6",
        "each step applied once"
    );

    pg.psql_in(
        &db,
        "INSERT INTO groundcrew.schema_version (version) VALUES (99)",
    );
    match PostgresStore::open(&url) {
        Err(e @ PostgresOpenError::TooNew { found: 99, .. }) => {
            assert!(!e.to_string().contains(common::pg::PASSWORD), "{e}");
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
    assert_eq!(
        pg.psql_in(&db, "SELECT count(*) FROM groundcrew.tasks"),
        "1"
    );
}

#[test]
fn queued_writes_share_commits_and_a_bad_value_fails_alone() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let store = PostgresStore::open(&pg.create_database()).unwrap();
    let before = store.commits();
    let writes: Vec<_> = (1..=500)
        .map(|id| store.write(put(task(id, &format!("asn:{id}")))))
        .collect();
    let bad = store.write(put(task(u64::MAX, "asn:0")));
    for write in writes {
        block_on(write).unwrap();
    }
    let refused = block_on(bad).unwrap_err().to_string();
    assert!(refused.contains("beyond PostgreSQL's bigint"), "{refused}");
    let commits = store.commits() - before;
    assert!(commits < 100, "500 writes took {commits} commits");
    assert_eq!(block_on(store.unfinished()).unwrap().len(), 500);
}

#[test]
fn a_second_store_with_a_node_name_in_use_is_refused_until_the_first_is_gone() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let first = PostgresStore::open(&url).unwrap();
    first.claim_node("n1").unwrap();
    let second = PostgresStore::open(&url).unwrap();
    let refused = second.claim_node("n1").unwrap_err().to_string();
    assert!(
        refused.contains("another groundcrew node named \"n1\""),
        "{refused}"
    );
    assert!(!refused.contains(common::pg::PASSWORD), "{refused}");
    // Another name is free.
    PostgresStore::open(&url).unwrap().claim_node("n2").unwrap();
    drop(first);
    second.claim_node("n1").unwrap();
    block_on(second.write(put(task(1, "asn:1")))).unwrap();
    assert_eq!(
        block_on(second.get(TaskId(1))).unwrap().unwrap().state,
        TaskState::Queued
    );
}

#[test]
fn writable_recovers_without_a_write_once_the_server_is_back() {
    let Some(pg) = PgCluster::start() else { return };
    let store = PostgresStore::open(&pg.create_database()).unwrap();
    pg.stop();
    assert!(block_on(store.write(put(task(1, "asn:1")))).is_err());
    assert!(store.writable().is_err());
    pg.start_again();
    // No write from here on: the store probes the server by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.writable() {
        assert!(Instant::now() < deadline, "still not writable: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cluster_node_is_woken_by_an_enqueue_from_anywhere() {
    use groundcrew::store::PgQueue;
    use groundcrew_actors::SharedQueue;
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let store = std::sync::Arc::new(PostgresStore::open(&url).unwrap());
    let queue: PgQueue = store.join_cluster("n1", Duration::from_secs(5)).unwrap();
    let mut wakeups = queue.wakeups();
    // Connected and listening: the first wake-up says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while *wakeups.borrow_and_update() == 0 {
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = *wakeups.borrow_and_update();
    // An application enqueues in its own session.
    let db = url.rsplit('/').next().unwrap();
    pg.psql_in(db, "SELECT task FROM groundcrew.enqueue('test', 'asn:1')");
    while *wakeups.borrow_and_update() == seen {
        assert!(
            std::time::Instant::now() < deadline,
            "no wake-up after an enqueue"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And the node claims what was enqueued.
    let claimed = block_on(queue.claim("background", 10, None)).unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].state, TaskState::Running);
    assert_eq!(claimed[0].attempts, 1);
}
