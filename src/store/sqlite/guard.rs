//! What keeps the store honest about its file: a write check of the
//! directory at open, the file's identity checked before every commit, and
//! the id reservation file that outlives the database.
//!
//! # The file nobody will read
//! SQLite keeps writing to a file that was deleted or replaced under it
//! (`rm groundcrew.db*` while the daemon runs): commits succeed into an
//! unlinked inode, and the next start finds nothing. So the writer compares
//! the path's device and inode (of the database and its WAL) with the ones
//! it opened before every commit, and refuses the batch when they differ.
//!
//! # Ids never repeat
//! Task ids come from the database, so a new database would hand out 1
//! again. Beside it, `<name>.ids` (outside the `<name>.db*` glob) records
//! how far ids are reserved: before a commit stores an id above the
//! reservation, the writer extends it by [`ID_BLOCK`] (written to a temp
//! file, synced, renamed). A new database starts above the reservation, so
//! no id is handed out twice even after the database was lost. An existing
//! database keeps its own sequence (restoring an older copy of it is not
//! detected).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many ids one reservation covers: one small synced write per this
/// many tasks.
pub(super) const ID_BLOCK: u64 = 1024;

/// Device and inode: what a path refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    pub(super) fn of(path: &Path) -> io::Result<Self> {
        let meta = fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// The files the writer opened, to compare against before each commit.
#[derive(Clone, Debug)]
pub(super) struct OpenedFiles {
    db: (PathBuf, FileIdentity),
    wal: Option<(PathBuf, FileIdentity)>,
}

impl OpenedFiles {
    /// Records what `db` and its WAL are now.
    pub(super) fn record(db: &Path) -> io::Result<Self> {
        let wal_path = wal_of(db);
        let wal = FileIdentity::of(&wal_path).ok().map(|id| (wal_path, id));
        Ok(Self {
            db: (db.to_owned(), FileIdentity::of(db)?),
            wal,
        })
    }

    /// `Err` with what happened when a file is gone or another one now.
    pub(super) fn check(&self) -> Result<(), String> {
        let files = std::iter::once(&self.db).chain(self.wal.as_ref());
        for (path, opened) in files {
            match FileIdentity::of(path) {
                Ok(now) if now == *opened => {}
                Ok(_) => {
                    return Err(format!(
                        "task store file {} was replaced by another file while the daemon ran; \
                         refusing writes (restart to open the new file)",
                        path.display()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "task store file {} is gone ({e}); refusing writes that no restart \
                         would read (restart to start a new store; task ids continue)",
                        path.display()
                    ))
                }
            }
        }
        Ok(())
    }
}

fn wal_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Creates, syncs and removes a probe file in `dir`: the directory takes
/// writes (not read-only, not full, ours to write).
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".groundcrew-write-check-{}", std::process::id()));
    let result = File::create(&probe).and_then(|mut f| {
        f.write_all(b"groundcrew")?;
        f.sync_all()
    });
    let _ = fs::remove_file(&probe);
    result
}

/// The id reservation file of a database.
#[derive(Debug)]
pub(super) struct IdReservation {
    path: PathBuf,
    /// Every id up to this one may have been handed out.
    reserved: u64,
}

impl IdReservation {
    /// `<dir>/<stem>.ids` beside the database `db`.
    pub(super) fn path_for(db: &Path) -> PathBuf {
        db.with_extension("ids")
    }

    /// Reads the reservation (0 when there is no file yet).
    pub(super) fn load(db: &Path) -> io::Result<Self> {
        let path = Self::path_for(db);
        let reserved = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected a task id, found {:?}: {e}", text.trim()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self { path, reserved })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Makes sure every id up to `id` is covered, reserving a block more
    /// when it is not; durable before it returns.
    pub(super) fn cover(&mut self, id: u64) -> io::Result<()> {
        if id <= self.reserved {
            return Ok(());
        }
        let upto = id.saturating_add(ID_BLOCK);
        let temp = self.path.with_extension("ids.tmp");
        let mut f = File::create(&temp)?;
        writeln!(f, "{upto}")?;
        f.sync_all()?;
        fs::rename(&temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)?.sync_all()?;
        }
        self.reserved = upto;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_in_blocks_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("groundcrew.db");
        let mut ids = IdReservation::load(&db).unwrap();
        assert_eq!(ids.reserved(), 0);
        ids.cover(1).unwrap();
        assert_eq!(ids.reserved(), 1 + ID_BLOCK);
        ids.cover(ID_BLOCK).unwrap();
        assert_eq!(ids.reserved(), 1 + ID_BLOCK, "covered already");
        assert_eq!(IdReservation::load(&db).unwrap().reserved(), 1 + ID_BLOCK);
        assert_eq!(ids.path(), dir.path().join("groundcrew.ids"));
    }

    #[test]
    fn a_deleted_or_replaced_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        fs::write(&db, b"x").unwrap();
        let opened = OpenedFiles::record(&db).unwrap();
        assert_eq!(opened.check(), Ok(()));
        let other = dir.path().join("other.db");
        fs::write(&other, b"y").unwrap();
        fs::rename(&other, &db).unwrap();
        assert!(opened.check().unwrap_err().contains("replaced"));
        fs::remove_file(&db).unwrap();
        assert!(opened.check().unwrap_err().contains("is gone"));
    }
}
