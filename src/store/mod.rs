//! Durable backends for the runtime's storage traits.
//!
//! Each backend lives in its own private module and is re-exported here, so
//! the public face is the store type and its open error, not a module tree.
//! Every backend passes the same conformance suite
//! (`tests/store_conformance.rs`).

mod postgres;
mod sqlite;
mod state;

pub use postgres::{valid_node_name, ClusterError, PgQueue, PostgresOpenError, PostgresStore};
pub use sqlite::{check_writable, OpenError, SqliteStore, DEFAULT_MAX_BATCH};
