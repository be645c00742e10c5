//! The `store` setting: which database holds the task journal.
//!
//! It is one string, so that a single environment variable
//! (`GROUNDCREW_STORE`) can switch backends: `sqlite` for the default file
//! in the data directory, a path ending `.db`, `.sqlite` or `.sqlite3`, or a
//! `postgres://` URL. A URL usually carries a password, so it is kept as a
//! [`Secret`] and never printed, not even in a parse error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::auth::Secret;

/// The `store` setting as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreConfig {
    /// A SQLite file; `None` is `<data_dir>/groundcrew.db`, a relative path
    /// is relative to the data directory.
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL connection URL.
    Postgres(Secret),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite(None)
    }
}

/// The store resolved against the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(Secret),
}

/// File name of the default SQLite database inside the data directory.
pub const DEFAULT_SQLITE_FILE: &str = "groundcrew.db";

impl StoreConfig {
    /// Where the store is once `data_dir` is known.
    pub fn locate(&self, data_dir: &Path) -> StoreLocation {
        match self {
            StoreConfig::Sqlite(None) => StoreLocation::Sqlite(data_dir.join(DEFAULT_SQLITE_FILE)),
            // `join` keeps an absolute path as it is.
            StoreConfig::Sqlite(Some(path)) => StoreLocation::Sqlite(data_dir.join(path)),
            StoreConfig::Postgres(url) => StoreLocation::Postgres(url.clone()),
        }
    }
}

/// A `store` value that names no backend.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid store {shown}: expected \"sqlite\", a path ending in .db, .sqlite or .sqlite3, \
     or a postgres:// url"
)]
pub struct StoreParseError {
    /// The value as it may be shown: anything that looks like a URL is cut
    /// to its scheme, since it may carry a password.
    shown: String,
}

impl StoreParseError {
    fn new(value: &str) -> Self {
        let shown = match value.split_once("://") {
            Some((scheme, _)) => format!("\"{scheme}://***\""),
            None if value.contains('@') => "\"***\"".to_owned(),
            None => format!("{value:?}"),
        };
        StoreParseError { shown }
    }
}

impl FromStr for StoreConfig {
    type Err = StoreParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sqlite" {
            return Ok(StoreConfig::Sqlite(None));
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            return if matches!(scheme, "postgres" | "postgresql") && !rest.is_empty() {
                Ok(StoreConfig::Postgres(Secret::new(s)))
            } else {
                Err(StoreParseError::new(s))
            };
        }
        let path = Path::new(s);
        match path.extension().and_then(|e| e.to_str()) {
            Some("db" | "sqlite" | "sqlite3") => Ok(StoreConfig::Sqlite(Some(path.to_owned()))),
            _ => Err(StoreParseError::new(s)),
        }
    }
}

impl TryFrom<String> for StoreConfig {
    type Error = StoreParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Sqlite(None) => f.write_str("sqlite"),
            StoreConfig::Sqlite(Some(path)) => write!(f, "{}", path.display()),
            StoreConfig::Postgres(_) => f.write_str("postgres://***"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_strings_select_the_backend() {
        let dir = Path::new("/var/lib/groundcrew");
        let at = |s: &str| s.parse::<StoreConfig>().unwrap().locate(dir);
        assert_eq!(
            at("sqlite"),
            StoreLocation::Sqlite(dir.join("groundcrew.db"))
        );
        assert_eq!(
            at("jobs.sqlite3"),
            StoreLocation::Sqlite(dir.join("jobs.sqlite3"))
        );
        assert_eq!(at("/srv/x.db"), StoreLocation::Sqlite("/srv/x.db".into()));
        assert!(matches!(
            at("postgres://u:p@h/db"),
            StoreLocation::Postgres(_)
        ));
        assert!("mysql.txt".parse::<StoreConfig>().is_err());
    }

    #[test]
    fn store_parse_errors_hide_urls() {
        let e = "postgress://admin:hunter2@db/x"
            .parse::<StoreConfig>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("postgress://***"), "{e}");
        let e = "pg.example:admin:hunter2@db"
            .parse::<StoreConfig>()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }
}
