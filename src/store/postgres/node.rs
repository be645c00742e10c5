//! One daemon per node name: a session-level advisory lock, keyed by the
//! name, held on a connection of its own.
//!
//! # Why a lock
//! A node that starts takes back the claims its name held before (the
//! previous process of that name is gone: it crashed or stopped), so that
//! they run again at once instead of after their lease. That is safe only
//! if no other live process has the name, which the lock proves: the
//! server releases it when its holder's session ends, and a process killed
//! with SIGKILL loses its connections at once. A daemon that cannot take
//! the lock refuses to start, naming the server process that holds it.
//!
//! # Losing it
//! The lock lives as long as its connection. When that connection closes
//! (the server restarted, the network dropped), the store refuses writes
//! until the lock is taken again: the keeper task reconnects with backoff
//! and takes it, unless another node got it meanwhile, in which case
//! writes keep failing and say so. A store that never claimed the lock
//! (tests, tools) is not affected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

use super::connection::Backoff;

/// First half of the two-key advisory lock of a node name ("gcrw"); the
/// second is `hashtext(name)`. The two-key form never meets the one-key
/// locks the store takes elsewhere.
const NODE_LOCK_CLASS: i32 = 0x6763_7277;

/// Whether this store holds the node lock, shared with the writer.
#[derive(Debug, Default)]
pub(super) struct NodeLock {
    claimed: AtomicBool,
    held: AtomicBool,
    lost: Mutex<Option<String>>,
}

impl NodeLock {
    /// Why writes must be refused now: the lock was claimed and is not held.
    pub(super) fn refusal(&self) -> Option<String> {
        if !self.claimed.load(Ordering::SeqCst) || self.held.load(Ordering::SeqCst) {
            return None;
        }
        let lost = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some(lost.unwrap_or_else(|| "the node lock is not held".into()))
    }

    fn hold(&self) {
        self.claimed.store(true, Ordering::SeqCst);
        self.held.store(true, Ordering::SeqCst);
        *self.lost.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn lose(&self, why: String) {
        *self.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.held.store(false, Ordering::SeqCst);
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum LockError {
    #[error("cannot connect")]
    Connect(#[source] tokio_postgres::Error),
    #[error("another groundcrew node holds the database{}", holder_text(*.0))]
    Held(Option<i32>),
}

fn holder_text(pid: Option<i32>) -> String {
    pid.map(|p| format!(" (server process {p})"))
        .unwrap_or_default()
}

/// A connection holding the lock, and the task driving it (it ends when
/// the connection closes).
struct Held {
    _client: Client,
    connection: JoinHandle<()>,
}

/// Takes the lock; on success keeps it (and retakes it after a lost
/// connection) from a task on the store's runtime.
pub(super) async fn claim(
    config: Config,
    lock: Arc<NodeLock>,
    target: String,
    name: String,
) -> Result<(), LockError> {
    let held = take(&config, &name).await?;
    lock.hold();
    tokio::spawn(keep(config, lock, target, name, held));
    Ok(())
}

async fn take(config: &Config, name: &str) -> Result<Held, LockError> {
    let (client, connection) = config.connect(NoTls).await.map_err(LockError::Connect)?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2)), hashtext($2)",
            &[&NODE_LOCK_CLASS, &name],
        )
        .await
        .map_err(LockError::Connect)?;
    if row.get::<_, bool>(0) {
        return Ok(Held {
            _client: client,
            connection,
        });
    }
    // pg_locks shows the two keys as oids.
    let (class, object) = (NODE_LOCK_CLASS as u32, row.get::<_, i32>(1) as u32);
    let holder = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                AND classid = $1 AND objid = $2 AND objsubid = 2 AND database =
                (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&class, &object],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i32>(0));
    Err(LockError::Held(holder))
}

/// Waits for the lock's connection to close, then takes the lock again.
async fn keep(config: Config, lock: Arc<NodeLock>, target: String, name: String, mut held: Held) {
    loop {
        let _ = (&mut held.connection).await;
        let why = format!("lost the node lock: the connection to PostgreSQL {target} closed");
        tracing::error!(error = %why, "refusing writes until the node lock is taken again");
        lock.lose(why);
        let mut backoff = Backoff::default();
        held = loop {
            backoff.failed();
            tokio::time::sleep(backoff.delay()).await;
            match take(&config, &name).await {
                Ok(held) => break held,
                Err(e) => {
                    let why = format!(
                        "cannot take the node lock again on PostgreSQL {target}: {}",
                        crate::entities::error_chain(&e)
                    );
                    lock.lose(why);
                }
            }
        };
        tracing::info!(target = %target, "node lock taken again");
        lock.hold();
    }
}
