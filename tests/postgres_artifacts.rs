//! The PostgreSQL artifact sink (`artifacts.sink: postgres`): what one
//! node publishes every node reads, and a publication from a run that no
//! longer holds its task (another run, another node, a lapsed lease) is
//! refused in SQL, also through the entity writer; two daemons on the
//! sink both report the artifacts in the database ok.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pg::PgCluster;
use futures::executor::block_on;
use groundcrew::store::PostgresStore;
use groundcrew_actors::{
    content_hash, Artifact, ArtifactSink, EntityName, EntityWriter, Manifest, Metrics, Publish,
    PublishError, RunToken, SinkError, TaskId,
};

const LEASE: Duration = Duration::from_secs(3600);

fn entity(name: &str) -> EntityName {
    name.parse().unwrap()
}

fn artifact(name: &str, content: &str, source: Option<(u64, u64)>) -> Artifact {
    Artifact {
        entity: entity(name),
        content: content.into(),
        source: source.map(|(t, r)| (TaskId(t), RunToken(r))),
    }
}

/// Two nodes on a fresh database, and the database's name.
fn two_nodes(pg: &PgCluster) -> (Arc<PostgresStore>, Arc<PostgresStore>, String) {
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let a = Arc::new(PostgresStore::open(&url).unwrap());
    let b = Arc::new(PostgresStore::open(&url).unwrap());
    // The queues are not used; joining names each store's node.
    std::mem::forget(a.join_cluster("alpha", LEASE).unwrap());
    std::mem::forget(b.join_cluster("beta", LEASE).unwrap());
    (a, b, db)
}

/// A task running as `run` on `node`, its lease `lease` from now.
fn running_task(pg: &PgCluster, db: &str, id: u64, run: u64, node: &str, lease: &str) {
    pg.psql_in(
        db,
        &format!(
            "INSERT INTO groundcrew.tasks (id, kind, target, trigger, triggers, params, priority,
                pool, state, attempts, run, errors, merged, created_at, started_at, node,
                lease_expires_at)
             VALUES ({id}, 'artifact', 'asn:{id}', 'api', '[\"api\"]', '{{}}', 0, 'background',
                'running', 1, {run}, '[]', 0, now(), now(), '{node}', now() + interval '{lease}')"
        ),
    );
}

#[test]
fn an_artifact_one_node_publishes_is_served_identically_by_the_other() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let (a, b, _) = two_nodes(pg);
    let content = "DE 1.2.3.0/24\n\0binary\u{fffd}";
    let results = a.publish(&[
        artifact("country:DE", content, None),
        artifact("asn:1", "one", None),
    ]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let served = block_on(b.artifact_content(&entity("country:DE"))).unwrap();
    assert_eq!(served.as_deref(), Some(content.as_bytes()));
    assert!(b.holds(&entity("country:DE"), content.as_bytes()).unwrap());
    assert!(!b.holds(&entity("country:DE"), b"other").unwrap());
    assert!(!b.holds(&entity("country:FR"), b"").unwrap());
    // The manifest row came with the content, in the same transaction.
    let record = block_on(Manifest::artifact(&*b, &entity("country:DE")))
        .unwrap()
        .expect("manifest row");
    assert_eq!(record.hash, content_hash(content.as_bytes()));
    assert_eq!(record.size, content.len() as u64);

    assert!(b.remove(&entity("asn:1")).unwrap());
    assert!(!a.remove(&entity("asn:1")).unwrap());
    assert_eq!(
        block_on(a.artifact_content(&entity("asn:1"))).unwrap(),
        None
    );
}

#[test]
fn only_the_run_that_holds_its_task_on_this_node_may_publish() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let (a, b, db) = two_nodes(pg);
    running_task(pg, &db, 1000, 7, "alpha", "1 hour");
    running_task(pg, &db, 1001, 8, "alpha", "-1 second");

    let results = a.publish(&[
        artifact("country:DE", "current", Some((1000, 7))),
        artifact("country:FR", "older run", Some((1000, 6))),
        artifact("country:IT", "lapsed lease", Some((1001, 8))),
        artifact("country:ES", "unknown task", Some((4242, 1))),
    ]);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    for (result, (entity_name, task, run)) in results[1..].iter().zip([
        ("country:FR", 1000, 6),
        ("country:IT", 1001, 8),
        ("country:ES", 4242, 1),
    ]) {
        match result {
            Err(SinkError::StaleRun {
                entity: e,
                task: t,
                run: r,
            }) => {
                assert_eq!((e.as_str(), t.0, r.0), (entity_name, task, run));
            }
            other => panic!("{entity_name}: expected StaleRun, got {other:?}"),
        }
        assert_eq!(
            block_on(b.artifact_content(&entity(entity_name))).unwrap(),
            None
        );
        assert_eq!(
            block_on(Manifest::artifact(&*b, &entity(entity_name))).unwrap(),
            None
        );
    }
    // The right run, but the task is held by the other node.
    let other_node = b.publish(&[artifact("country:DE", "from beta", Some((1000, 7)))]);
    assert!(
        matches!(other_node[0], Err(SinkError::StaleRun { .. })),
        "{other_node:?}"
    );
    let served = block_on(b.artifact_content(&entity("country:DE"))).unwrap();
    assert_eq!(served.as_deref(), Some(&b"current"[..]));
}

#[actix_rt::test]
async fn the_writer_reports_a_refused_publication_as_a_stale_run() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let (a, _b, db) = two_nodes(pg);
    running_task(pg, &db, 2000, 3, "beta", "1 hour");
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let writer = EntityWriter::start(a.clone(), a.clone(), metrics);
    let stale = Publish::new(entity("country:DE"), "late").with_source(TaskId(2000), RunToken(3));
    match writer.send(stale).await.unwrap() {
        Err(PublishError::StaleRun { task, stale, .. }) => {
            assert_eq!((task.0, stale.0), (2000, 3));
        }
        other => panic!("expected StaleRun, got {other:?}"),
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("groundcrew_stale_runs_total{write=\"publish\"} 1"),
        "{text}"
    );
    let fresh = Publish::new(entity("country:DE"), "fresh");
    writer.send(fresh).await.unwrap().unwrap();
    let served = a.artifact_content(&entity("country:DE")).await.unwrap();
    assert_eq!(served.as_deref(), Some(&b"fresh"[..]));
}

/// A daemon node on `url` with the built-in sample feed, publishing to
/// PostgreSQL, with its own (unused) artifact directory.
fn sink_node(dir: &std::path::Path, name: &str, url: &str) -> common::Daemon {
    common::Daemon::start_with_env(
        dir,
        &[],
        &[
            ("GROUNDCREW_STORE", url),
            ("GROUNDCREW_NODE", name),
            ("GROUNDCREW_LEASE_S", "2"),
            ("GROUNDCREW_ARTIFACTS__SINK", "postgres"),
        ],
    )
}

#[test]
fn two_daemons_on_the_postgres_sink_serve_the_same_artifacts() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = sink_node(dir_a.path(), "a", &url);
    let b = sink_node(dir_b.path(), "b", &url);
    // Each node's integrity check hashes the content stored in the
    // database, whichever node published it.
    let on_a = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.wait_artifacts_ok(60, 1000)
    }))
    .unwrap_or_else(|_| {
        let tasks = "SELECT id, target, state, run, node, attempts, errors, error \
                     FROM groundcrew.tasks WHERE state <> 'succeeded'";
        let activity = "SELECT pid, state, wait_event_type, wait_event, left(query, 60) \
                        FROM pg_stat_activity WHERE datname = current_database()";
        panic!(
            "tasks not succeeded: {}\nsessions: {}",
            pg.psql_in(&db, tasks),
            pg.psql_in(&db, activity)
        )
    });
    let on_b = b.wait_artifacts_ok(60, 1000);
    let hashes = |body: &serde_json::Value| -> Vec<(String, String)> {
        body["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let name = e["entity"].as_str().unwrap().to_owned();
                (name, e["hash"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let (on_a, on_b) = (hashes(&on_a), hashes(&on_b));
    assert!(!on_a.is_empty());
    assert_eq!(on_a, on_b);
    let stored = pg.psql_in(
        &db,
        "SELECT entity || ' ' || encode(sha256(content), 'hex') FROM groundcrew.artifacts \
         ORDER BY entity COLLATE \"C\"",
    );
    let mut stored: Vec<(String, String)> = stored
        .lines()
        .map(|l| {
            let (e, h) = l.split_once(' ').unwrap();
            (e.to_owned(), h.to_owned())
        })
        .collect();
    stored.sort();
    let mut listed = on_a.clone();
    listed.sort();
    assert_eq!(listed, stored);
    // No node wrote a file: the artifacts live in the database only.
    for dir in [dir_a.path(), dir_b.path()] {
        let files: Vec<_> = std::fs::read_dir(dir.join("artifacts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.is_empty(), "{files:?}");
    }
}

#[actix_rt::test]
async fn a_removal_from_a_run_that_lost_its_task_is_refused() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let (a, _b, db) = two_nodes(pg);
    running_task(pg, &db, 3000, 3, "alpha", "-1 second");
    running_task(pg, &db, 3001, 1, "alpha", "1 hour");
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let writer = EntityWriter::start(a.clone(), a.clone(), metrics);
    for name in ["country:DE", "country:FR"] {
        writer
            .send(Publish::new(entity(name), "kept"))
            .await
            .unwrap()
            .unwrap();
    }
    // Its lease lapsed: the artifact and its manifest row stay.
    let late = groundcrew_actors::Remove {
        entity: entity("country:DE"),
        source: Some((TaskId(3000), RunToken(3))),
    };
    match writer.send(late).await.unwrap() {
        Err(PublishError::StaleRun { task, stale, .. }) => {
            assert_eq!((task.0, stale.0), (3000, 3));
        }
        other => panic!("expected StaleRun, got {other:?}"),
    }
    let served = a.artifact_content(&entity("country:DE")).await.unwrap();
    assert_eq!(served.as_deref(), Some(&b"kept"[..]));
    assert!(Manifest::artifact(&*a, &entity("country:DE"))
        .await
        .unwrap()
        .is_some());
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("groundcrew_stale_runs_total{write=\"remove\"} 1"),
        "{text}"
    );
    // A run that holds its task removes.
    let current = groundcrew_actors::Remove {
        entity: entity("country:FR"),
        source: Some((TaskId(3001), RunToken(1))),
    };
    assert!(writer.send(current).await.unwrap().unwrap());
    let served = a.artifact_content(&entity("country:FR")).await.unwrap();
    assert_eq!(served, None);
}
