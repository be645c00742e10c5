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
//! # Several nodes
//! Version 3 adds what nodes sharing the database need beside the
//! columns version 1 already had (`node`, `lease_expires_at`, `run`):
//! the nodes table, the deferred constraint that one kind and target runs
//! once at every commit, and `groundcrew.enqueue()`. Only a deferred
//! constraint works here: one journal batch may end a run and start the
//! next of the same key in any row order.
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
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// The newest schema version this build knows.
pub(super) const SUPPORTED_VERSION: i32 = MIGRATIONS.len() as i32;

const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS groundcrew;
CREATE TABLE IF NOT EXISTS groundcrew.schema_version (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
";

/// Version 6: what the end of a run does to the follow-up waiting behind
/// it, on every path that ends a run (a node's journal, the rescue of an
/// expired lease), as on one node: a run put back in the queue (a retry,
/// a rescue) absorbs its follow-up, since its next execution serves the
/// follow-up's requests too (at the higher priority, and at once when the
/// follow-up is interactive); a run that ended releases it
/// (`waiting_behind` cleared). Follow-ups already released are cleared.
const V6: &str = r#"
CREATE INDEX tasks_waiting_behind ON groundcrew.tasks (waiting_behind)
    WHERE waiting_behind IS NOT NULL;
UPDATE groundcrew.tasks t SET waiting_behind = NULL
 WHERE t.waiting_behind IS NOT NULL AND NOT EXISTS (
       SELECT 1 FROM groundcrew.tasks b WHERE b.id = t.waiting_behind
          AND b.state IN ('running', 'canceling'));
CREATE FUNCTION groundcrew.run_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    f record;
BEGIN
    IF NEW.state = 'queued' THEN
        FOR f IN
            UPDATE groundcrew.tasks g
               SET state = 'merged', merged_into = NEW.id, waiting_behind = NULL,
                   finished_at = now()
             WHERE g.waiting_behind = NEW.id AND g.state = 'queued'
            RETURNING g.merged, g.priority, g.triggers
        LOOP
            NEW.merged := NEW.merged + 1 + f.merged;
            NEW.priority := greatest(NEW.priority, f.priority);
            NEW.triggers := NEW.triggers || coalesce((
                SELECT jsonb_agg(x) FROM jsonb_array_elements(f.triggers) x
                 WHERE NOT NEW.triggers @> jsonb_build_array(x)), '[]'::jsonb);
            IF f.priority >= 10 THEN
                NEW.run_after := NULL;
            END IF;
        END LOOP;
    ELSE
        UPDATE groundcrew.tasks g SET waiting_behind = NULL
         WHERE g.waiting_behind = NEW.id AND g.state = 'queued';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER tasks_run_ended BEFORE UPDATE ON groundcrew.tasks
    FOR EACH ROW WHEN (OLD.state IN ('running', 'canceling')
                       AND NEW.state NOT IN ('running', 'canceling'))
    EXECUTE FUNCTION groundcrew.run_ended();
"#;

/// Version 5: artifact content for `artifacts.sink: postgres` (see
/// `artifacts.rs`), so that every node serves the same artifacts.
const V5: &str = "
CREATE TABLE groundcrew.artifacts (
    entity     text        PRIMARY KEY,
    content    bytea       NOT NULL,
    hash       text        NOT NULL,
    size       bigint      NOT NULL,
    written_at timestamptz NOT NULL,
    task       bigint,
    run        bigint
);
";

/// Version 3: several nodes on one database (see `cluster.rs`). The nodes
/// and their heartbeats; at most one execution per kind and target at
/// every commit (deferred, so that a batch may end one run and start the
/// next in any row order); the enqueue function that applies the
/// coalescing rules for every node and for the embedding application's
/// own transactions.
const V3: &str = r#"
CREATE TABLE groundcrew.nodes (
    node         text        PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL,
    running      bigint      NOT NULL
);
ALTER TABLE groundcrew.tasks ADD CONSTRAINT one_run_per_target
    EXCLUDE USING btree (kind WITH =, target WITH =)
    WHERE (state IN ('running', 'canceling'))
    DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX tasks_held ON groundcrew.tasks (node, id) WHERE node IS NOT NULL;
CREATE INDEX tasks_leases ON groundcrew.tasks (lease_expires_at)
    WHERE state IN ('running', 'canceling');
CREATE INDEX tasks_pending_by_target ON groundcrew.tasks (kind, target)
    WHERE state IN ('queued', 'running', 'canceling');

-- Enqueues one request with the coalescing rules: into a queued `all` of
-- its kind, into the queued task of its kind and target, as the one
-- follow-up behind the running one, or as a new task (a new `all` absorbs
-- the kind's queued entity tasks). Requests of one kind are serialized by
-- a transaction-level lock, held until the caller's transaction ends.
-- Answers the task and the outcome: queued, merged or follow_up.
CREATE FUNCTION groundcrew.enqueue(
    p_kind text, p_target text, p_params jsonb DEFAULT '{}'::jsonb,
    p_trigger text DEFAULT 'api', p_priority smallint DEFAULT NULL,
    p_pool text DEFAULT 'background', p_retry_of bigint DEFAULT NULL,
    p_id bigint DEFAULT NULL)
RETURNS TABLE (task bigint, outcome text, behind bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_priority smallint := coalesce(p_priority,
        CASE WHEN p_trigger IN ('operator', 'api') THEN 10 ELSE 0 END);
    v_id bigint;
    v_running bigint;
    v_absorbed bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('groundcrew.enqueue:' || p_kind));
    IF p_target <> 'all' THEN
        SELECT q.id INTO v_id FROM groundcrew.tasks q
         WHERE q.kind = p_kind AND q.target = 'all' AND q.state = 'queued'
           AND q.waiting_behind IS NULL
         ORDER BY q.id LIMIT 1;
    END IF;
    IF v_id IS NULL THEN
        SELECT r.id INTO v_running FROM groundcrew.tasks r
         WHERE r.kind = p_kind AND r.target = p_target
           AND r.state IN ('running', 'canceling')
         LIMIT 1;
        SELECT q.id INTO v_id FROM groundcrew.tasks q
         WHERE q.kind = p_kind AND q.target = p_target AND q.state = 'queued'
           AND (q.waiting_behind IS NULL OR q.waiting_behind = v_running
                OR v_running IS NULL)
         ORDER BY q.id LIMIT 1;
    END IF;
    IF v_id IS NOT NULL THEN
        UPDATE groundcrew.tasks t
           SET merged = t.merged + 1, priority = greatest(t.priority, v_priority),
               triggers = CASE WHEN t.triggers ? p_trigger THEN t.triggers
                               ELSE t.triggers || to_jsonb(p_trigger) END,
               run_after = CASE WHEN v_priority >= 10 THEN NULL ELSE t.run_after END
         WHERE t.id = v_id;
        RETURN QUERY SELECT v_id, 'merged'::text, NULL::bigint;
        RETURN;
    END IF;
    v_id := coalesce(p_id, nextval('groundcrew.task_ids'));
    INSERT INTO groundcrew.tasks (id, kind, target, trigger, triggers, params, priority,
        pool, state, attempts, errors, merged, waiting_behind, created_at, retry_of)
    VALUES (v_id, p_kind, p_target, p_trigger, jsonb_build_array(p_trigger), p_params,
        v_priority, p_pool, 'queued', 0, '[]'::jsonb, 0, v_running, now(), p_retry_of);
    IF p_target = 'all' THEN
        WITH gone AS (
            UPDATE groundcrew.tasks g
               SET state = 'merged', merged_into = v_id, finished_at = now()
             WHERE g.kind = p_kind AND g.target <> 'all' AND g.state = 'queued'
               AND g.waiting_behind IS NULL
            RETURNING g.merged)
        SELECT coalesce(sum(1 + gone.merged), 0) INTO v_absorbed FROM gone;
        UPDATE groundcrew.tasks SET merged = merged + v_absorbed WHERE id = v_id;
    END IF;
    PERFORM pg_notify('groundcrew_tasks', p_pool);
    RETURN QUERY SELECT v_id,
        CASE WHEN v_running IS NULL THEN 'queued' ELSE 'follow_up' END, v_running;
END
$fn$;
"#;

/// Version 4: `task_log`, the last lines each task logged (see `log.rs`).
/// The trigger removes a task's lines with the task (delete, prune).
const V4: &str = "
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
