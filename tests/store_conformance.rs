//! The contract every store backend keeps, run once per backend.
//!
//! [`suite`] holds one generic test per behaviour of [`TaskStore`] and
//! [`Manifest`]; [`conformance_tests!`] instantiates all of them for a
//! backend given a factory. A backend is added with one line:
//!
//! ```ignore
//! conformance_tests!(memory, || MemoryStore::new());
//! ```
//!
//! A backend that needs something kept alive beside the store (a temporary
//! directory) uses `guarded` and returns `(store, guard)`; one that may be
//! missing on a developer's machine (a PostgreSQL server) uses `optional`
//! and returns `None` to skip.

mod common;

use common::pg::PgCluster;
use groundcrew::store::{PostgresStore, SqliteStore};
use groundcrew_actors::MemoryStore;

/// Instantiates every test of [`suite`] for one backend, in a module named
/// after it.
macro_rules! conformance_tests {
    // Checked first: `guarded || ...` would also parse as an expression.
    ($backend:ident, optional $factory:expr) => {
        conformance_tests!(@module $backend, $factory);
    };
    ($backend:ident, guarded $factory:expr) => {
        conformance_tests!(@module $backend, || Some(($factory)()));
    };
    ($backend:ident, $factory:expr) => {
        conformance_tests!(@module $backend, || Some((($factory)(), ())));
    };
    (@module $backend:ident, $factory:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;

            conformance_tests!(@tests $factory;
                put_then_get_round_trips_every_field,
                unacknowledged_writes_apply_in_call_order,
                report_applies_only_to_the_matching_running_execution,
                merge_applies_only_to_a_queued_task_and_keeps_unsent_triggers,
                a_put_from_an_older_claim_is_not_applied,
                a_put_from_an_older_claim_in_the_same_write_is_not_applied,
                history_pages_are_newest_first_with_category_totals,
                history_filters_by_kind_trigger_target_prefix_and_time,
                delete_removes_only_terminal_tasks,
                prune_removes_terminal_tasks_by_age_and_by_count,
                unfinished_returns_queued_and_running_in_id_order,
                allocated_ids_only_grow,
                manifest_puts_gets_lists_and_removes,
                log_keeps_the_newest_lines_per_task_oldest_first,
                log_lines_of_unknown_tasks_are_dropped,
                log_lines_go_with_their_task_when_deleted_or_pruned,
            );
        }
    };
    (@tests $factory:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                // The guard outlives the store: the store is moved into the
                // test and dropped when it returns.
                let Some((store, _guard)) = ($factory)() else {
                    return;
                };
                crate::suite::$test(store).await;
            }
        )*
    };
}

conformance_tests!(
    sqlite,
    guarded || {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path().join("tasks.db")).expect("open store");
        (store, dir)
    }
);

conformance_tests!(memory, MemoryStore::new);

// One server per test binary, one database per test.
conformance_tests!(
    postgres,
    optional || {
        let url = PgCluster::shared()?.create_database();
        Some((PostgresStore::open(&url).expect("open store"), ()))
    }
);

mod suite {
    //! The behaviours, generic over the backend.

    use std::sync::Arc;

    use groundcrew_actors::{
        ArtifactRecord, AttemptError, Change, EntityName, HistoryCategory, LogLine, Manifest,
        ManifestChange, Priority, Progress, Retention, RunToken, TaskFilter, TaskId, TaskLog,
        TaskLogLine, TaskRecord, TaskSpec, TaskState, TaskStore, Timestamp, Trigger,
        LOG_LINES_PER_TASK,
    };
    use serde_json::json;

    /// A fixed clock reading, so that ages in the tests are exact.
    const T0: Timestamp = Timestamp(1_795_000_000_000);

    /// A minimal task; each test sets what it is about.
    fn task(id: u64, target: &str, state: TaskState) -> TaskRecord {
        let spec = TaskSpec::new("refresh", target.parse().unwrap(), Trigger::Api);
        let mut r =
            TaskRecord::new_queued(TaskId(id), spec, "default".into(), Priority::AUTOMATIC, T0);
        r.state = state;
        r.finished_at = state.is_terminal().then_some(T0);
        r
    }

    /// A terminal task on its own target, so coalescing never interferes.
    fn finished(id: u64, state: TaskState, finished_at: Timestamp) -> TaskRecord {
        TaskRecord {
            finished_at: Some(finished_at),
            ..task(id, &format!("country:T{id}"), state)
        }
    }

    async fn put<S: TaskStore>(store: &S, records: impl IntoIterator<Item = TaskRecord>) {
        let changes = records
            .into_iter()
            .map(|r| Change::Put(Arc::new(r)))
            .collect();
        TaskStore::write(store, changes)
            .await
            .expect("durable write");
    }

    async fn get<S: TaskStore>(store: &S, id: u64) -> Option<TaskRecord> {
        TaskStore::get(store, TaskId(id)).await.expect("get")
    }

    async fn page_ids<S: TaskStore>(
        store: &S,
        category: HistoryCategory,
        limit: u64,
        offset: u64,
    ) -> (Vec<u64>, u64) {
        let page = TaskStore::list(store, category, TaskFilter::default(), limit, offset)
            .await
            .expect("list");
        (page.tasks.iter().map(|t| t.id.0).collect(), page.total)
    }

    pub(crate) async fn put_then_get_round_trips_every_field<S: TaskStore + Manifest>(store: S) {
        let full = TaskRecord {
            id: TaskId(7),
            kind: "geo_rebuild".into(),
            target: "country:DE".parse().unwrap(),
            trigger: Trigger::FeedUpdate,
            triggers: vec![
                Trigger::FeedUpdate,
                Trigger::Operator,
                Trigger::Custom("cron".into()),
            ],
            params: json!({"times": 3, "nested": {"a": [1, 2.5, null, "x"]}}),
            priority: Priority(-3),
            pool: "heavy".into(),
            state: TaskState::Running,
            attempts: 2,
            run: Some(RunToken(u64::from(u32::MAX) + 5)),
            stage: Some("download".into()),
            progress: Some(Progress {
                done: 40,
                total: 100,
            }),
            result: Some(json!(null)),
            error: Some("connection reset".into()),
            errors: vec![AttemptError {
                attempt: 1,
                at: Timestamp(T0.0 + 1),
                message: "timeout after 30s".into(),
            }],
            merged: 4,
            waiting_behind: Some(TaskId(3)),
            merged_into: Some(TaskId(9)),
            retry_of: Some(TaskId(3)),
            created_at: T0,
            started_at: Some(Timestamp(T0.0 + 2)),
            finished_at: Some(Timestamp(T0.0 + 3)),
            run_after: Some(Timestamp(T0.0 + 4)),
        };
        put(&store, [full.clone()]).await;
        assert_eq!(get(&store, 7).await.as_ref(), Some(&full));

        // Every optional field empty, and the `all` target.
        let empty = task(8, "all", TaskState::Queued);
        put(&store, [empty.clone()]).await;
        assert_eq!(get(&store, 8).await, Some(empty));

        // A put replaces the whole record.
        let replaced = TaskRecord {
            state: TaskState::Succeeded,
            result: Some(json!({"rows": 12})),
            progress: None,
            ..full
        };
        put(&store, [replaced.clone()]).await;
        assert_eq!(get(&store, 7).await, Some(replaced));
        assert_eq!(get(&store, 99).await, None);
    }

    pub(crate) async fn unacknowledged_writes_apply_in_call_order<S: TaskStore + Manifest>(
        store: S,
    ) {
        let mut record = task(1, "country:DE", TaskState::Queued);
        put(&store, [record.clone()]).await;
        record.state = TaskState::Running;
        record.run = Some(RunToken(1));
        // Fire and forget: a running task's reports are never awaited.
        drop(TaskStore::write(
            &store,
            vec![Change::Put(Arc::new(record.clone()))],
        ));
        for done in 1..=200 {
            drop(TaskStore::write(
                &store,
                vec![Change::Report {
                    id: TaskId(1),
                    run: RunToken(1),
                    stage: Some(format!("step {done}")),
                    progress: Some(Progress { done, total: 200 }),
                }],
            ));
        }
        // Only the last write is awaited; durability covers all earlier ones.
        TaskStore::write(
            &store,
            vec![Change::Report {
                id: TaskId(1),
                run: RunToken(1),
                stage: Some("last".into()),
                progress: None,
            }],
        )
        .await
        .unwrap();
        let stored = get(&store, 1).await.unwrap();
        assert_eq!(stored.state, TaskState::Running);
        assert_eq!(stored.stage.as_deref(), Some("last"));
        assert_eq!(stored.progress, None);
    }

    pub(crate) async fn merge_applies_only_to_a_queued_task_and_keeps_unsent_triggers<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        let merge =
            |id, merged, priority, triggers: Option<Vec<Trigger>>, run_after| Change::Merge {
                id: TaskId(id),
                merged,
                priority: Priority(priority),
                triggers,
                run_after,
            };
        let later = Timestamp(T0.0 + 60_000);
        put(
            &store,
            [
                task(1, "country:DE", TaskState::Queued),
                finished(2, TaskState::Succeeded, T0),
            ],
        )
        .await;
        // Two merges of one task in one write, the second without triggers
        // (its request added none); and one into a finished task.
        TaskStore::write(
            &store,
            vec![
                merge(1, 1, 0, Some(vec![Trigger::Api, Trigger::Operator]), None),
                merge(1, 2, 10, None, Some(later)),
                merge(2, 5, 10, Some(vec![Trigger::Operator]), None),
            ],
        )
        .await
        .unwrap();
        let one = get(&store, 1).await.unwrap();
        assert_eq!(
            (one.state, one.merged, one.priority, one.run_after),
            (TaskState::Queued, 2, Priority(10), Some(later))
        );
        assert_eq!(one.triggers, vec![Trigger::Api, Trigger::Operator]);
        assert_eq!(
            get(&store, 2).await,
            Some(finished(2, TaskState::Succeeded, T0)),
            "a finished task takes no merge"
        );
        // A put and a merge of a new task in one write: the merge applies to
        // what was put; a put after a merge replaces it.
        TaskStore::write(
            &store,
            vec![
                Change::Put(Arc::new(task(3, "country:FR", TaskState::Queued))),
                merge(3, 4, 0, Some(vec![Trigger::Api, Trigger::Operator]), None),
                merge(1, 3, 10, None, None),
                Change::Put(Arc::new(task(1, "country:DE", TaskState::Queued))),
            ],
        )
        .await
        .unwrap();
        let three = get(&store, 3).await.unwrap();
        assert_eq!(
            (three.merged, three.triggers),
            (4, vec![Trigger::Api, Trigger::Operator])
        );
        assert_eq!(
            get(&store, 1).await,
            Some(task(1, "country:DE", TaskState::Queued))
        );
    }

    pub(crate) async fn report_applies_only_to_the_matching_running_execution<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        let running = TaskRecord {
            run: Some(RunToken(2)),
            ..task(1, "country:DE", TaskState::Running)
        };
        let queued = TaskRecord {
            run: Some(RunToken(2)),
            ..task(2, "country:FR", TaskState::Queued)
        };
        put(&store, [running, queued]).await;
        let report = |id, run, stage: &str| Change::Report {
            id: TaskId(id),
            run: RunToken(run),
            stage: Some(stage.into()),
            progress: Some(Progress { done: 1, total: 2 }),
        };
        TaskStore::write(
            &store,
            vec![
                report(1, 1, "stale run"),
                report(2, 2, "not running"),
                report(3, 2, "unknown task"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(get(&store, 1).await.unwrap().stage, None);
        assert_eq!(get(&store, 2).await.unwrap().stage, None);
        assert_eq!(get(&store, 3).await, None);

        TaskStore::write(&store, vec![report(1, 2, "current")])
            .await
            .unwrap();
        let stored = get(&store, 1).await.unwrap();
        assert_eq!(stored.stage.as_deref(), Some("current"));
        assert_eq!(stored.progress, Some(Progress { done: 1, total: 2 }));
    }

    /// Issue 16: the store fences completions too. A put that carries an
    /// older run token than the stored record (the end of a run that lost
    /// its claim) is not applied; a put of the same or a later claim is,
    /// in one batch or across batches.
    pub(crate) async fn a_put_from_an_older_claim_is_not_applied<S: TaskStore + Manifest>(
        store: S,
    ) {
        let claim = |run: Option<u64>, state| TaskRecord {
            run: run.map(RunToken),
            ..task(1, "country:DE", state)
        };
        put(&store, [claim(None, TaskState::Queued)]).await;
        put(&store, [claim(Some(1), TaskState::Running)]).await;
        // A start and its end in one batch.
        put(
            &store,
            [
                claim(Some(2), TaskState::Running),
                claim(Some(2), TaskState::Succeeded),
            ],
        )
        .await;
        assert_eq!(get(&store, 1).await.unwrap().state, TaskState::Succeeded);
        put(&store, [claim(Some(3), TaskState::Running)]).await;
        // The stale run 2 ends after run 3 took the claim: dropped.
        put(&store, [claim(Some(2), TaskState::Failed)]).await;
        put(&store, [claim(None, TaskState::Queued)]).await;
        let stored = get(&store, 1).await.unwrap();
        assert_eq!(
            (stored.state, stored.run),
            (TaskState::Running, Some(RunToken(3)))
        );
        put(&store, [claim(Some(3), TaskState::Canceled)]).await;
        assert_eq!(get(&store, 1).await.unwrap().state, TaskState::Canceled);
    }

    /// The same rule inside one write (one batch): a store that folds a
    /// batch to the last put of each task must not let a stale put that
    /// comes after a later claim win.
    pub(crate) async fn a_put_from_an_older_claim_in_the_same_write_is_not_applied<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        let claim = |run: Option<u64>, state| TaskRecord {
            run: run.map(RunToken),
            ..task(1, "country:DE", state)
        };
        put(&store, [claim(Some(1), TaskState::Running)]).await;
        put(
            &store,
            [
                claim(Some(3), TaskState::Running),
                claim(Some(2), TaskState::Failed),
                claim(None, TaskState::Queued),
            ],
        )
        .await;
        let stored = get(&store, 1).await.unwrap();
        assert_eq!(
            (stored.state, stored.run),
            (TaskState::Running, Some(RunToken(3)))
        );
    }

    /// Issue 20: a listing's filter, as `TaskFilter::matches` defines it;
    /// totals count only what passes.
    pub(crate) async fn history_filters_by_kind_trigger_target_prefix_and_time<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        let mut tasks = Vec::new();
        for (id, kind, target, triggers, at) in [
            (1, "refresh", "country:DE", vec![Trigger::Api], 0),
            (2, "artifact", "country:FR", vec![Trigger::Operator], 10),
            (
                3,
                "artifact",
                "asn:13335",
                vec![Trigger::FeedUpdate, Trigger::Operator],
                20,
            ),
            (4, "artifact", "country:DK", vec![Trigger::FeedUpdate], 30),
        ] {
            let mut t = finished(id, TaskState::Failed, T0);
            t.kind = kind.into();
            t.target = target.parse().unwrap();
            t.trigger = triggers[0].clone();
            t.triggers = triggers;
            t.created_at = Timestamp(T0.0 + at * 1000);
            tasks.push(t);
        }
        put(&store, tasks.clone()).await;
        let check = |filter: TaskFilter, want: Vec<u64>| {
            let store = &store;
            let tasks = &tasks;
            async move {
                let oracle: Vec<u64> = tasks
                    .iter()
                    .rev()
                    .filter(|t| filter.matches(t))
                    .map(|t| t.id.0)
                    .collect();
                assert_eq!(oracle, want, "the test's own expectation for {filter:?}");
                let page = TaskStore::list(store, HistoryCategory::Failed, filter.clone(), 10, 0)
                    .await
                    .unwrap();
                let got: Vec<u64> = page.tasks.iter().map(|t| t.id.0).collect();
                assert_eq!(
                    (got, page.total),
                    (want.clone(), want.len() as u64),
                    "{filter:?}"
                );
            }
        };
        let f = TaskFilter::default;
        check(f(), vec![4, 3, 2, 1]).await;
        check(
            TaskFilter {
                kind: Some("artifact".into()),
                ..f()
            },
            vec![4, 3, 2],
        )
        .await;
        check(
            TaskFilter {
                trigger: Some(Trigger::Operator),
                ..f()
            },
            vec![3, 2],
        )
        .await;
        check(
            TaskFilter {
                target_prefix: Some("country:D".into()),
                ..f()
            },
            vec![4, 1],
        )
        .await;
        check(
            TaskFilter {
                target_prefix: Some("country:%".into()),
                ..f()
            },
            vec![],
        )
        .await;
        check(
            TaskFilter {
                since: Some(Timestamp(T0.0 + 20_000)),
                ..f()
            },
            vec![4, 3],
        )
        .await;
        check(
            TaskFilter {
                kind: Some("artifact".into()),
                trigger: Some(Trigger::FeedUpdate),
                target_prefix: Some("country:".into()),
                since: Some(T0),
            },
            vec![4],
        )
        .await;
        // Another category is not mixed in.
        let none = TaskStore::list(
            &store,
            HistoryCategory::Finished,
            TaskFilter {
                kind: Some("artifact".into()),
                ..f()
            },
            10,
            0,
        )
        .await
        .unwrap();
        assert_eq!(none.total, 0);
    }

    pub(crate) async fn history_pages_are_newest_first_with_category_totals<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        put(
            &store,
            [
                task(1, "country:A", TaskState::Queued),
                task(2, "country:B", TaskState::Running),
                finished(3, TaskState::Succeeded, T0),
                finished(4, TaskState::Failed, T0),
                finished(5, TaskState::Merged, T0),
                finished(6, TaskState::Canceled, T0),
                finished(7, TaskState::Succeeded, T0),
                finished(8, TaskState::Succeeded, T0),
            ],
        )
        .await;
        use HistoryCategory::*;
        assert_eq!(page_ids(&store, Pending, 10, 0).await, (vec![2, 1], 2));
        assert_eq!(page_ids(&store, Failed, 10, 0).await, (vec![6, 4], 2));
        assert_eq!(
            page_ids(&store, Finished, 10, 0).await,
            (vec![8, 7, 5, 3], 4)
        );
        assert_eq!(page_ids(&store, Finished, 2, 1).await, (vec![7, 5], 4));
        assert_eq!(page_ids(&store, Finished, 2, 3).await, (vec![3], 4));
        assert_eq!(page_ids(&store, Finished, 0, 0).await, (vec![], 4));
        assert_eq!(page_ids(&store, Finished, 10, 10).await, (vec![], 4));
        assert_eq!(
            page_ids(&store, Finished, u64::MAX, 0).await.0,
            vec![8, 7, 5, 3]
        );
    }

    pub(crate) async fn delete_removes_only_terminal_tasks<S: TaskStore + Manifest>(store: S) {
        put(
            &store,
            [
                task(1, "country:A", TaskState::Queued),
                task(2, "country:B", TaskState::Running),
                finished(3, TaskState::Succeeded, T0),
                finished(4, TaskState::Failed, T0),
            ],
        )
        .await;
        assert!(!store.delete(TaskId(1)).await.unwrap());
        assert!(!store.delete(TaskId(2)).await.unwrap());
        assert!(!store.delete(TaskId(99)).await.unwrap());
        assert!(store.delete(TaskId(3)).await.unwrap());
        assert!(store.delete(TaskId(4)).await.unwrap());
        assert!(!store.delete(TaskId(4)).await.unwrap());
        assert!(get(&store, 1).await.is_some());
        assert!(get(&store, 2).await.is_some());
        assert!(get(&store, 3).await.is_none());
        assert!(get(&store, 4).await.is_none());
    }

    pub(crate) async fn prune_removes_terminal_tasks_by_age_and_by_count<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        let minute = |m: u64| Timestamp(T0.0 + m * 60_000);
        put(
            &store,
            [
                task(1, "country:A", TaskState::Queued),
                finished(2, TaskState::Succeeded, minute(0)),
                finished(3, TaskState::Failed, minute(1)),
                finished(4, TaskState::Canceled, minute(10)),
                finished(5, TaskState::Merged, minute(11)),
                finished(6, TaskState::Succeeded, minute(12)),
                finished(7, TaskState::Succeeded, minute(13)),
                task(8, "country:B", TaskState::Running),
            ],
        )
        .await;
        let now = minute(15);
        // Older than 10 minutes: 2 and 3 (finished at minutes 0 and 1).
        let by_age = Retention {
            max_age_s: Some(600),
            max_count: None,
        };
        assert_eq!(store.prune(by_age, now).await.unwrap(), 2);
        // Keep the newest 2 terminal tasks: removes 4 and 5.
        let by_count = Retention {
            max_age_s: None,
            max_count: Some(2),
        };
        assert_eq!(store.prune(by_count, now).await.unwrap(), 2);
        let nothing = Retention {
            max_age_s: None,
            max_count: None,
        };
        assert_eq!(store.prune(nothing, now).await.unwrap(), 0);

        let mut left = Vec::new();
        for id in 1..=8 {
            if get(&store, id).await.is_some() {
                left.push(id);
            }
        }
        assert_eq!(
            left,
            vec![1, 6, 7, 8],
            "queued and running are never pruned"
        );

        let everything = Retention {
            max_age_s: Some(0),
            max_count: Some(0),
        };
        assert_eq!(store.prune(everything, now).await.unwrap(), 2);
        let unfinished: Vec<u64> = store
            .unfinished()
            .await
            .unwrap()
            .iter()
            .map(|t| t.id.0)
            .collect();
        assert_eq!(unfinished, vec![1, 8]);
    }

    pub(crate) async fn unfinished_returns_queued_and_running_in_id_order<
        S: TaskStore + Manifest,
    >(
        store: S,
    ) {
        // Written out of id order, mixed with terminal tasks.
        put(
            &store,
            [
                task(9, "country:A", TaskState::Running),
                finished(2, TaskState::Succeeded, T0),
                task(4, "country:B", TaskState::Queued),
                TaskRecord {
                    waiting_behind: Some(TaskId(9)),
                    ..task(12, "country:A", TaskState::Queued)
                },
                finished(5, TaskState::Failed, T0),
                task(1, "all", TaskState::Queued),
            ],
        )
        .await;
        let unfinished = store.unfinished().await.unwrap();
        let ids: Vec<u64> = unfinished.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 4, 9, 12]);
        assert_eq!(unfinished[3].waiting_behind, Some(TaskId(9)));
    }

    pub(crate) async fn allocated_ids_only_grow<S: TaskStore + Manifest>(store: S) {
        let first = store.allocate_id();
        let mut last = first;
        for _ in 0..1000 {
            let next = store.allocate_id();
            assert!(next > last, "{next:?} after {last:?}");
            last = next;
        }
        // Storing and deleting a task does not bring its id back.
        put(&store, [finished(last.0, TaskState::Succeeded, T0)]).await;
        assert!(store.delete(last).await.unwrap());
        assert!(store.allocate_id() > last);
        assert!(first.0 >= 1, "ids start at 1");
    }

    pub(crate) async fn manifest_puts_gets_lists_and_removes<S: TaskStore + Manifest>(store: S) {
        let record = |entity: &str, hash: &str| ArtifactRecord {
            entity: entity.parse().unwrap(),
            hash: hash.into(),
            size: 1 << 40,
            written_at: T0,
            source_version: Some("feed-2026-11-23".into()),
            task: Some(TaskId(3)),
            run: Some(RunToken(4)),
        };
        let de: EntityName = "country:DE".parse().unwrap();
        assert_eq!(Manifest::artifact(&store, &de).await.unwrap(), None);
        assert_eq!(Manifest::artifacts(&store).await.unwrap(), vec![]);

        let bare = ArtifactRecord {
            source_version: None,
            task: None,
            run: None,
            size: 0,
            ..record("asn:13335", "00")
        };
        Manifest::write(
            &store,
            vec![
                ManifestChange::Put(record("country:DE", "aa")),
                ManifestChange::Put(bare.clone()),
                ManifestChange::Put(record("country:AT", "bb")),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            Manifest::artifact(&store, &de).await.unwrap(),
            Some(record("country:DE", "aa"))
        );
        let names: Vec<String> = Manifest::artifacts(&store)
            .await
            .unwrap()
            .iter()
            .map(|r| r.entity.to_string())
            .collect();
        assert_eq!(names, ["asn:13335", "country:AT", "country:DE"]);
        assert_eq!(
            Manifest::artifact(&store, &"asn:13335".parse().unwrap())
                .await
                .unwrap(),
            Some(bare)
        );

        // Replace, then remove; the last change to an entity wins.
        Manifest::write(
            &store,
            vec![
                ManifestChange::Put(record("country:DE", "cc")),
                ManifestChange::Remove("country:AT".parse().unwrap()),
                ManifestChange::Remove("country:XX".parse().unwrap()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            Manifest::artifact(&store, &de).await.unwrap().unwrap().hash,
            "cc"
        );
        assert_eq!(Manifest::artifacts(&store).await.unwrap().len(), 2);

        // A batch lookup answers each entity asked, in order: twice when
        // asked twice, nothing for one without an artifact.
        let asked: Vec<EntityName> = ["country:DE", "country:AT", "asn:13335", "country:DE"]
            .iter()
            .map(|e| e.parse().unwrap())
            .collect();
        let hashes: Vec<Option<String>> = Manifest::artifacts_of(&store, &asked)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.map(|r| r.hash))
            .collect();
        assert_eq!(
            hashes,
            [
                Some("cc".into()),
                None,
                Some("00".into()),
                Some("cc".into())
            ]
        );
        assert!(Manifest::artifacts_of(&store, &[])
            .await
            .unwrap()
            .is_empty());
    }

    /// Line `n` of task `task`: its number in the message, its time and
    /// level derived from it, so that order and every field are checked.
    fn line(task: u64, n: u64) -> TaskLogLine {
        let level = ["info", "warn", "error"][(n % 3) as usize];
        let source = if n % 2 == 0 {
            "stderr"
        } else {
            "groundcrew::kinds"
        };
        TaskLogLine {
            task: TaskId(task),
            line: LogLine::new(Timestamp(T0.0 + n), level, source, format!("line {n} ü")),
        }
    }

    async fn messages<S: TaskLog>(store: &S, task: u64) -> Vec<String> {
        let lines = store.log(TaskId(task)).await.expect("log");
        lines.into_iter().map(|l| l.message).collect()
    }

    fn numbered(range: std::ops::Range<u64>) -> Vec<String> {
        range.map(|n| format!("line {n} ü")).collect()
    }

    pub(crate) async fn log_keeps_the_newest_lines_per_task_oldest_first<S: TaskStore + TaskLog>(
        store: S,
    ) {
        let limit = LOG_LINES_PER_TASK as u64;
        put(
            &store,
            [
                task(1, "country:A", TaskState::Running),
                task(2, "country:B", TaskState::Running),
            ],
        )
        .await;
        // Interleaved tasks in one append, the fields as given.
        let first: Vec<TaskLogLine> = (0..limit - 50)
            .flat_map(|n| {
                [line(1, n), line(2, n)]
                    .into_iter()
                    .take(if n < 3 { 2 } else { 1 })
            })
            .collect();
        store.append_log(first).await.expect("append");
        let lines = store.log(TaskId(2)).await.unwrap();
        assert_eq!(lines, (0..3).map(|n| line(2, n).line).collect::<Vec<_>>());
        assert_eq!(messages(&store, 1).await, numbered(0..limit - 50));

        // Past the limit across appends: the oldest go. The append is not
        // awaited; a later awaited write still comes after it.
        drop(store.append_log((limit - 50..limit + 100).map(|n| line(1, n)).collect()));
        put(&store, [task(3, "country:C", TaskState::Queued)]).await;
        assert_eq!(messages(&store, 1).await, numbered(100..limit + 100));

        // Past the limit in one append.
        let many = (limit + 100..3 * limit + 7).map(|n| line(1, n)).collect();
        store.append_log(many).await.expect("append");
        assert_eq!(
            messages(&store, 1).await,
            numbered(2 * limit + 7..3 * limit + 7)
        );
        assert_eq!(
            messages(&store, 2).await.len(),
            3,
            "other tasks keep theirs"
        );
        assert!(messages(&store, 3).await.is_empty());
    }

    pub(crate) async fn log_lines_of_unknown_tasks_are_dropped<S: TaskStore + TaskLog>(store: S) {
        put(&store, [task(1, "country:A", TaskState::Running)]).await;
        store
            .append_log(vec![line(7, 0), line(1, 1), line(7, 2)])
            .await
            .expect("append");
        assert_eq!(messages(&store, 1).await, numbered(1..2));
        // Lines sent before the task existed did not wait for it.
        put(&store, [task(7, "country:B", TaskState::Running)]).await;
        assert!(messages(&store, 7).await.is_empty());
        assert!(messages(&store, 99).await.is_empty());
    }

    pub(crate) async fn log_lines_go_with_their_task_when_deleted_or_pruned<
        S: TaskStore + TaskLog,
    >(
        store: S,
    ) {
        put(
            &store,
            [
                finished(1, TaskState::Failed, T0),
                finished(2, TaskState::Succeeded, T0),
                task(3, "country:C", TaskState::Running),
            ],
        )
        .await;
        let lines = (1..=3)
            .flat_map(|t| (0..5).map(move |n| line(t, n)))
            .collect();
        store.append_log(lines).await.expect("append");
        assert!(store.delete(TaskId(1)).await.unwrap());
        let everything = Retention {
            max_age_s: Some(0),
            max_count: Some(0),
        };
        assert_eq!(
            store
                .prune(everything, Timestamp(T0.0 + 60_000))
                .await
                .unwrap(),
            1
        );
        // An id put again (a restored journal) starts with an empty log.
        put(
            &store,
            [
                finished(1, TaskState::Failed, T0),
                finished(2, TaskState::Failed, T0),
            ],
        )
        .await;
        assert!(messages(&store, 1).await.is_empty());
        assert!(messages(&store, 2).await.is_empty());
        assert_eq!(messages(&store, 3).await, numbered(0..5));
    }
}
