//! Where artifacts physically live: the [`ArtifactSink`] contract and the
//! filesystem sink [`FsSink`].
//!
//! A sink is handed whole batches so that it can make many artifacts durable
//! at the cost of one: [`FsSink`] writes every artifact of a batch to a temp
//! file beside its final place, syncs them all with one `syncfs`, renames
//! each into place and syncs each directory it touched once. A crash at any
//! point leaves either the old or the new complete file, never a partial one.
//!
//! Only the [`EntityWriter`](crate::EntityWriter) calls a sink, from one
//! dedicated thread, so sink methods block and are never called concurrently.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::entity::EntityName;
use crate::spec::{RunToken, TaskId};

/// One artifact to publish: the entity it belongs to and its full content.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Artifact {
    /// The entity.
    pub entity: EntityName,
    /// The complete content.
    pub content: Vec<u8>,
    /// The task execution publishing it: a sink shared by several nodes
    /// (PostgreSQL) fences on it; the file sink ignores it.
    pub source: Option<(TaskId, RunToken)>,
}

/// The place artifacts are stored.
///
/// # Durability
/// [`publish`](ArtifactSink::publish) returns `Ok` for an artifact only once
/// its new content would survive a crash, and must never leave a partial
/// artifact behind: readers see the old complete content or the new one.
///
/// # Calling
/// Methods block. The entity writer calls them from one thread, one call at
/// a time, and never puts two artifacts of one entity into one batch.
pub trait ArtifactSink: Send + Sync + 'static {
    /// Publishes a batch; the result at index `i` is that of `batch[i]`.
    ///
    /// One artifact failing (say, its directory cannot be created) should not
    /// fail the others when the sink can tell them apart; a failure that
    /// touches every artifact (the sync) fails them all.
    fn publish(&self, batch: &[Artifact]) -> Vec<Result<(), SinkError>>;

    /// Removes an entity's artifact durably; `false` if there was none.
    fn remove(&self, entity: &EntityName) -> Result<bool, SinkError>;

    /// Removes an entity's artifact for the execution `source` (task and
    /// run), if any. A shared sink refuses it with
    /// [`SinkError::StaleRun`] when that run no longer holds its task, as
    /// it refuses a publication; the default (one node, where the entity
    /// writer's own fence decides) is [`remove`](Self::remove).
    fn remove_from(
        &self,
        entity: &EntityName,
        source: Option<(TaskId, RunToken)>,
    ) -> Result<bool, SinkError> {
        let _ = source;
        self.remove(entity)
    }

    /// Whether the entity's artifact exists with exactly `content`: the
    /// writer skips a publication only then, so that an artifact damaged
    /// outside the writer (even to the same length) is written again.
    fn holds(&self, entity: &EntityName, content: &[u8]) -> Result<bool, SinkError>;
}

/// The step of sink work that failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SinkOp {
    /// Opening or creating the root or a class directory.
    CreateDir,
    /// Creating or writing a temp file.
    WriteTemp,
    /// Making written data durable.
    Sync,
    /// Renaming a temp file into place.
    Rename,
    /// Making a directory's entries durable.
    SyncDir,
    /// Removing an artifact or a stale temp file.
    Remove,
    /// Reading an artifact's metadata or listing a directory.
    Inspect,
}

impl fmt::Display for SinkOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkOp::CreateDir => "create directory",
            SinkOp::WriteTemp => "write temp file",
            SinkOp::Sync => "sync",
            SinkOp::Rename => "rename into place",
            SinkOp::SyncDir => "sync directory",
            SinkOp::Remove => "remove",
            SinkOp::Inspect => "inspect",
        })
    }
}

/// A sink operation that failed, naming the path and the step.
///
/// Cloneable so that one failed sync can be reported to every artifact of
/// its batch.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// An I/O step failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The step.
        op: SinkOp,
        /// The file or directory it was working on.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The path built for an entity would leave the sink's root.
    #[error(
        "artifact path {} for entity {entity} is outside root {}",
        path.display(),
        root.display()
    )]
    OutsideRoot {
        /// The entity.
        entity: EntityName,
        /// The offending path.
        path: PathBuf,
        /// The sink's root.
        root: PathBuf,
    },
    /// A shared sink refused the artifact: its execution no longer holds
    /// its task's claim (a later run took over, or its node's lease lapsed).
    #[error(
        "task {task} run {run} no longer holds its claim; artifact of {entity} was not written"
    )]
    StaleRun {
        /// The entity.
        entity: EntityName,
        /// The task.
        task: TaskId,
        /// The token the publication carried.
        run: RunToken,
    },
    /// A sink backed by a database failed (the whole batch).
    #[error("artifact sink {what} failed: {message}")]
    Backend {
        /// The operation: publish, remove, inspect.
        what: &'static str,
        /// The database's error, with its causes.
        message: String,
    },
}

impl SinkError {
    /// An I/O failure of `op` on `path`.
    pub fn io(op: SinkOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SinkError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// Artifacts as files under a root directory: `country:DE` is
/// `<root>/country/DE`, or `<root>/country/DE.<ext>` with an extension.
///
/// ```no_run
/// use groundcrew_actors::FsSink;
///
/// let sink = FsSink::open("/var/lib/geo/artifacts")?.with_extension("txt");
/// let de = "country:DE".parse().unwrap();
/// assert!(sink.artifact_path(&de)?.ends_with("country/DE.txt"));
/// # Ok::<(), groundcrew_actors::SinkError>(())
/// ```
///
/// The whole tree must be on one filesystem, as one `syncfs` on the root
/// makes a batch durable, and only one `FsSink` may use a root at a time, as
/// opening it removes every temp file found there.
#[derive(Debug)]
pub struct FsSink {
    root: PathBuf,
    extension: Option<String>,
    temp_seq: AtomicU64,
}

/// Marks temp files; ids cannot contain `.`, so no artifact has it.
const TEMP_MARK: &str = ".tmp-";

impl FsSink {
    /// Opens (creating if needed) the artifact root and removes temp files a
    /// crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| SinkError::io(SinkOp::CreateDir, &root, e))?;
        let sink = FsSink {
            root,
            extension: None,
            temp_seq: AtomicU64::new(0),
        };
        sink.clean_stale_temps()?;
        Ok(sink)
    }

    /// Gives every artifact file the extension `ext` (without the dot).
    ///
    /// # Panics
    /// If `ext` is empty or holds anything but ASCII letters and digits: an
    /// extension is configuration, and one with `/` or `.` could build paths
    /// outside the root.
    pub fn with_extension(mut self, ext: impl Into<String>) -> Self {
        let ext = ext.into();
        assert!(
            !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric()),
            "invalid artifact extension {ext:?}: must be ASCII letters and digits"
        );
        self.extension = Some(ext);
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file an entity's artifact lives in.
    ///
    /// Built from the entity's class and id only, each of which must be one
    /// plain path component; the grammar of [`EntityName`] already ensures
    /// that, and this checks it again so that no future change of the
    /// grammar can make the sink write outside its root.
    pub fn artifact_path(&self, entity: &EntityName) -> Result<PathBuf, SinkError> {
        let file = match &self.extension {
            Some(ext) => format!("{}.{ext}", entity.id()),
            None => entity.id().to_owned(),
        };
        let path = self.root.join(entity.class()).join(&file);
        let plain = |part: &str| {
            let mut components = Path::new(part).components();
            matches!(components.next(), Some(Component::Normal(c)) if c == part)
                && components.next().is_none()
                && !part.starts_with('.')
        };
        if plain(entity.class()) && plain(&file) && path.starts_with(&self.root) {
            Ok(path)
        } else {
            Err(SinkError::OutsideRoot {
                entity: entity.clone(),
                path,
                root: self.root.clone(),
            })
        }
    }

    fn temp_path(&self, path: &Path) -> PathBuf {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        path.with_file_name(format!(".{name}{TEMP_MARK}{}-{seq}", std::process::id()))
    }

    /// Creates the class directory and writes `content` to a fresh temp file
    /// in it. Returns the temp path and whether the class directory is new
    /// (then the root needs a sync for the directory entry to last).
    /// `present` holds the directories this batch already found or made,
    /// so that a batch looks each class directory up once, not once per
    /// artifact.
    fn write_temp(
        &self,
        path: &Path,
        content: &[u8],
        present: &mut BTreeSet<PathBuf>,
    ) -> Result<(PathBuf, bool), SinkError> {
        let dir = parent(path);
        let mut created = false;
        if !present.contains(dir) {
            created = !dir.is_dir();
            if created {
                fs::create_dir_all(dir).map_err(|e| SinkError::io(SinkOp::CreateDir, dir, e))?;
            }
            present.insert(dir.to_owned());
        }
        let temp = self.temp_path(path);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut f| f.write_all(content));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(SinkError::io(SinkOp::WriteTemp, temp, e));
        }
        Ok((temp, created))
    }

    /// Makes every written temp file durable with one call.
    fn sync_all(&self, temps: &[PathBuf]) -> Result<(), SinkError> {
        #[cfg(target_os = "linux")]
        {
            // One syncfs costs about one journal commit however many files
            // are dirty, where an fdatasync per file costs one commit each.
            let _ = temps;
            let root =
                File::open(&self.root).map_err(|e| SinkError::io(SinkOp::Sync, &self.root, e))?;
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs only reads the descriptor, which `root` keeps open.
            if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
                return Err(SinkError::io(
                    SinkOp::Sync,
                    &self.root,
                    io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            for temp in temps {
                File::open(temp)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| SinkError::io(SinkOp::Sync, temp, e))?;
            }
            Ok(())
        }
    }

    fn clean_stale_temps(&self) -> Result<(), SinkError> {
        let inspect = |dir: &Path, e| SinkError::io(SinkOp::Inspect, dir, e);
        for class in fs::read_dir(&self.root).map_err(|e| inspect(&self.root, e))? {
            let class = class.map_err(|e| inspect(&self.root, e))?.path();
            if !class.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&class).map_err(|e| inspect(&class, e))? {
                let path = entry.map_err(|e| inspect(&class, e))?.path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if name.starts_with('.') && name.contains(TEMP_MARK) {
                    // No directory sync: a temp file that reappears after a
                    // crash is simply removed again at the next open.
                    fs::remove_file(&path).map_err(|e| SinkError::io(SinkOp::Remove, &path, e))?;
                }
            }
        }
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SinkError::io(SinkOp::SyncDir, dir, e))
}

/// An artifact of a batch on its way through the publication steps.
struct Staged {
    index: usize,
    path: PathBuf,
    temp: PathBuf,
}

impl ArtifactSink for FsSink {
    fn publish(&self, batch: &[Artifact]) -> Vec<Result<(), SinkError>> {
        let mut results: Vec<Result<(), SinkError>> = vec![Ok(()); batch.len()];
        let mut staged = Vec::with_capacity(batch.len());
        let mut dirs = BTreeSet::new();
        let mut present = BTreeSet::new();
        for (index, artifact) in batch.iter().enumerate() {
            let written = self.artifact_path(&artifact.entity).and_then(|path| {
                let temp = self.write_temp(&path, &artifact.content, &mut present)?;
                Ok((temp, path))
            });
            match written {
                Ok(((temp, created_dir), path)) => {
                    if created_dir {
                        dirs.insert(self.root.clone());
                    }
                    staged.push(Staged { index, path, temp });
                }
                Err(e) => results[index] = Err(e),
            }
        }
        if staged.is_empty() {
            return results;
        }

        // Sync before rename: a rename that reaches the disk before the data
        // would leave an empty or partial file after a crash.
        let temps: Vec<PathBuf> = staged.iter().map(|s| s.temp.clone()).collect();
        if let Err(e) = self.sync_all(&temps) {
            for s in &staged {
                let _ = fs::remove_file(&s.temp);
                results[s.index] = Err(e.clone());
            }
            return results;
        }

        staged.retain(|s| match fs::rename(&s.temp, &s.path) {
            Ok(()) => {
                let dir = parent(&s.path);
                if !dirs.contains(dir) {
                    dirs.insert(dir.to_owned());
                }
                true
            }
            Err(e) => {
                let _ = fs::remove_file(&s.temp);
                results[s.index] = Err(SinkError::io(SinkOp::Rename, &s.path, e));
                false
            }
        });

        // The rename is durable only once its directory is synced; until
        // then a crash may bring back the old file, so nobody is told yet.
        for dir in &dirs {
            if let Err(e) = sync_dir(dir) {
                for s in staged
                    .iter()
                    .filter(|s| dir == &self.root || parent(&s.path) == dir)
                {
                    results[s.index] = Err(e.clone());
                }
            }
        }
        results
    }

    fn remove(&self, entity: &EntityName) -> Result<bool, SinkError> {
        let path = self.artifact_path(entity)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(parent(&path)).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SinkError::io(SinkOp::Remove, path, e)),
        }
    }

    fn holds(&self, entity: &EntityName, content: &[u8]) -> Result<bool, SinkError> {
        let path = self.artifact_path(entity)?;
        let inspect = |e| SinkError::io(SinkOp::Inspect, path.clone(), e);
        // The length first: a cheap way to tell most changed files apart.
        match fs::metadata(&path) {
            Ok(meta) if !meta.is_file() || meta.len() != content.len() as u64 => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(inspect(e)),
        }
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes == content),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(inspect(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(name: &str) -> EntityName {
        name.parse().unwrap()
    }

    fn artifact(name: &str, content: &str) -> Artifact {
        Artifact {
            entity: entity(name),
            content: content.into(),
            source: None,
        }
    }

    #[test]
    fn publishes_a_batch_into_class_directories() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsSink::open(dir.path()).unwrap().with_extension("txt");
        let results = sink.publish(&[artifact("country:DE", "de"), artifact("asn:1", "one")]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            fs::read_to_string(dir.path().join("country/DE.txt")).unwrap(),
            "de"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("asn/1.txt")).unwrap(),
            "one"
        );
        assert!(sink.holds(&entity("asn:1"), b"one").unwrap());
        assert!(
            !sink.holds(&entity("asn:1"), b"onf").unwrap(),
            "same length, other bytes"
        );
        assert!(!sink.holds(&entity("asn:1"), b"one!").unwrap());
        assert!(!sink.holds(&entity("asn:2"), b"one").unwrap());
    }

    #[test]
    fn publish_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsSink::open(dir.path()).unwrap();
        sink.publish(&[artifact("country:DE", "old")]);
        sink.publish(&[artifact("country:DE", "new")]);
        let names: Vec<_> = fs::read_dir(dir.path().join("country"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["DE"]);
        assert_eq!(
            fs::read_to_string(dir.path().join("country/DE")).unwrap(),
            "new"
        );
    }

    #[test]
    fn one_unwritable_class_fails_only_its_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsSink::open(dir.path()).unwrap();
        // A file where the class directory should be.
        fs::write(dir.path().join("broken"), "").unwrap();
        let results = sink.publish(&[artifact("broken:x", "x"), artifact("country:DE", "de")]);
        let err = results[0].as_ref().unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
        assert!(results[1].is_ok());
        assert_eq!(
            fs::read_to_string(dir.path().join("country/DE")).unwrap(),
            "de"
        );
    }

    #[test]
    fn remove_reports_whether_an_artifact_existed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsSink::open(dir.path()).unwrap();
        sink.publish(&[artifact("country:DE", "de")]);
        assert!(sink.remove(&entity("country:DE")).unwrap());
        assert!(!sink.remove(&entity("country:DE")).unwrap());
        assert!(!dir.path().join("country/DE").exists());
    }

    #[test]
    fn open_removes_temp_files_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("country")).unwrap();
        let stale = dir.path().join("country/.DE.tmp-1-0");
        fs::write(&stale, "partial").unwrap();
        fs::write(dir.path().join("country/DE"), "complete").unwrap();
        FsSink::open(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(dir.path().join("country/DE").exists());
    }

    #[test]
    fn artifact_paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FsSink::open(dir.path()).unwrap();
        let path = sink.artifact_path(&entity("country:DE")).unwrap();
        assert_eq!(path, dir.path().join("country").join("DE"));
    }
}
