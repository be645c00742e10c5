//! The SQLite schema, and how a file is checked and brought up to it.
//!
//! # Versions
//! The schema version is `PRAGMA user_version`; [`MIGRATIONS`] holds one SQL
//! step per version, and opening applies every missing step in one
//! transaction, so a crash mid-migration leaves the old version intact.
//! `PRAGMA application_id` marks the file as groundcrew's, so that a stray
//! SQLite database is refused instead of having tables added to it.
//!
//! # Looking before writing
//! Everything that could refuse a file (not a database, another
//! application's database, a newer schema) is checked with reads alone,
//! before WAL mode is switched on or anything is migrated: a refused file is
//! left byte for byte as it was.
//!
//! # Coalescing in the schema
//! The runtime coalesces requests per key (kind, target) in memory; the
//! partial unique indexes below make the same rule hold on disk, so that a
//! bug in the runtime surfaces as a refused write rather than two runs of
//! one key: at most one queued task, one queued follow-up and one running
//! task per key.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::OpenError;

/// Marks a file as a groundcrew store: "GCRW".
const APPLICATION_ID: i32 = 0x4743_5257;

/// How long a statement waits for a lock held by another connection (a
/// second process, or our own writer while a reader starts) before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One SQL step per schema version: `MIGRATIONS[n]` takes version `n` to
/// `n + 1`. Steps are only ever appended; a released step never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The newest schema version this build knows.
pub(super) const SUPPORTED_VERSION: u32 = MIGRATIONS.len() as u32;

const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- The id high-water mark: ids are never reused, even after the task with
-- the largest id was deleted.
INSERT INTO meta (key, value) VALUES ('next_id', 1);

CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    triggers       TEXT    NOT NULL,  -- JSON array of trigger names
    params         TEXT    NOT NULL,  -- JSON
    priority       INTEGER NOT NULL,
    pool           TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN
                       ('queued', 'running', 'succeeded', 'failed', 'canceled', 'merged')),
    attempts       INTEGER NOT NULL,
    run            INTEGER,
    stage          TEXT,
    progress_done  INTEGER,
    progress_total INTEGER,
    result         TEXT,              -- JSON; NULL when there is none
    error          TEXT,
    errors         TEXT    NOT NULL,  -- JSON array of attempt errors
    merged         INTEGER NOT NULL,
    waiting_behind INTEGER,
    merged_into    INTEGER,
    created_at     INTEGER NOT NULL,  -- milliseconds since the Unix epoch
    started_at     INTEGER,
    finished_at    INTEGER,
    run_after      INTEGER,
    -- The history category, so that one index serves 'newest first' pages
    -- of a category without sorting (an IN over two states cannot).
    category       TEXT GENERATED ALWAYS AS (CASE state
                       WHEN 'queued'   THEN 'pending'
                       WHEN 'running'  THEN 'pending'
                       WHEN 'failed'   THEN 'failed'
                       WHEN 'canceled' THEN 'failed'
                       ELSE 'finished' END) VIRTUAL
);

CREATE UNIQUE INDEX tasks_one_queued_per_key ON tasks (kind, target)
    WHERE state = 'queued' AND waiting_behind IS NULL;
CREATE UNIQUE INDEX tasks_one_follow_up_per_key ON tasks (kind, target)
    WHERE state = 'queued' AND waiting_behind IS NOT NULL;
CREATE UNIQUE INDEX tasks_one_running_per_key ON tasks (kind, target)
    WHERE state = 'running';

CREATE INDEX tasks_by_category ON tasks (category, id);
CREATE INDEX tasks_by_finished_at ON tasks (finished_at);

CREATE TABLE manifest (
    entity         TEXT    PRIMARY KEY,
    hash           TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    written_at     INTEGER NOT NULL,
    source_version TEXT,
    task           INTEGER,
    run            INTEGER
) WITHOUT ROWID;
";

/// Version 4: `task_log`, the last lines each task logged (see
/// `log.rs`). The trigger removes a task's lines with the task (delete,
/// prune); a later step that rebuilds `tasks` must create it again.
const V4: &str = "
CREATE TABLE task_log (
    id      INTEGER PRIMARY KEY,  -- append order
    task    INTEGER NOT NULL,
    time    INTEGER NOT NULL,     -- milliseconds since the Unix epoch
    level   TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    message TEXT    NOT NULL
);
CREATE INDEX task_log_by_task ON task_log (task, id);
CREATE TRIGGER tasks_drop_log AFTER DELETE ON tasks BEGIN
    DELETE FROM task_log WHERE task = old.id;
END;
";

/// Version 3: `retry_of`, the failed or canceled task a retry runs again.
const V3: &str = "ALTER TABLE tasks ADD COLUMN retry_of INTEGER;";

/// Version 2: state `canceling` (a canceled execution that has not ended
/// yet), which holds its key like `running`. SQLite cannot change a CHECK
/// constraint in place, so the table is rebuilt.
const V2: &str = "
CREATE TABLE tasks_v2 (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    triggers       TEXT    NOT NULL,
    params         TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    pool           TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN
                       ('queued', 'running', 'canceling', 'succeeded', 'failed',
                        'canceled', 'merged')),
    attempts       INTEGER NOT NULL,
    run            INTEGER,
    stage          TEXT,
    progress_done  INTEGER,
    progress_total INTEGER,
    result         TEXT,
    error          TEXT,
    errors         TEXT    NOT NULL,
    merged         INTEGER NOT NULL,
    waiting_behind INTEGER,
    merged_into    INTEGER,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    run_after      INTEGER,
    category       TEXT GENERATED ALWAYS AS (CASE state
                       WHEN 'queued'    THEN 'pending'
                       WHEN 'running'   THEN 'pending'
                       WHEN 'canceling' THEN 'pending'
                       WHEN 'failed'    THEN 'failed'
                       WHEN 'canceled'  THEN 'failed'
                       ELSE 'finished' END) VIRTUAL
);
INSERT INTO tasks_v2 (id, kind, target, trigger, triggers, params, priority, pool,
    state, attempts, run, stage, progress_done, progress_total, result, error,
    errors, merged, waiting_behind, merged_into, created_at, started_at,
    finished_at, run_after)
SELECT id, kind, target, trigger, triggers, params, priority, pool,
    state, attempts, run, stage, progress_done, progress_total, result, error,
    errors, merged, waiting_behind, merged_into, created_at, started_at,
    finished_at, run_after FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v2 RENAME TO tasks;

CREATE UNIQUE INDEX tasks_one_queued_per_key ON tasks (kind, target)
    WHERE state = 'queued' AND waiting_behind IS NULL;
CREATE UNIQUE INDEX tasks_one_follow_up_per_key ON tasks (kind, target)
    WHERE state = 'queued' AND waiting_behind IS NOT NULL;
CREATE UNIQUE INDEX tasks_one_running_per_key ON tasks (kind, target)
    WHERE state IN ('running', 'canceling');
CREATE INDEX tasks_by_category ON tasks (category, id);
CREATE INDEX tasks_by_finished_at ON tasks (finished_at);
";

/// Checks the freshly opened file, switches on WAL and full sync, and
/// migrates it to [`SUPPORTED_VERSION`]. Returns the version it found (0:
/// a new, empty file).
pub(super) fn prepare(conn: &mut Connection, path: &Path) -> Result<u32, OpenError> {
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_owned(),
        source,
    };
    // A connection setting, not a write: safe before the file is vetted.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let found = inspect(conn, path)?;

    // From here on the file is ours (or empty) and may be written.
    // WAL lets readers run beside the single writer; FULL syncs the WAL on
    // every commit, so an acknowledged batch survives power loss.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite)?;
    conn.set_prepared_statement_cache_capacity(32);
    if found < SUPPORTED_VERSION {
        migrate(conn, path).map_err(|source| OpenError::Migrate {
            path: path.to_owned(),
            version: SUPPORTED_VERSION,
            source,
        })??;
    }
    Ok(found)
}

/// Reads the file's identity and version without writing anything.
fn inspect(conn: &Connection, path: &Path) -> Result<u32, OpenError> {
    let read = || -> rusqlite::Result<(i32, u32, u64)> {
        let app = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let objects = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        Ok((app, version, objects))
    };
    let (app, version, objects) = read().map_err(|source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => OpenError::Corrupt {
            path: path.to_owned(),
            source,
        },
        _ => OpenError::Sqlite {
            path: path.to_owned(),
            source,
        },
    })?;
    let empty = objects == 0 && version == 0;
    if app != APPLICATION_ID && !empty {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
        });
    }
    if version > SUPPORTED_VERSION {
        return Err(OpenError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SUPPORTED_VERSION,
        });
    }
    Ok(version)
}

/// Applies the missing steps in one transaction. The version is read again
/// inside it, because another process may have migrated the file between
/// our look and our lock.
fn migrate(conn: &mut Connection, path: &Path) -> rusqlite::Result<Result<(), OpenError>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SUPPORTED_VERSION {
        return Ok(Err(OpenError::TooNew {
            path: path.to_owned(),
            found,
            supported: SUPPORTED_VERSION,
        }));
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SUPPORTED_VERSION)?;
    tx.commit()?;
    Ok(Ok(()))
}

/// The first id to hand out: above every id stored and every id ever
/// stored (the high-water mark survives deletion of the newest task).
pub(super) fn next_id(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT max((SELECT value FROM meta WHERE key = 'next_id'),
                    coalesce((SELECT max(id) FROM tasks), 0) + 1)",
        [],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_create_the_supported_version_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).unwrap();
        prepare(&mut conn, &path).unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SUPPORTED_VERSION);
        assert_eq!(next_id(&conn).unwrap(), 1);
        // Opening again is a no-op.
        prepare(&mut conn, &path).unwrap();
    }

    /// A version 1 file keeps every row through the rebuild of version 2,
    /// and then takes `canceling`, which holds its key like `running`.
    #[test]
    fn version_1_files_migrate_to_canceling_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let insert = "INSERT INTO tasks (id, kind, target, trigger, triggers, params, priority,
                          pool, state, attempts, errors, merged, created_at)
                      VALUES (?1, 'k', 'asn:1', 'api', '[]', 'null', 0, 'p', ?2, 1, '[]', 0, 0)";
        conn.execute(insert, rusqlite::params![7, "running"])
            .unwrap();
        conn.execute(insert, rusqlite::params![8, "succeeded"])
            .unwrap();
        assert!(conn
            .execute(insert, rusqlite::params![9, "canceling"])
            .is_err());
        drop(conn);

        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(prepare(&mut conn, &path).unwrap(), 1);
        let rows: Vec<(u64, String, String)> = conn
            .prepare("SELECT id, state, category FROM tasks ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (7, "running".into(), "pending".into()),
                (8, "succeeded".into(), "finished".into())
            ]
        );
        conn.execute("UPDATE tasks SET state = 'canceling' WHERE id = 7", [])
            .unwrap();
        // Canceling holds the key: no second run of it.
        let err = conn.execute(insert, rusqlite::params![10, "running"]);
        assert!(err.is_err(), "a second run beside a canceling one");
    }

    /// A version 3 file keeps its tasks and gains the task log, whose
    /// lines go with their task.
    #[test]
    fn version_3_files_gain_a_task_log_that_follows_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let conn = Connection::open(&path).unwrap();
        for step in [V1, V2, V3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO tasks (id, kind, target, trigger, triggers, params, priority, pool,
                 state, attempts, errors, merged, created_at)
             VALUES (7, 'k', 'asn:1', 'api', '[]', 'null', 0, 'p', 'failed', 1, '[]', 0, 0)",
            [],
        )
        .unwrap();
        drop(conn);

        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(prepare(&mut conn, &path).unwrap(), 3);
        let count = |conn: &Connection, table: &str| -> u64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&conn, "tasks"), 1);
        conn.execute(
            "INSERT INTO task_log (task, time, level, source, message)
             VALUES (7, 0, 'info', 'stderr', 'one'), (7, 1, 'info', 'stderr', 'two')",
            [],
        )
        .unwrap();
        assert_eq!(count(&conn, "task_log"), 2);
        conn.execute("DELETE FROM tasks WHERE id = 7", []).unwrap();
        assert_eq!(count(&conn, "task_log"), 0, "lines go with their task");
    }

    /// The generated `category` column repeats [`HistoryCategory::states`]
    /// in SQL; this keeps the two in step.
    #[test]
    fn schema_categories_agree_with_history_categories() {
        use groundcrew_actors::HistoryCategory;
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.execute_batch(V2).unwrap();
        for category in [
            HistoryCategory::Pending,
            HistoryCategory::Failed,
            HistoryCategory::Finished,
        ] {
            for state in category.states() {
                let sql: String = conn
                    .query_row(
                        "INSERT INTO tasks (kind, target, trigger, triggers, params, priority,
                             pool, state, attempts, errors, merged, created_at)
                         VALUES ('k', ?1, 'api', '[]', 'null', 0, 'p', ?1, 0, '[]', 0, 0)
                         RETURNING category",
                        // The state as target: running and canceling share
                        // the one-run-per-key index.
                        [state.as_str()],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(sql, crate::store::state::category_name(category), "{state}");
            }
        }
    }
}
