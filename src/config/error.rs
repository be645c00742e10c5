//! What can go wrong loading the configuration, and where.
//!
//! Every error that concerns a value says where that value came from: a
//! position in the file (`groundcrew.yaml:12:5`), an environment variable
//! (`GROUNDCREW_HTTP__BIND`) or a command-line flag (`--bind`). The HTTP API
//! returns [`ConfigError::location`] and [`ConfigError::key`] as separate
//! fields, so both are kept structured rather than formatted into a string.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use groundcrew_actors::LimitError;

use super::store::StoreParseError;

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A position in the configuration file; line and column are 1-based.
    File {
        /// The file as it was given.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, e.g. `--bind`.
    Flag(&'static str),
    /// The built-in default (nothing set it).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::Env(var) => f.write_str(var),
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// Why a value was refused. Messages name the value, except secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The parser could not read the value as the field's type (the
    /// parser's own message; quoted strings under `tokens` are
    /// redacted).
    #[error("{0}")]
    Type(String),
    /// An environment value that does not parse as the field's type.
    #[error("invalid {expected} {value:?}")]
    Parse {
        /// What the field holds, e.g. `socket address`.
        expected: &'static str,
        /// The value given.
        value: String,
    },
    /// An environment value that does not parse, where the value may hold
    /// secrets (`GROUNDCREW_KINDS`, `GROUNDCREW_FEEDS`): it is not shown.
    #[error("invalid {expected} (value not shown): {reason}")]
    Redacted {
        /// What the variable holds, e.g. `kind list`.
        expected: &'static str,
        /// The parser's message, with the value it quotes hidden.
        reason: String,
    },
    /// A `store` value that is neither sqlite, a database path nor a URL.
    #[error(transparent)]
    Store(#[from] StoreParseError),
    /// A pool limit over the runtime's maximum.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A pool name outside `[a-z][a-z0-9_-]{0,63}`.
    #[error("invalid pool name {0:?}: must match [a-z][a-z0-9_-]{{0,63}}")]
    PoolName(String),
    /// A lease outside 0.3 s to one day.
    #[error("invalid lease {0} s: must be between 0.3 and 86400 seconds")]
    Lease(String),
    /// A node name that is not 1 to 64 letters, digits, `-`, `_` or `.`.
    #[error("invalid node name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    NodeName(String),
    /// A feed name outside `[a-z][a-z0-9_-]{0,63}`.
    #[error("invalid feed name {0:?}: must match [a-z][a-z0-9_-]{{0,63}}")]
    FeedName(String),
    /// Two feeds with the same name.
    #[error("duplicate feed name {name:?} (also at {first})")]
    DuplicateFeedName {
        /// The repeated name.
        name: String,
        /// The key of the first feed with it.
        first: String,
    },
    /// A kind name outside `[a-z][a-z0-9_-]{0,63}`.
    #[error("invalid kind name {0:?}: must match [a-z][a-z0-9_-]{{0,63}}")]
    KindName(String),
    /// A configured kind with the name of a built-in one.
    #[error("kind name {0:?} is taken by a built-in kind")]
    BuiltInKind(String),
    /// Two configured kinds with the same name.
    #[error("duplicate kind name {name:?} (also at {first})")]
    DuplicateKindName {
        /// The repeated name.
        name: String,
        /// The key of the first kind with it.
        first: String,
    },
    /// A kind without a program to run.
    #[error("command must not be empty")]
    EmptyCommand,
    /// A kind naming a pool that `pools` does not have.
    #[error("unknown pool {pool:?}; configured pools: {}", known.join(", "))]
    UnknownPool {
        /// The pool named.
        pool: String,
        /// The pools configured.
        known: Vec<String>,
    },
    /// An environment variable name outside `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("invalid environment variable name {0:?}: must match [A-Za-z_][A-Za-z0-9_]*")]
    EnvName(String),
    /// Two tokens with the same name.
    #[error("duplicate token name {name:?} (also at {first})")]
    DuplicateTokenName {
        /// The repeated name.
        name: String,
        /// The key of the first token with it, e.g. `tokens[0].name`.
        first: String,
    },
    /// Two tokens with the same value; the value itself is never shown.
    #[error("token of {name:?} has the same value as {first}")]
    DuplicateToken {
        /// The name of the later token.
        name: String,
        /// The key of the first token with the value.
        first: String,
    },
    /// A token too short to resist guessing.
    #[error("token of {name:?} is {len} characters long (at least {min})")]
    ShortToken {
        /// The token's name.
        name: String,
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// A non-loopback address while no token is configured.
    #[error(
        "refusing to listen on non-loopback address {0} without configured tokens \
         (the generated admin token is for loopback use only)"
    )]
    NonLoopbackWithoutTokens(SocketAddr),
    /// An artifact extension outside `[a-z0-9]{1,8}`.
    #[error("invalid artifact extension {0:?}: must match [a-z0-9]{{1,8}} (or be empty for none)")]
    Extension(String),
    /// `artifacts.sink: postgres` with a store that is not PostgreSQL.
    #[error("artifact sink postgres needs a PostgreSQL store (store: postgres://…); this store is SQLite")]
    SinkNeedsPostgres,
    /// A pool's `cluster_limit` with a store that is not PostgreSQL.
    #[error("cluster_limit needs a PostgreSQL store (store: postgres://…); on one node the pool's limit is its limit")]
    ClusterLimitNeedsPostgres,
    /// A log level directive that is not `level` or `target=level`, comma
    /// separated, with level one of trace, debug, info, warn, error, off.
    #[error(
        "invalid log level {0:?}: expected trace, debug, info, warn, error or off, \
         optionally as comma-separated target=level directives"
    )]
    LogLevel(String),
    /// A value that must be positive (the key names which).
    #[error("must be greater than 0")]
    Zero,
    /// An empty path.
    #[error("path must not be empty")]
    EmptyPath,
    /// A ratio outside `[0, 1]` (as written).
    #[error("ratio {0} must be between 0 and 1")]
    Ratio(String),
}

/// A configuration that could not be loaded.
///
/// Displays as `<origin>: <key>: <problem>`, e.g.
/// `groundcrew.yaml:12:5: pools.background: worker limit 5000 is too large (at most 4096)`;
/// the key is left out when the origin is an environment variable, which
/// already names it: `GROUNDCREW_HTTP__BIND: invalid socket address "x"`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file's extension names no supported format.
    #[error("unsupported config file {}: expected a .yaml, .yml or .toml extension", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid YAML or TOML.
    #[error("{at}: syntax error: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Origin,
        /// The parser's message, without its own position suffix.
        message: String,
    },
    /// A key that the configuration does not have, e.g. a misspelling.
    #[error("{at}: unknown key {key:?}; expected one of {}", expected.join(", "))]
    UnknownKey {
        /// Where the key was given.
        at: Origin,
        /// The full key path, e.g. `http.bnd`.
        key: String,
        /// The keys accepted at that level.
        expected: Vec<String>,
    },
    /// A value that is of the wrong type or fails validation.
    #[error("{}{problem}", Prefix(at, key))]
    Invalid {
        /// Where the value was given.
        at: Origin,
        /// The full key path, e.g. `tokens[1].token`.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// `origin: key: `, or only `VAR: ` when the origin is a variable.
struct Prefix<'a>(&'a Origin, &'a String);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Origin::Env(var) => write!(f, "{var}: "),
            at => write!(f, "{at}: {}: ", self.1),
        }
    }
}

impl ConfigError {
    /// Where in the file the error is: path, line and column (1-based).
    /// `None` for errors from the environment, flags, or without a position.
    pub fn location(&self) -> Option<(PathBuf, usize, usize)> {
        match self.origin()? {
            Origin::File { path, line, column } => Some((path.clone(), *line, *column)),
            _ => None,
        }
    }

    /// The key path the error concerns, e.g. `pools.background`.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Where the offending value came from, when the error concerns one.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::Invalid { at, .. } => Some(at),
            ConfigError::Read { .. } | ConfigError::UnsupportedFormat { .. } => None,
        }
    }
}
