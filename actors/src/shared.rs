//! The contract of a queue that several supervisors share: the database
//! owns the queue, coalescing and the claims, and each node's supervisor
//! runs what it claimed.
//!
//! # The model
//! - **Enqueue** applies the coalescing rules in the database, so they hold
//!   across nodes: a request merges into a queued task of its kind and
//!   target, waits as the one follow-up behind a running one, or is queued;
//!   a queued `all` absorbs the kind's queued entity requests.
//! - **Claims** move ready tasks of a pool to `running` on this node, each
//!   with a new [`RunToken`] (the lease epoch) and a lease that expires
//!   unless renewed. A claim never takes a task whose kind and target
//!   already run somewhere.
//! - **Heartbeats** renew the leases of the runs this node still runs; a
//!   run missing from the answer was lost (its lease expired and it was
//!   rescued), a run answered as `canceling` was canceled from another
//!   node. A node that could not renew a run's lease in time stops it
//!   (the database may have given it to another node by then).
//! - **Rescue** puts tasks whose lease expired back in the queue, so that
//!   another node runs them again.
//! - **Completions** go through [`TaskStore::write`](crate::TaskStore::write)
//!   like on one node; the store applies a completion only while the run
//!   still holds its lease, so a node that lost its claim changes nothing.
//!
//! Errors are [`StoreError`]s: the supervisor retries claims, heartbeats
//! and rescues on its next tick, and refuses requests while enqueue fails.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::message::SubmitReply;
use crate::spec::{RunToken, TaskId, TaskState};
use crate::store::{StoreError, TaskRecord};
use crate::time::Timestamp;

/// A run this node holds, as a heartbeat found it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeldRun {
    /// The task.
    pub id: TaskId,
    /// Its current execution.
    pub run: RunToken,
    /// `running`, or `canceling` once someone asked it to stop.
    pub state: TaskState,
}

/// What a cancel through the shared queue did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SharedCancel {
    /// No such task, or it has ended already.
    Unknown,
    /// It was queued and is now canceled.
    Canceled,
    /// It runs on another node, which will stop it at its next heartbeat,
    /// after the grace period of its pool (named here).
    Signaled {
        /// The task's pool.
        pool: String,
    },
}

/// One node of the cluster, as the shared queue knows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its last heartbeat.
    pub heartbeat_at: Timestamp,
    /// Executions it ran at that heartbeat.
    pub running: u64,
    /// Whether its heartbeat is recent (within one lease).
    pub alive: bool,
}

/// Queued work of the whole cluster, for the panel.
#[derive(Clone, Debug, Default)]
pub struct SharedPending {
    /// Pending tasks in queue order, at most the number asked for.
    pub tasks: Vec<TaskRecord>,
    /// How many are queued in all.
    pub total: u64,
    /// Queued per pool.
    pub per_pool: Vec<(String, u64)>,
    /// Tasks running or canceling on other nodes.
    pub running_elsewhere: u64,
}

/// A queue shared by several supervisors.
pub trait SharedQueue: Send + Sync + 'static {
    /// This node's name, unique in the cluster.
    fn node(&self) -> &str;

    /// How long a claim holds without a heartbeat.
    fn lease(&self) -> std::time::Duration;

    /// Changes whenever ready work may have appeared anywhere in the
    /// cluster (an enqueue, a completion, a rescue); the supervisor claims
    /// then, and polls slowly besides in case a wake-up was lost.
    fn wakeups(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Enqueues new requests (records built by
    /// [`TaskRecord::new_queued`]) in one transaction, coalescing them with
    /// the cluster's queue; answers per request, in order, once durable.
    fn enqueue(
        &self,
        requests: Vec<TaskRecord>,
    ) -> BoxFuture<'static, Result<Vec<SubmitReply>, StoreError>>;

    /// Claims up to `n` ready tasks of `pool` for this node, highest
    /// priority first: each comes back `running`, its attempt counted, with
    /// a new run token and a lease. With a `cluster_limit`, fewer: the
    /// pool's tasks running on all nodes (unexpired leases) and the claimed
    /// ones together stay within it.
    fn claim(
        &self,
        pool: &str,
        n: usize,
        cluster_limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>>;

    /// Renews the leases of `runs` (what this node runs now) and records
    /// its heartbeat; answers those it still holds. A run this node holds
    /// in the database but does not list is not renewed: it stopped here,
    /// and the rescue queues it again once its lease expires.
    fn heartbeat(
        &self,
        runs: Vec<(TaskId, RunToken)>,
    ) -> BoxFuture<'static, Result<Vec<HeldRun>, StoreError>>;

    /// Puts tasks whose lease expired back in the queue; answers how many.
    fn rescue(&self) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Cancels a task that this node does not run.
    fn cancel(&self, id: TaskId) -> BoxFuture<'static, Result<SharedCancel, StoreError>>;

    /// The cluster's queued work.
    fn pending(&self, limit: usize) -> BoxFuture<'static, Result<SharedPending, StoreError>>;

    /// The cluster's nodes.
    fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeStatus>, StoreError>>;
}
