//! The task journal and artifact manifest on PostgreSQL, for `store:
//! postgres://…`.
//!
//! # Durability
//! A write's [`Durable`] resolves once the statement holding it committed
//! (with the server's `synchronous_commit`, on by default: after the WAL
//! flush). All writes, including `delete` and `prune`, go through one
//! writer task in call order, which commits whatever has queued up as one
//! statement (see `writer.rs`).
//!
//! # Runtime
//! Connections run on a current-thread tokio runtime on a thread the store
//! owns (see `connection.rs`); the futures the store returns may be polled
//! anywhere, including actix's single-threaded arbiters.
//!
//! # A server that goes away
//! A dropped connection or a restarting server fails the writes of that
//! moment with [`StoreError::Backend`] and nothing else: a failed batch
//! changed nothing, the supervisor writes it again, and the pool connects
//! again (with backoff) when the server is back. [`TaskStore::writable`]
//! reports the last outcome, and the node lock's state (see `node.rs`).
//!
//! # Several nodes
//! Every daemon on the database is a node: [`PostgresStore::join_cluster`]
//! takes the node name's lock (see `node.rs`) and answers the shared
//! queue the supervisor claims from (see `cluster.rs`, and `listener.rs`
//! for wake-ups). The journal then applies a completion of the current run
//! only while this node holds its lease (see the fencing clause in
//! `writer.rs`).
//!
//! # Shutdown
//! Dropping the store commits every write handed over before, then stops
//! its runtime thread and closes the connections; the drop waits for that.

mod artifacts;
mod cluster;
mod connection;
mod ids;
mod listener;
mod log;
mod manifest;
mod node;
mod rows;
mod schema;
mod tasks;
mod writer;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use groundcrew_actors::{Durable, StoreError};
use tokio::sync::{mpsc, oneshot};

use self::connection::{Backoff, Driver};
use self::ids::Ids;
use self::node::{LockError, NodeLock};
use self::writer::{Health, Message, Op, Writer};

pub use self::cluster::{valid_node_name, ClusterError, PgQueue};

/// Why [`PostgresStore::open`] or [`PostgresStore::claim_node`] failed.
/// No variant shows the URL's password: servers are named as
/// `postgres://user@host:port/database`.
#[derive(Debug, thiserror::Error)]
pub enum PostgresOpenError {
    /// The URL is not a valid PostgreSQL connection string.
    #[error("invalid PostgreSQL url")]
    Url(#[source] tokio_postgres::Error),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL {target}")]
    Connect {
        /// The server.
        target: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Bringing the database to the current schema failed; it keeps its
    /// old version.
    #[error("cannot migrate PostgreSQL {target} to schema version {version}")]
    Migrate {
        /// The server.
        target: String,
        /// The version it was being migrated to.
        version: i32,
        /// What the server said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database was migrated by a newer groundcrew. It was not modified.
    #[error(
        "PostgreSQL {target} has groundcrew schema version {found}, newer than version \
         {supported} this build supports"
    )]
    TooNew {
        /// The server.
        target: String,
        /// Its schema version.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// Another daemon with this node name runs on the database.
    #[error(
        "another groundcrew node named {node:?} runs on PostgreSQL {target}{}: give every \
         daemon its own `node` name",
        holder.map(|pid| format!(" (its server process {pid} holds the name's lock)")).unwrap_or_default()
    )]
    Locked {
        /// The server.
        target: String,
        /// The node name.
        node: String,
        /// The server process of the connection that holds the lock.
        holder: Option<i32>,
    },
    /// The store's runtime thread could not be started.
    #[error("cannot start the PostgreSQL store's runtime thread")]
    Thread(#[source] std::io::Error),
    /// The store's runtime stopped during open.
    #[error("the PostgreSQL store's runtime stopped while opening")]
    Stopped,
}

/// A [`TaskStore`](groundcrew_actors::TaskStore) and
/// [`Manifest`](groundcrew_actors::Manifest) on one PostgreSQL database,
/// with group commit.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use groundcrew::store::PostgresStore;
/// use groundcrew_actors::{HistoryCategory, TaskFilter, TaskStore};
///
/// let store = PostgresStore::open("postgres://gc:secret@db.internal/groundcrew")?;
/// let page = TaskStore::list(&store, HistoryCategory::Failed, TaskFilter::default(), 50, 0).await?;
/// println!("{} failed tasks", page.total);
/// # Ok(()) }
/// ```
///
/// # Failure
/// A batch that fails fails every write in it with [`StoreError::Backend`]
/// and changes nothing; the store keeps serving and reconnects when the
/// server is back. If the writer task is gone, writes fail with
/// [`StoreError::Closed`].
pub struct PostgresStore {
    target: String,
    config: tokio_postgres::Config,
    pool: Pool,
    writer: mpsc::UnboundedSender<Message>,
    ids: Ids,
    commits: Arc<AtomicU64>,
    health: Arc<Health>,
    node: Arc<NodeLock>,
    cluster_node: Arc<std::sync::OnceLock<String>>,
    // Last: dropping it stops the connections.
    driver: Driver,
}

impl PostgresStore {
    /// Connects to the database at `url` and migrates it.
    ///
    /// Blocks until the server answered; a database whose schema is newer
    /// than this build is refused unchanged.
    pub fn open(url: &str) -> Result<Self, PostgresOpenError> {
        Self::open_with_max_batch(url, crate::store::DEFAULT_MAX_BATCH)
    }

    /// Like [`open`](Self::open), with at most `max_batch` write calls per
    /// batch (`1`: one statement per write, the baseline for benchmarks).
    pub fn open_with_max_batch(url: &str, max_batch: usize) -> Result<Self, PostgresOpenError> {
        let config = connection::parse(url).map_err(PostgresOpenError::Url)?;
        let target = connection::describe(&config);
        let driver = Driver::start().map_err(PostgresOpenError::Thread)?;
        let pool = {
            // The pool's timeouts need the runtime it will run on.
            let _entered = driver.handle().enter();
            connection::pool(config.clone()).map_err(|e| PostgresOpenError::Connect {
                target: target.clone(),
                source: Box::new(e),
            })?
        };
        let prepared = driver
            .wait(prepare(pool.clone(), target.clone()))
            .ok_or(PostgresOpenError::Stopped)??;
        let (first, size) = prepared;
        tracing::info!(target = %target, "task store on PostgreSQL");

        let (sender, inbox) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        let health = Arc::new(Health::default());
        let node = Arc::new(NodeLock::default());
        let cluster_node = Arc::new(std::sync::OnceLock::new());
        let writer = Writer {
            cluster_node: Arc::clone(&cluster_node),
            pool: pool.clone(),
            inbox,
            max_batch: max_batch.max(1),
            commits: Arc::clone(&commits),
            health: Arc::clone(&health),
            node: Arc::clone(&node),
            target: target.clone(),
            backoff: Backoff::default(),
        };
        driver.handle().spawn(writer.run());
        Ok(PostgresStore {
            ids: Ids::new(first, size, pool.clone(), driver.handle().clone()),
            target,
            config,
            pool,
            writer: sender,
            commits,
            health,
            node,
            cluster_node,
            driver,
        })
    }

    /// Takes the node name `name` on this database: fails with
    /// [`PostgresOpenError::Locked`] while another store holds it. From
    /// then on, writes fail whenever the lock is not held (see `node.rs`).
    pub fn claim_node(&self, name: &str) -> Result<(), PostgresOpenError> {
        let claimed = node::claim(
            self.config.clone(),
            Arc::clone(&self.node),
            self.target.clone(),
            name.to_owned(),
        );
        match self.driver.wait(claimed) {
            None => Err(PostgresOpenError::Stopped),
            Some(Ok(())) => Ok(()),
            Some(Err(LockError::Held(holder))) => Err(PostgresOpenError::Locked {
                target: self.target.clone(),
                node: name.to_owned(),
                holder,
            }),
            Some(Err(LockError::Connect(source))) => Err(PostgresOpenError::Connect {
                target: self.target.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// The server, as logs may name it (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Batches committed since open: shows how well group commit batches.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Hands an op to the writer now (so call order is channel order) and
    /// returns a future for its outcome.
    fn submit(&self, op: Op) -> BoxFuture<'static, Result<u64, StoreError>> {
        let (reply, outcome) = oneshot::channel();
        let sent = self.writer.send(Message::Apply(op, reply));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            outcome.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn durable(&self, op: Op) -> Durable {
        let done = self.submit(op);
        Box::pin(async move { done.await.map(drop) })
    }

    /// Runs a read on the store's runtime with a pooled connection.
    fn read<T, F, Fut>(&self, what: &'static str, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, rows::RowError>> + Send,
    {
        let (pool, target) = (self.pool.clone(), self.target.clone());
        let done = self.driver.spawn(async move {
            let fail = |e: &dyn std::error::Error| {
                StoreError::Backend(format!(
                    "{what} on PostgreSQL {target} failed: {}",
                    crate::entities::error_chain(e)
                ))
            };
            let client = pool.get().await.map_err(|e| fail(&e))?;
            f(client).await.map_err(|e| fail(&e))
        });
        Box::pin(async move { done.await? })
    }
}

/// Migrates and reserves the first block of ids.
async fn prepare(pool: Pool, target: String) -> Result<(u64, u64), PostgresOpenError> {
    let connect = |e: deadpool_postgres::PoolError| PostgresOpenError::Connect {
        target: target.clone(),
        source: Box::new(e),
    };
    let mut client = pool.get().await.map_err(connect)?;
    schema::migrate(&mut client, &target).await?;
    drop(client);
    let size = ids::block_size(&pool).await.map_err(connect)?;
    let first = ids::fetch(&pool).await.map_err(connect)?;
    Ok((first, size))
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        let (done, closed) = oneshot::channel();
        if self.writer.send(Message::Close(done)).is_ok() {
            // Wait on the store's runtime: the caller may be inside a
            // runtime of its own, where blocking on `closed` would panic.
            self.driver.wait(async move {
                let _ = closed.await;
            });
        }
    }
}
