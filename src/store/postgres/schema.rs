//! The PostgreSQL schema, and how a database is brought up to it.
//!
//! # Versions
//! Everything lives in schema `groundcrew`. Table `schema_version` has one
//! row per applied step; [`MIGRATIONS`] holds one SQL step per version.
//! Opening takes a transaction-level advisory lock, reads the version,
//! applies every missing step and commits: two nodes starting at once
//! migrate one after the other, and a failed step leaves the old version
//! whole. A database migrated by a newer build is refused unchanged.
//!
//! # Ready for several nodes
//! The tasks table already has what claiming from several nodes needs
//! (`node`, `lease_expires_at`, a partial index over the queued tasks, run
//! tokens from the `run_tokens` sequence), so that phase 2 adds statements,
//! not a new table. It has no coalescing constraints yet: the runtime
//! coalesces in memory on one node, and its journal may pass through
//! states (a follow-up put before the run it waits for ends) that a
//! per-statement unique index would refuse. Cluster-wide coalescing will
//! need deferred constraints or claim-time checks (see `mod.rs`).
//!
//! # Ids
//! Task ids come from sequence `task_ids`, which steps by 128: one
//! `nextval` reserves a block of ids for one store, so ids never repeat
//! across restarts or nodes, at one round trip per block.

use deadpool_postgres::Object;

use super::PostgresOpenError;

/// Transaction-level advisory lock key for migrations ("gcrwmigr").
const MIGRATION_LOCK: i64 = 0x6763_7277_6d69_6772;

/// One SQL step per schema version: `MIGRATIONS[n]` takes version `n` to
/// `n + 1`. Steps are only ever appended; a released step never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The newest schema version this build knows.
pub(super) const SUPPORTED_VERSION: i32 = MIGRATIONS.len() as i32;

const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS groundcrew;
CREATE TABLE IF NOT EXISTS groundcrew.schema_version (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
";

/// Version 3: `task_log`, the last lines each task logged (see `log.rs`).
/// The trigger removes a task's lines with the task (delete, prune).
const V3: &str = "
CREATE TABLE groundcrew.task_log (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- append order
    task    bigint      NOT NULL,
    time    timestamptz NOT NULL,
    level   text        NOT NULL,
    source  text        NOT NULL,
    message text        NOT NULL
);
CREATE INDEX task_log_by_task ON groundcrew.task_log (task, id);
CREATE FUNCTION groundcrew.drop_task_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM groundcrew.task_log WHERE task IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_drop_log AFTER DELETE ON groundcrew.tasks
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION groundcrew.drop_task_log();
";

/// Version 2: `retry_of`, the failed or canceled task a retry runs again.
const V2: &str = "ALTER TABLE groundcrew.tasks ADD COLUMN retry_of bigint;";

const V1: &str = "
CREATE SEQUENCE groundcrew.task_ids INCREMENT BY 128 START WITH 1;
CREATE SEQUENCE groundcrew.run_tokens;

CREATE TABLE groundcrew.tasks (
    id               bigint      PRIMARY KEY,
    kind             text        NOT NULL,
    target           text        NOT NULL,
    trigger          text        NOT NULL,
    triggers         jsonb       NOT NULL,  -- array of trigger names
    params           jsonb       NOT NULL,
    priority         smallint    NOT NULL,
    pool             text        NOT NULL,
    state            text        NOT NULL CHECK (state IN
                         ('queued', 'running', 'canceling', 'succeeded', 'failed',
                          'canceled', 'merged')),
    attempts         bigint      NOT NULL,
    run              bigint,
    stage            text,
    progress_done    bigint,
    progress_total   bigint,
    result           jsonb,                 -- NULL when there is none
    error            text,
    errors           jsonb       NOT NULL,  -- array of attempt errors
    merged           bigint      NOT NULL,
    waiting_behind   bigint,
    merged_into      bigint,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    run_after        timestamptz,
    -- Phase 2: the node running the task and until when its claim holds.
    node             text,
    lease_expires_at timestamptz,
    -- The history category, so that one index serves 'newest first' pages.
    category         text GENERATED ALWAYS AS (CASE
                         WHEN state IN ('queued', 'running', 'canceling') THEN 'pending'
                         WHEN state IN ('failed', 'canceled') THEN 'failed'
                         ELSE 'finished' END) STORED
);

CREATE INDEX tasks_by_category ON groundcrew.tasks (category, id);
CREATE INDEX tasks_by_finished_at ON groundcrew.tasks (finished_at)
    WHERE finished_at IS NOT NULL;
-- What a claim scans: queued work per pool, higher priority first, then
-- first come first served.
CREATE INDEX tasks_queued ON groundcrew.tasks (pool, priority DESC, id)
    WHERE state = 'queued';

CREATE TABLE groundcrew.manifest (
    entity         text        PRIMARY KEY,
    hash           text        NOT NULL,
    size           bigint      NOT NULL,
    written_at     timestamptz NOT NULL,
    source_version text,
    task           bigint,
    run            bigint
);
";

/// Brings the database to [`SUPPORTED_VERSION`] in one transaction under
/// the migration lock. Returns the version it found (0: a new database).
pub(super) async fn migrate(client: &mut Object, target: &str) -> Result<i32, PostgresOpenError> {
    let fail = |version| {
        let target = target.to_owned();
        move |source| PostgresOpenError::Migrate {
            target,
            version,
            source,
        }
    };
    let tx = client
        .transaction()
        .await
        .map_err(fail(SUPPORTED_VERSION))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail(SUPPORTED_VERSION))?;
    tx.batch_execute(BOOTSTRAP)
        .await
        .map_err(fail(SUPPORTED_VERSION))?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM groundcrew.schema_version",
            &[],
        )
        .await
        .map_err(fail(SUPPORTED_VERSION))?
        .get(0);
    if found > SUPPORTED_VERSION {
        return Err(PostgresOpenError::TooNew {
            target: target.to_owned(),
            found,
            supported: SUPPORTED_VERSION,
        });
    }
    for (step, version) in MIGRATIONS[found as usize..].iter().zip(found + 1..) {
        tx.batch_execute(step).await.map_err(fail(version))?;
        tx.execute(
            "INSERT INTO groundcrew.schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(fail(version))?;
    }
    tx.commit().await.map_err(fail(SUPPORTED_VERSION))?;
    Ok(found)
}
