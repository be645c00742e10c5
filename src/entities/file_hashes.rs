//! Hashes of artifact files, remembered by the file's identity, so that an
//! integrity check reads and hashes only the files that changed since the
//! last one.
//!
//! A file's identity is its device, inode, length, mtime and ctime. The
//! writer replaces an artifact by rename (a new inode), and any write,
//! truncation, `touch` or permission change outside it moves the ctime,
//! which no user can set back; so a file whose identity is unchanged has
//! the bytes it had when it was hashed. What this cannot see is damage
//! below the file system (bit rot on the disk): a full re-read, as the
//! first check after start does, is the way to find that.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use groundcrew_actors::content_hash;

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The remembered hashes; one per daemon, shared by every check.
#[derive(Debug, Default)]
pub struct FileHashes {
    known: Mutex<HashMap<PathBuf, (Stamp, String)>>,
    /// Files read and hashed so far.
    reads: AtomicU64,
}

impl FileHashes {
    /// The SHA-256 hex of the file at `path`, from memory when the file is
    /// the one hashed last time.
    pub fn hash(&self, path: &Path) -> io::Result<String> {
        let before = Stamp::of(&std::fs::metadata(path)?);
        if let Some((stamp, hash)) = self.lock().get(path) {
            if *stamp == before {
                return Ok(hash.clone());
            }
        }
        let bytes = std::fs::read(path)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let hash = content_hash(&bytes);
        // Changed while being read: answer, but do not remember.
        if std::fs::metadata(path).map(|m| Stamp::of(&m)).ok() == Some(before) {
            self.lock().insert(path.to_owned(), (before, hash.clone()));
        }
        Ok(hash)
    }

    /// Forgets every file but those in `keep`, so that memory follows the
    /// artifacts that exist.
    pub fn retain(&self, keep: &std::collections::HashSet<PathBuf>) {
        self.lock().retain(|path, _| keep.contains(path));
    }

    /// Files read and hashed since start (the rest came from memory).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Stamp, String)>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_is_hashed_once_and_any_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, "one\n").unwrap();
        let hashes = FileHashes::default();
        let first = hashes.hash(&path).unwrap();
        assert_eq!(first, content_hash(b"one\n"));
        assert_eq!(hashes.hash(&path).unwrap(), first);
        assert_eq!(hashes.reads(), 1, "the second answer came from memory");

        // Same length, rewritten in place, mtime set back: ctime moved.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&path, "two\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(hashes.hash(&path).unwrap(), content_hash(b"two\n"));
        assert_eq!(hashes.reads(), 2);

        // Replaced by rename, as the writer does.
        let tmp = dir.path().join("a.tmp");
        std::fs::write(&tmp, "six\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(hashes.hash(&path).unwrap(), content_hash(b"six\n"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            hashes.hash(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
