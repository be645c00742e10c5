//! The durable store: task journal and artifact manifest in one SQLite file.
//!
//! # Durability
//! The file runs in WAL mode with `synchronous=FULL`: a write's [`Durable`]
//! resolves only after the transaction holding it committed and the WAL was
//! synced, so an acknowledged write survives a crash or power loss.
//!
//! # Group commit
//! All writes, including `delete` and `prune`, go to one writer thread in
//! call order (see `writer.rs`). It commits whatever has queued up in one
//! transaction, so many concurrent writers share each sync. A caller may
//! drop the [`Durable`] without awaiting it; the change is still applied, in
//! order.
//!
//! # Reads
//! Reads use their own connections (WAL lets them run beside the writer and
//! see the last commit) on tokio's blocking pool via `spawn_blocking`: the
//! caller is inside the daemon's tokio/actix runtime, and the blocking pool
//! lets a slow history page and a restart scan run at once, where a single
//! reader thread would queue them. Idle read connections are kept in a small
//! pool. The returned futures must therefore be polled inside a tokio
//! runtime.
//!
//! # A file that cannot be written, or is gone
//! Opening checks that the directory takes a synced write and writes the
//! database once, so a read-only or full data directory fails at start with
//! its path and the OS error. While open, every commit first checks that the
//! file is still the one opened: a database deleted or replaced under the
//! daemon fails every write from then on, and [`TaskStore::writable`] says
//! so at once. Ids never repeat, even across a lost database (see
//! `guard.rs`).
//!
//! # Shutdown
//! Dropping the store commits every write handed over before, then closes
//! the file; the drop waits for that final commit.

mod guard;
mod log;
mod rows;
mod schema;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};

use futures::future::BoxFuture;
use groundcrew_actors::{
    ArtifactRecord, Change, Durable, EntityName, HistoryCategory, Manifest, ManifestChange,
    Retention, StoreError, TaskFilter, TaskId, TaskPage, TaskRecord, TaskStore, Timestamp,
};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use self::guard::{IdReservation, OpenedFiles};
use self::writer::{Health, Message, Op, Writer};
use super::state::category_name;

pub use self::guard::check_writable;

/// How many write calls one transaction takes at most. Large enough that a
/// sync is shared by hundreds of tasks, small enough that one transaction
/// never holds the WAL for long.
pub const DEFAULT_MAX_BATCH: usize = 4096;

/// Idle read connections kept for reuse; more are opened under load.
const MAX_IDLE_READERS: usize = 4;

/// Why [`SqliteStore::open`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite failed to open or configure the file.
    #[error("cannot open task store {}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database, or it is damaged. It was not
    /// modified.
    #[error("task store {} is corrupt or not an SQLite database", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is an SQLite database of some other program. It was not
    /// modified.
    #[error("{} is an SQLite database but not a groundcrew task store", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer groundcrew. It was not modified.
    #[error(
        "task store {} has schema version {found}, newer than version {supported} this build supports",
        path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Bringing the file to the current schema failed; it keeps its old
    /// version.
    #[error("cannot migrate task store {} to schema version {version}", path.display())]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The version it was being migrated to.
        version: u32,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory of the file does not take writes (read-only, full,
    /// not ours); nothing was opened.
    #[error("task store {} cannot be written: directory {} refused a test write", path.display(), dir.display())]
    NotWritable {
        /// The file.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The id reservation beside the file could not be read or written.
    #[error("cannot use the task id reservation {}", path.display())]
    Ids {
        /// The reservation file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The opened file could not be looked at (to notice later that it is
    /// gone or replaced).
    #[error("cannot inspect task store file {}", path.display())]
    Inspect {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread for task store {}", path.display())]
    Thread {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// A [`TaskStore`] and [`Manifest`] on one SQLite file, with group commit.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use groundcrew::store::SqliteStore;
/// use groundcrew_actors::{HistoryCategory, TaskFilter, TaskStore};
///
/// let store = SqliteStore::open("/var/lib/groundcrew/tasks.db")?;
/// let page = TaskStore::list(&store, HistoryCategory::Failed, TaskFilter::default(), 50, 0).await?;
/// println!("{} failed tasks", page.total);
/// # Ok(()) }
/// ```
///
/// # Failure
/// A write that breaks a rule of the schema (a second running task for one
/// coalescing key) fails alone with [`StoreError::Conflict`]; an I/O error
/// fails every write of its batch with [`StoreError::Backend`]. The store
/// keeps serving after both, and [`TaskStore::writable`] reports the last
/// failure until a commit succeeds. Once its file was deleted or replaced,
/// every write fails. If the writer thread is gone, writes fail with
/// [`StoreError::Closed`].
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Message>,
    thread: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    next_id: AtomicU64,
    commits: Arc<AtomicU64>,
    health: Arc<Health>,
    /// What the file was at open, for [`TaskStore::writable`].
    opened: OpenedFiles,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the store at `path`.
    ///
    /// A file that is not a groundcrew store, or whose schema is newer than
    /// this build, is refused and left unchanged.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with_max_batch(path, DEFAULT_MAX_BATCH)
    }

    /// Like [`open`](Self::open), with at most `max_batch` write calls per
    /// transaction. `1` turns group commit off (one transaction and sync
    /// per write), which benchmarks use as the baseline.
    pub fn open_with_max_batch(
        path: impl AsRef<Path>,
        max_batch: usize,
    ) -> Result<Self, OpenError> {
        let path = path.as_ref().to_owned();
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        guard::check_writable(&dir).map_err(|source| OpenError::NotWritable {
            path: path.clone(),
            dir: dir.clone(),
            source,
        })?;
        let ids_error = |source| OpenError::Ids {
            path: IdReservation::path_for(&path),
            source,
        };
        let ids = IdReservation::load(&path).map_err(ids_error)?;
        let mut conn = Connection::open(&path).map_err(sqlite)?;
        let found = schema::prepare(&mut conn, &path)?;
        let mut next_id = schema::next_id(&conn).map_err(sqlite)?;
        if found == 0 && ids.reserved() >= next_id {
            tracing::warn!(path = %path.display(), reserved = ids.reserved(),
                "new task store, but task ids were handed out before (was the database removed?): ids continue above them");
            next_id = ids.reserved() + 1;
        }
        // One write at open: a database SQLite could only open read-only
        // fails here, and a new one keeps the id sequence from now on.
        conn.execute(
            "UPDATE meta SET value = max(value, ?1) WHERE key = 'next_id'",
            [next_id],
        )
        .map_err(sqlite)?;
        let opened = OpenedFiles::record(&path).map_err(|source| OpenError::Inspect {
            path: path.clone(),
            source,
        })?;
        let health = Arc::new(Health::default());

        let (sender, inbox) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            conn,
            inbox,
            max_batch: max_batch.max(1),
            commits: Arc::clone(&commits),
            path: path.clone(),
            opened: opened.clone(),
            ids,
            health: Arc::clone(&health),
        };
        let thread = thread::Builder::new()
            .name("groundcrew-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| OpenError::Thread {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            readers: Arc::new(Readers {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            path,
            writer: sender,
            thread: Some(thread),
            next_id: AtomicU64::new(next_id),
            commits,
            health,
            opened,
        })
    }

    /// The file this store keeps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions committed since open: a diagnostic that shows how well
    /// group commit batches (writes per commit).
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

    /// Runs a read on the blocking pool with a pooled read connection.
    fn read<T, F>(&self, what: &'static str, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || readers.with(what, f))
                .await
                .map_err(|e| StoreError::Backend(format!("{what} did not finish: {e}")))?
        })
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("next_id", &self.next_id)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Idle readers go first so that the writer's connection is the last
        // one and its close checkpoints the WAL back into the file.
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
        let _ = self.writer.send(Message::Close);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(path = %self.path.display(), "task store writer panicked");
            }
        }
    }
}

impl TaskStore for SqliteStore {
    fn allocate_id(&self) -> TaskId {
        TaskId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn write(&self, changes: Vec<Change>) -> Durable {
        let done = self.submit(Op::Tasks(changes));
        Box::pin(async move { done.await.map(drop) })
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        self.read("unfinished tasks", |conn| {
            let sql = format!(
                "SELECT {} FROM tasks WHERE category = 'pending' ORDER BY id",
                rows::TASK_COLUMNS
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let tasks = stmt.query_map([], rows::task_from_row)?;
            tasks.collect()
        })
    }

    fn get(&self, id: TaskId) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        self.read("task lookup", move |conn| {
            let sql = format!("SELECT {} FROM tasks WHERE id = ?1", rows::TASK_COLUMNS);
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut tasks = stmt.query_map([id.0], rows::task_from_row)?;
            tasks.next().transpose()
        })
    }

    fn list(
        &self,
        category: HistoryCategory,
        filter: TaskFilter,
        limit: u64,
        offset: u64,
    ) -> BoxFuture<'static, Result<TaskPage, StoreError>> {
        self.read("history page", move |conn| {
            let name = category_name(category);
            // The same filter as `TaskFilter::matches`; an absent field
            // (NULL) passes.
            let filtered = "category = ?1 AND (?2 IS NULL OR kind = ?2) \
                AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(triggers) WHERE value = ?3)) \
                AND (?4 IS NULL OR substr(target, 1, length(?4)) = ?4) \
                AND (?5 IS NULL OR created_at >= ?5)";
            let trigger = filter.trigger.as_ref().map(|t| t.as_str().to_owned());
            let since = filter.since.map(|t| t.as_millis());
            let conditions =
                rusqlite::params![name, filter.kind, trigger, filter.target_prefix, since];
            let total = conn
                .prepare_cached(&format!("SELECT count(*) FROM tasks WHERE {filtered}"))?
                .query_row(conditions, |r| r.get(0))?;
            let sql = format!(
                "SELECT {} FROM tasks WHERE {filtered} ORDER BY id DESC LIMIT ?6 OFFSET ?7",
                rows::TASK_COLUMNS
            );
            let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let mut stmt = conn.prepare_cached(&sql)?;
            let tasks = stmt
                .query_map(
                    rusqlite::params![
                        name,
                        filter.kind,
                        trigger,
                        filter.target_prefix,
                        since,
                        clamp(limit),
                        clamp(offset)
                    ],
                    rows::task_from_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(TaskPage { tasks, total })
        })
    }

    fn delete(&self, id: TaskId) -> BoxFuture<'static, Result<bool, StoreError>> {
        let done = self.submit(Op::Delete(id));
        Box::pin(async move { Ok(done.await? > 0) })
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        self.submit(Op::Prune(retention, now))
    }

    fn writable(&self) -> Result<(), StoreError> {
        self.opened.check().map_err(StoreError::Backend)?;
        match self.health.last_error() {
            Some(e) => Err(StoreError::Backend(e)),
            None => Ok(()),
        }
    }
}

impl Manifest for SqliteStore {
    fn write(&self, changes: Vec<ManifestChange>) -> Durable {
        let done = self.submit(Op::Manifest(changes));
        Box::pin(async move { done.await.map(drop) })
    }

    fn artifact(
        &self,
        entity: &EntityName,
    ) -> BoxFuture<'static, Result<Option<ArtifactRecord>, StoreError>> {
        let entity = entity.clone();
        self.read("manifest lookup", move |conn| {
            let sql = format!(
                "SELECT {} FROM manifest WHERE entity = ?1",
                rows::ARTIFACT_COLUMNS
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut records = stmt.query_map([entity.as_str()], rows::artifact_from_row)?;
            records.next().transpose()
        })
    }

    fn artifacts_of(
        &self,
        entities: &[EntityName],
    ) -> BoxFuture<'static, Result<Vec<Option<ArtifactRecord>>, StoreError>> {
        let entities = entities.to_vec();
        // One connection and one trip to the blocking pool for the lot.
        self.read("manifest lookup", move |conn| {
            let sql = format!(
                "SELECT {} FROM manifest WHERE entity = ?1",
                rows::ARTIFACT_COLUMNS
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            entities
                .iter()
                .map(|entity| {
                    let mut records = stmt.query_map([entity.as_str()], rows::artifact_from_row)?;
                    records.next().transpose()
                })
                .collect()
        })
    }

    fn artifacts(&self) -> BoxFuture<'static, Result<Vec<ArtifactRecord>, StoreError>> {
        self.read("manifest listing", |conn| {
            let sql = format!(
                "SELECT {} FROM manifest ORDER BY entity",
                rows::ARTIFACT_COLUMNS
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let records = stmt.query_map([], rows::artifact_from_row)?;
            records.collect()
        })
    }
}

/// Read connections, opened on demand and kept while idle.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs `f` on an idle connection (or a new one) and puts it back.
    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let fail = |e: rusqlite::Error| {
            StoreError::Backend(format!("{what} in {} failed: {e}", self.path.display()))
        };
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect().map_err(fail)?,
        };
        let result = f(&conn).map_err(fail);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// A read-only connection: the writer thread is the only one that writes.
    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(schema::BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }
}
