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
