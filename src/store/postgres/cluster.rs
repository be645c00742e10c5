//! [`SharedQueue`] on PostgreSQL: several daemons on one database.
//!
//! Patterns follow River and graphile-worker: claims with `FOR UPDATE SKIP
//! LOCKED` that record which node holds a task and until when, and a
//! rescuer for claims whose holder went away, with a lease (renewed by
//! heartbeats) instead of a fixed stuck-job timeout.
//!
//! - **Enqueue** runs `groundcrew.enqueue(...)` (schema version 3) for
//!   each request of a batch in one transaction; the function applies the
//!   coalescing rules under a per-kind transaction lock, so an embedding
//!   application may call it in its own transaction.
//! - **Claim** takes a per-pool transaction lock (claims of one pool are
//!   serialized cluster-wide, one batch at a time), then moves up to `n`
//!   ready tasks, at most one per kind and target and none whose kind and
//!   target already run, to `running` on this node with the next run token
//!   of the task and a lease. The deferred constraint `one_run_per_target`
//!   backs the rule at every commit. With a cluster limit, the pool's
//!   running tasks with an unexpired lease are counted under that lock and
//!   the claim takes at most the remainder.
//! - **Heartbeat** renews the leases of the runs this node lists (only
//!   those it still holds with an unexpired lease: an expired lease is
//!   lost even if no one rescued it yet) and records the node's row.
//! - **Rescue** puts expired `running` tasks back in the queue with the
//!   attempt's error recorded (`canceling` ones end `canceled`). The
//!   trigger of schema version 6 merges the follow-up waiting behind a
//!   task put back in the queue into it, and releases the follow-up of a
//!   task that ended, whichever statement ended the run.
//! - **Completion** is the journal's batch statement, whose fencing clause
//!   applies a put of the current run only while this node holds its lease
//!   (see `writer.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use groundcrew_actors::{
    HeldRun, NodeStatus, RunToken, SharedCancel, SharedPending, SharedQueue, StoreError,
    SubmitOutcome, SubmitReply, TaskId, TaskRecord, Timestamp,
};

use super::rows::{self, RowError};
use super::PostgresStore;
use crate::store::state::parse_state;

/// Why a node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node name is empty, too long or has characters other than
    /// letters, digits, `-`, `_` and `.`.
    #[error("invalid node name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// The name's lock could not be taken: another live daemon has the
    /// name, or the server could not be reached.
    #[error(transparent)]
    Lock(#[from] super::PostgresOpenError),
    /// This store already serves a cluster under another name.
    #[error("the store already serves node {0:?}")]
    AlreadyJoined(String),
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `name` may name a node: 1 to 64 letters, digits, `-`, `_` or
/// `.` (a host name fits).
pub fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// This node's handle on the shared queue of a [`PostgresStore`].
#[derive(Debug)]
pub struct PgQueue {
    store: Arc<PostgresStore>,
    node: String,
    lease: Duration,
    wakeups: tokio::sync::watch::Receiver<u64>,
}

impl PostgresStore {
    /// Joins the cluster of daemons on this database as `node`: the queue
    /// becomes shared (see [`PgQueue`]) and the journal applies
    /// completions only while this node holds their lease. Takes the
    /// name's lock (see `node.rs`), refused while another daemon has it,
    /// and releases what the name's previous process still held.
    pub fn join_cluster(
        self: &Arc<Self>,
        node: &str,
        lease: Duration,
    ) -> Result<PgQueue, ClusterError> {
        if !valid_node_name(node) {
            return Err(ClusterError::InvalidName(node.to_owned()));
        }
        self.claim_node(node)?;
        // The lock proves that the previous process of this name is gone:
        // its claims are released at once, for the rescuer to queue again.
        let name = node.to_owned();
        let released = self.driver.wait(self.read(
            "release of earlier claims",
            move |client| async move {
                let n = client
                .execute(
                    "UPDATE groundcrew.tasks SET lease_expires_at = now() - interval '1 millisecond'
                      WHERE node = $1 AND state IN ('running', 'canceling')",
                    &[&name],
                )
                .await?;
                Ok(n)
            },
        ));
        let released = released.ok_or(StoreError::Closed)??;
        if released > 0 {
            tracing::warn!(node = %node, tasks = released,
                "this node's previous process left running tasks; they run again");
        }
        if let Err(held) = self.cluster_node.set(node.to_owned()) {
            if held != node {
                return Err(ClusterError::AlreadyJoined(held));
            }
        }
        tracing::info!(node = %node, lease_s = lease.as_secs_f64(), target = %self.target,
            "joined the cluster on PostgreSQL");
        let wakeups = super::listener::start(
            self.driver.handle(),
            self.config.clone(),
            self.target.clone(),
        );
        Ok(PgQueue {
            store: Arc::clone(self),
            node: node.to_owned(),
            lease,
            wakeups,
        })
    }
}

const CLAIM: &str = "
WITH candidates AS (
    SELECT t.id, t.kind, t.target, t.priority FROM groundcrew.tasks t
     WHERE t.state = 'queued' AND t.pool = $1
       AND (t.run_after IS NULL OR t.run_after <= now())
       AND (t.waiting_behind IS NULL OR NOT EXISTS (
            SELECT 1 FROM groundcrew.tasks b WHERE b.id = t.waiting_behind
               AND b.state IN ('queued', 'running', 'canceling')))
       AND NOT EXISTS (
            SELECT 1 FROM groundcrew.tasks r WHERE r.kind = t.kind AND r.target = t.target
               AND r.state IN ('running', 'canceling'))
     ORDER BY t.priority DESC, t.id
     LIMIT $2::bigint * 4
     FOR UPDATE SKIP LOCKED
), one_per_target AS (
    SELECT DISTINCT ON (kind, target) id AS pick, priority FROM candidates
     ORDER BY kind, target, priority DESC, id
), picked AS (
    SELECT pick FROM one_per_target ORDER BY priority DESC, pick LIMIT $2::bigint
)
UPDATE groundcrew.tasks t
   SET state = 'running', attempts = t.attempts + 1, run = coalesce(t.run, 0) + 1,
       node = $3, started_at = clock_timestamp(), lease_expires_at = now() + $4::float8 * interval '1 millisecond',
       stage = NULL, progress_done = NULL, progress_total = NULL, waiting_behind = NULL,
       run_after = NULL
  FROM picked WHERE t.id = picked.pick
RETURNING ";

/// The pool's tasks that hold a lease somewhere, for its cluster limit.
const RUNNING_IN_POOL: &str = "
SELECT count(*) FROM groundcrew.tasks
 WHERE pool = $1 AND state IN ('running', 'canceling') AND lease_expires_at > now()";

const HEARTBEAT: &str = "
WITH renewed AS (
    UPDATE groundcrew.tasks t SET lease_expires_at = now() + $2::float8 * interval '1 millisecond'
      FROM unnest($4::bigint[], $5::bigint[]) AS h(id, run)
     WHERE t.id = h.id AND t.run = h.run AND t.node = $1
       AND t.state IN ('running', 'canceling') AND t.lease_expires_at > now()
    RETURNING t.id, t.run, t.state
), beat AS (
    INSERT INTO groundcrew.nodes (node, heartbeat_at, running) VALUES ($1, now(), $3)
    ON CONFLICT (node) DO UPDATE SET heartbeat_at = now(), running = $3
)
SELECT id, run, state FROM renewed";

const RESCUE: &str = "
WITH lost AS (
    SELECT id FROM groundcrew.tasks
     WHERE state IN ('running', 'canceling') AND lease_expires_at < now()
     FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE groundcrew.tasks t
       SET state = CASE WHEN t.state = 'canceling' THEN 'canceled' ELSE 'queued' END,
           error = 'lease expired on node ' || coalesce(t.node, '?'),
           errors = t.errors || jsonb_build_array(jsonb_build_object(
               'attempt', t.attempts,
               'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
               'message', 'lease expired on node ' || coalesce(t.node, '?'))),
           finished_at = CASE WHEN t.state = 'canceling' THEN now() END,
           node = NULL, lease_expires_at = NULL, stage = NULL,
           progress_done = NULL, progress_total = NULL
      FROM lost WHERE t.id = lost.id
    RETURNING t.pool
)
SELECT pool, pg_notify('groundcrew_tasks', pool) FROM rescued";

const CANCEL: &str = "
UPDATE groundcrew.tasks
   SET state = CASE WHEN state = 'queued' THEN 'canceled' ELSE 'canceling' END,
       error = CASE WHEN state = 'queued' THEN 'canceled before it ran' ELSE error END,
       finished_at = CASE WHEN state = 'queued' THEN now() END,
       waiting_behind = CASE WHEN state = 'queued' THEN NULL ELSE waiting_behind END
 WHERE id = $1 AND state IN ('queued', 'running', 'canceling')
RETURNING state, pool";

impl SharedQueue for PgQueue {
    fn node(&self) -> &str {
        &self.node
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wakeups.clone()
    }

    fn enqueue(
        &self,
        requests: Vec<TaskRecord>,
    ) -> BoxFuture<'static, Result<Vec<SubmitReply>, StoreError>> {
        self.run("enqueue", move |mut client| async move {
            let tx = client.transaction().await?;
            // Every kind's lock first, in one order: two batches never wait
            // for each other crosswise.
            let mut kinds: Vec<&str> = requests.iter().map(|r| r.kind.as_str()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            for kind in kinds {
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('groundcrew.enqueue:' || $1))",
                    &[&kind],
                )
                .await?;
            }
            let statement = tx
                .prepare_cached(
                    "SELECT task, outcome, behind FROM groundcrew.enqueue(
                        $1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .await?;
            let mut replies = Vec::with_capacity(requests.len());
            for r in &requests {
                let (target, id) = (r.target.to_string(), r.id.0 as i64);
                let retry_of = r.retry_of.map(|t| t.0 as i64);
                let row = tx
                    .query_one(
                        &statement,
                        &[
                            &r.kind,
                            &target,
                            &r.params,
                            &r.trigger.as_str(),
                            &r.priority.0,
                            &r.pool,
                            &retry_of,
                            &id,
                        ],
                    )
                    .await?;
                let task = TaskId(row.get::<_, i64>(0) as u64);
                let outcome = match (row.get::<_, &str>(1), row.get::<_, Option<i64>>(2)) {
                    ("merged", _) => SubmitOutcome::Merged,
                    ("follow_up", Some(behind)) => SubmitOutcome::FollowUp {
                        behind: TaskId(behind as u64),
                    },
                    _ => SubmitOutcome::Queued,
                };
                replies.push(SubmitReply { id: task, outcome });
            }
            tx.commit().await?;
            Ok(replies)
        })
    }

    fn claim(
        &self,
        pool: &str,
        n: usize,
        cluster_limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        let (pool, node, lease) = (pool.to_owned(), self.node.clone(), self.lease_ms());
        self.run("claim", move |mut client| async move {
            let tx = client.transaction().await?;
            // Another node claims from the pool right now: its batch takes
            // what is ready, and this node tries again at its next tick.
            let locked: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtext('groundcrew.claim:' || $1))",
                    &[&pool],
                )
                .await?
                .get(0);
            if !locked {
                return Ok(Vec::new());
            }
            let mut n = n.min(10_000) as i64;
            if let Some(limit) = cluster_limit {
                // Under the pool's lock no other claim of the pool commits,
                // so the count holds until this claim does.
                let statement = tx.prepare_cached(RUNNING_IN_POOL).await?;
                let running: i64 = tx.query_one(&statement, &[&pool]).await?.get(0);
                n = n.min((limit.min(i64::MAX as usize) as i64 - running).max(0));
                if n == 0 {
                    return Ok(Vec::new());
                }
            }
            let sql = format!("{CLAIM}{}", rows::TASK_COLUMNS);
            let statement = tx.prepare_cached(&sql).await?;
            let found = tx.query(&statement, &[&pool, &n, &node, &lease]).await?;
            let records = found
                .iter()
                .map(rows::task_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await?;
            Ok(records)
        })
    }

    fn heartbeat(
        &self,
        runs: Vec<(TaskId, RunToken)>,
    ) -> BoxFuture<'static, Result<Vec<HeldRun>, StoreError>> {
        let (node, lease) = (self.node.clone(), self.lease_ms());
        self.run("heartbeat", move |client| async move {
            let statement = client.prepare_cached(HEARTBEAT).await?;
            let running = runs.len() as i64;
            let (ids, tokens): (Vec<i64>, Vec<i64>) = runs
                .iter()
                .map(|(id, run)| (id.0 as i64, run.0 as i64))
                .unzip();
            let rows = client
                .query(&statement, &[&node, &lease, &running, &ids, &tokens])
                .await?;
            rows.iter()
                .map(|row| {
                    let state: String = row.try_get(2)?;
                    Ok(HeldRun {
                        id: TaskId(row.try_get::<_, i64>(0)? as u64),
                        run: RunToken(row.try_get::<_, i64>(1)? as u64),
                        state: parse_state(&state).map_err(|_| rows::decode("state", &state))?,
                    })
                })
                .collect()
        })
    }

    fn rescue(&self) -> BoxFuture<'static, Result<u64, StoreError>> {
        self.run("rescue", |client| async move {
            let statement = client.prepare_cached(RESCUE).await?;
            Ok(client.query(&statement, &[]).await?.len() as u64)
        })
    }

    fn cancel(&self, id: TaskId) -> BoxFuture<'static, Result<SharedCancel, StoreError>> {
        self.run("cancel", move |client| async move {
            let Ok(id) = i64::try_from(id.0) else {
                return Ok(SharedCancel::Unknown);
            };
            let statement = client.prepare_cached(CANCEL).await?;
            Ok(match client.query_opt(&statement, &[&id]).await? {
                None => SharedCancel::Unknown,
                Some(row) if row.get::<_, &str>(0) == "canceled" => SharedCancel::Canceled,
                Some(row) => SharedCancel::Signaled {
                    pool: row.try_get(1)?,
                },
            })
        })
    }

    fn pending(&self, limit: usize) -> BoxFuture<'static, Result<SharedPending, StoreError>> {
        let node = self.node.clone();
        self.run("pending view", move |client| async move {
            let sql = format!(
                "SELECT {}, t.waiting_behind IS NOT NULL AND EXISTS (
                     SELECT 1 FROM groundcrew.tasks b WHERE b.id = t.waiting_behind
                        AND b.state IN ('queued', 'running', 'canceling'))
                   FROM groundcrew.tasks t WHERE t.state = 'queued'
                  ORDER BY t.priority DESC, t.id LIMIT $1",
                rows::TASK_COLUMNS
            );
            let statement = client.prepare_cached(&sql).await?;
            let limit = limit as i64;
            let found = client.query(&statement, &[&limit]).await?;
            let mut tasks = Vec::with_capacity(found.len());
            for row in &found {
                let mut record = rows::task_from_row(row)?;
                if !row.try_get::<_, bool>(25)? {
                    record.waiting_behind = None;
                }
                tasks.push(record);
            }
            let counts = client
                .query(
                    "SELECT pool, count(*) FROM groundcrew.tasks WHERE state = 'queued'
                      GROUP BY pool ORDER BY pool",
                    &[],
                )
                .await?;
            let per_pool: Vec<(String, u64)> = counts
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect();
            let total = per_pool.iter().map(|(_, n)| n).sum();
            let elsewhere: i64 = client
                .query_one(
                    "SELECT count(*) FROM groundcrew.tasks
                      WHERE state IN ('running', 'canceling') AND node IS DISTINCT FROM $1",
                    &[&node],
                )
                .await?
                .get(0);
            Ok(SharedPending {
                tasks,
                total,
                per_pool,
                running_elsewhere: elsewhere as u64,
            })
        })
    }

    fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeStatus>, StoreError>> {
        let lease = self.lease_ms();
        self.run("node list", move |client| async move {
            let rows = client
                .query(
                    "SELECT node, heartbeat_at, running,
                            heartbeat_at > now() - $1::float8 * interval '1 millisecond'
                       FROM groundcrew.nodes ORDER BY node",
                    &[&lease],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(NodeStatus {
                        node: r.try_get(0)?,
                        heartbeat_at: Timestamp::from(r.try_get::<_, std::time::SystemTime>(1)?),
                        running: r.try_get::<_, i64>(2)? as u64,
                        alive: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }
}

impl PgQueue {
    fn lease_ms(&self) -> f64 {
        self.lease.as_secs_f64() * 1000.0
    }

    /// A read or write on the store's runtime, refused while the name's
    /// lock is lost: another process may have the name by now.
    fn run<T, F, Fut>(&self, what: &'static str, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, RowError>> + Send,
    {
        if let Some(why) = self.store.node.refusal() {
            return Box::pin(std::future::ready(Err(StoreError::Backend(why))));
        }
        self.store.read(what, f)
    }
}
