//! [`SupervisorBuilder`]: configuration, restart recovery and start of a
//! [`Supervisor`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};

use crate::coalesce::Queue;
use crate::fence::Runs;
use crate::kind::Registry;
use crate::message::{DEFAULT_CANCEL_GRACE, MAX_WORKER_LIMIT};
use crate::metrics::Metrics;
use crate::recovery::recover;
use crate::shared::SharedQueue;
use crate::store::{StoreError, TaskStore};
use crate::time::Timestamp;
use crate::writer::{EntityWriter, Fence};

use super::{Live, Pool, Supervisor};

/// Configures and starts a [`Supervisor`].
#[derive(Debug)]
pub struct SupervisorBuilder {
    registry: Registry,
    store: Option<Arc<dyn TaskStore>>,
    metrics: Option<Metrics>,
    pools: BTreeMap<String, usize>,
    cancel_grace: BTreeMap<String, Duration>,
    cluster_limits: BTreeMap<String, usize>,
    worker_threads: usize,
    writer: Option<Addr<EntityWriter>>,
    shared: Option<Arc<dyn SharedQueue>>,
}

/// Starting a supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Recovery could not read or update the store.
    #[error("restart recovery failed")]
    Store(#[source] StoreError),
    /// A kind names a pool that has no limit configured.
    #[error("kind {kind:?} runs in pool {pool:?}, which has no worker limit configured")]
    UnknownPool {
        /// Kind.
        kind: String,
        /// Its pool.
        pool: String,
    },
    /// Metrics could not be created.
    #[error("could not create metrics")]
    Metrics(#[source] prometheus::Error),
}

impl std::fmt::Debug for dyn SharedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedQueue({})", self.node())
    }
}

impl std::fmt::Debug for dyn TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskStore")
    }
}

impl SupervisorBuilder {
    pub(super) fn new() -> Self {
        Self {
            registry: Registry::new(),
            store: None,
            metrics: None,
            pools: BTreeMap::from([(crate::kind::DEFAULT_POOL.to_owned(), 2)]),
            cancel_grace: BTreeMap::new(),
            cluster_limits: BTreeMap::new(),
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            writer: None,
            shared: None,
        }
    }

    /// The kinds to run.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The durable store (default: an in-memory store, nothing survives).
    pub fn store(mut self, store: Arc<dyn TaskStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Metrics to update (default: collectors no registry exposes).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets a pool's worker limit (pool `background` has limit 2 unless set).
    pub fn pool(mut self, name: impl Into<String>, limit: usize) -> Self {
        self.pools.insert(name.into(), limit.min(MAX_WORKER_LIMIT));
        self
    }

    /// How long a canceled or timed-out execution in `pool` gets to stop on
    /// its own before it is stopped hard (default
    /// [`DEFAULT_CANCEL_GRACE`](crate::DEFAULT_CANCEL_GRACE)).
    pub fn cancel_grace(mut self, pool: impl Into<String>, grace: Duration) -> Self {
        self.cancel_grace.insert(pool.into(), grace);
        self
    }

    /// Most tasks of `pool` running at once on all nodes of the shared
    /// queue together (see [`SharedQueue::claim`]); each node's claims
    /// apply its own value. Unused without a shared queue.
    pub fn cluster_limit(mut self, pool: impl Into<String>, limit: usize) -> Self {
        self.cluster_limits.insert(pool.into(), limit);
        self
    }

    /// The entity writer tasks publish through ([`TaskContext::publish`]).
    ///
    /// [`TaskContext::publish`]: crate::TaskContext::publish
    pub fn writer(mut self, writer: Addr<EntityWriter>) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Runs as one node of a cluster whose database owns the queue (see
    /// [`SharedQueue`]): requests are enqueued there, work is claimed from
    /// there, and there is no restart recovery (expired leases are rescued
    /// by whichever node sees them first). The store (set with
    /// [`store`](Self::store)) must be the same database: it takes the
    /// completions and applies them only while the run holds its lease.
    pub fn shared_queue(mut self, queue: Arc<dyn SharedQueue>) -> Self {
        self.shared = Some(queue);
        self
    }

    /// Threads that run task executions (default: one per core). With 0,
    /// executions run on the supervisor's own arbiter.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Recovers unfinished tasks from the store and starts the supervisor
    /// in the current actix system. A recovered task whose pool is no longer
    /// configured moves to its kind's pool.
    pub async fn start(self) -> Result<Addr<Supervisor>, StartError> {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(crate::MemoryStore::new()));
        let metrics = match self.metrics {
            Some(m) => m,
            None => Metrics::unregistered().map_err(StartError::Metrics)?,
        };
        for name in self.registry.names() {
            let pool = &self.registry.options(name).expect("listed kind").pool;
            if !self.pools.contains_key(pool) {
                return Err(StartError::UnknownPool {
                    kind: name.to_owned(),
                    pool: pool.clone(),
                });
            }
        }
        let mut queue = Queue::default();
        let unfinished = match self.shared {
            // Other nodes' work is not ours to recover.
            Some(_) => Vec::new(),
            None => store.unfinished().await.map_err(StartError::Store)?,
        };
        let now = Timestamp::now();
        let recovered = recover(unfinished, &self.registry, &self.pools, &mut queue, now);
        if !recovered.changes.is_empty() {
            store
                .write(recovered.changes)
                .await
                .map_err(StartError::Store)?;
        }
        let delayed_at_start = recovered
            .live
            .iter()
            .filter_map(|r| r.run_after.filter(|&t| t > now).map(|t| (r.id, t)))
            .collect();
        let live = recovered
            .live
            .into_iter()
            .map(|record| {
                (
                    record.id,
                    Live {
                        record,
                        execution: None,
                    },
                )
            })
            .collect();
        let workers = (0..self.worker_threads)
            .map(|_| Arbiter::new().handle())
            .collect();
        let pools = self
            .pools
            .into_iter()
            .map(|(name, limit)| {
                metrics
                    .workers_limit
                    .with_label_values(&[&name])
                    .set(limit as i64);
                metrics
                    .pending
                    .with_label_values(&[&name])
                    .set(queue.pending_in(&name) as i64);
                metrics.workers_active.with_label_values(&[&name]).set(0);
                let cancel_grace = self
                    .cancel_grace
                    .get(&name)
                    .copied()
                    .unwrap_or(DEFAULT_CANCEL_GRACE);
                let pool = Pool {
                    limit,
                    active: 0,
                    cancel_grace,
                    cluster_limit: self.cluster_limits.get(&name).copied(),
                };
                (name, pool)
            })
            .collect();
        let runs = Arc::new(Runs::default());
        if let Some(writer) = &self.writer {
            // Ahead of every publication in the writer's mailbox: executions
            // start only after this.
            writer.do_send(Fence(Arc::clone(&runs)));
        }
        Ok(Supervisor {
            registry: Arc::new(self.registry),
            store,
            metrics,
            pools,
            queue,
            live,
            workers,
            next_worker: 0,
            launching: Vec::new(),
            gauges_stale: false,
            handles: Default::default(),
            delayed_at_start,
            drain: None,
            writer: self.writer,
            journal: super::journal::Journal::new(self.shared.is_none()),
            runs,
            cluster: self.shared.map(super::cluster::Cluster::new),
        }
        .start())
    }
}
