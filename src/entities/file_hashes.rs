//! Hashes of artifact files, remembered by the file's identity, so that an
//! integrity check reads and hashes only the files that changed since the
//! last one.
//!
//! A file's identity is its device, inode, length, mtime and ctime. The
//! writer replaces an artifact by rename (a new inode), and any write,
//! truncation, `touch` or permission change outside it moves the ctime,
//! which no user can set back; so a file whose identity is unchanged has
//! the bytes it had when it was hashed. What this cannot see is damage
//! below the file system (bit rot on the disk): a full re-read, as every
//! start does (`Feeds::prehash`, beside reading the feeds), is the way to
//! find that.
//!
//! A check is one [`Pass`]: it holds the memory for its whole length, so
//! that checks asked for at once run one after the other and the later
//! ones find the files the first one read already hashed (at start-up the
//! repair check and the first API listing would otherwise both read every
//! file). A pass looks files up relative to their directory's descriptor,
//! so that a stat walks one path component rather than the whole path, and
//! hashes a new file from the descriptor it stamped.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use groundcrew_actors::digest_hex;
use sha2::{Digest, Sha256};

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
    fn of(st: &libc::stat) -> Self {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            len: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn is_file(st: &libc::stat) -> bool {
        st.st_mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// A remembered file: its stamp, its SHA-256, and the pass that last saw it.
#[derive(Debug)]
struct Known {
    stamp: Stamp,
    digest: [u8; 32],
    seen: u64,
}

/// The remembered hashes; one per daemon, shared by every check.
#[derive(Debug, Default)]
pub struct FileHashes {
    /// By the path's bytes (a `PathBuf` key hashes and compares component
    /// by component, several times slower).
    known: Mutex<HashMap<Box<[u8]>, Known>>,
    /// Passes begun so far.
    passes: AtomicU64,
    /// Files read and hashed so far.
    reads: AtomicU64,
}

impl FileHashes {
    /// The SHA-256 hex of the file at `path`, from memory when the file is
    /// the one hashed last time.
    pub fn hash(&self, path: &Path) -> io::Result<String> {
        let mut pass = self.pass();
        let hash = pass.hash(path);
        // One file is not a whole check: forget nothing.
        pass.sweep = false;
        hash
    }

    /// Begins a check; waits for one under way to end. Files the pass does
    /// not hash are forgotten when it ends, so that memory follows the
    /// artifacts that exist.
    pub fn pass(&self) -> Pass<'_> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Pass {
            epoch: self.passes.fetch_add(1, Ordering::Relaxed) + 1,
            known,
            reads: &self.reads,
            dirs: HashMap::new(),
            sweep: true,
        }
    }

    /// Files read and hashed since start (the rest came from memory).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// One check over the artifact files; see [`FileHashes::pass`].
#[derive(Debug)]
pub struct Pass<'a> {
    epoch: u64,
    known: MutexGuard<'a, HashMap<Box<[u8]>, Known>>,
    reads: &'a AtomicU64,
    /// Open directories by path; the error of one that cannot be opened.
    dirs: HashMap<PathBuf, Result<File, io::ErrorKind>>,
    sweep: bool,
}

impl Pass<'_> {
    /// The SHA-256 hex of the file at `path`, from memory when the file is
    /// the one hashed last time.
    pub fn hash(&mut self, path: &Path) -> io::Result<String> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let dir: RawFd = match self.dirs.get(dir) {
            Some(open) => open.as_ref().map(AsRawFd::as_raw_fd).map_err(|k| *k),
            None => {
                let open = File::open(dir).map_err(|e| e.kind());
                let fd = open.as_ref().map(AsRawFd::as_raw_fd).map_err(|k| *k);
                self.dirs.insert(dir.to_owned(), open);
                fd
            }
        }
        .map_err(io::Error::from)?;
        let name = CString::new(name.as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let key = path.as_os_str().as_bytes();
        let before = stat_at(dir, &name)?;
        if let Some(known) = self.known.get_mut(key) {
            if known.stamp == before {
                known.seen = self.epoch;
                return Ok(digest_hex(&known.digest));
            }
        }
        let (digest, stamp) = read_and_hash(dir, &name)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        // Changed while being read: answer, but do not remember.
        if stamp == Some(before) {
            self.known.insert(
                key.into(),
                Known {
                    stamp: before,
                    digest,
                    seen: self.epoch,
                },
            );
        } else {
            self.known.remove(key);
        }
        Ok(digest_hex(&digest))
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.sweep {
            let epoch = self.epoch;
            self.known.retain(|_, k| k.seen == epoch);
        }
    }
}

/// `fstatat(dir, name)`, following symlinks as `std::fs::metadata` does.
fn stat_at(dir: RawFd, name: &CString) -> io::Result<Stamp> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated, `st` is written by the call on
    // success and read only then.
    let st = unsafe {
        if libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        st.assume_init()
    };
    Ok(Stamp::of(&st))
}

fn fstat(file: &File) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: as in `stat_at`; `file` keeps its descriptor open.
    unsafe {
        if libc::fstat(file.as_raw_fd(), st.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.assume_init())
    }
}

/// Reads the file `name` in `dir` and hashes it; with the stamp of the
/// inode read, if it was the same before and after reading (`None` if it
/// changed meanwhile).
fn read_and_hash(dir: RawFd, name: &CString) -> io::Result<([u8; 32], Option<Stamp>)> {
    // SAFETY: `name` is NUL-terminated; a descriptor returned is ours.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let st = fstat(&file)?;
    if !Stamp::is_file(&st) {
        return Err(io::Error::other("not a regular file"));
    }
    let before = Stamp::of(&st);
    let mut bytes = Vec::with_capacity(usize::try_from(before.len).unwrap_or(0) + 1);
    file.read_to_end(&mut bytes)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let after = fstat(&file).map(|st| Stamp::of(&st)).ok();
    Ok((digest, (after == Some(before)).then_some(before)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundcrew_actors::content_hash;

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
        assert_eq!(
            hashes.hash(&dir.path().join("gone/a")).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a missing directory is a missing file"
        );
    }

    #[test]
    fn a_pass_forgets_the_files_it_did_not_see() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let hashes = FileHashes::default();
        {
            let mut pass = hashes.pass();
            pass.hash(&a).unwrap();
            pass.hash(&b).unwrap();
        }
        {
            let mut pass = hashes.pass();
            assert_eq!(pass.hash(&a).unwrap(), content_hash(b"a"));
        }
        assert_eq!(hashes.reads(), 2);
        assert_eq!(hashes.hash(&b).unwrap(), content_hash(b"b"));
        assert_eq!(hashes.reads(), 3, "b was forgotten by the second pass");
        assert_eq!(hashes.hash(&a).unwrap(), content_hash(b"a"));
        assert_eq!(hashes.reads(), 3, "a single hash forgets nothing");
    }
}
