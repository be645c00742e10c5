//! The daemon's configuration: one file, environment overrides, flags.
//!
//! Precedence is flags over environment over file over defaults:
//! [`Config::load`] reads the file (YAML or TOML, by extension) over the
//! defaults, applies `GROUNDCREW_*` variables over that and validates the
//! result; [`Config::apply_overrides`] then applies the command-line flags
//! and [`Config::validate_bind`] checks them.
//!
//! # The file
//! `config/groundcrew.example.yaml` documents every key with its default.
//! Unknown keys are errors, so a misspelling is reported with its line
//! rather than silently ignored. A `pools` map is merged over the default
//! `{background: 2}`: every kind without an explicit pool runs in
//! [`DEFAULT_POOL`](groundcrew_actors::DEFAULT_POOL), so it always exists.
//!
//! # The environment
//! `GROUNDCREW_` followed by the key path in capitals, with `__` between
//! levels: `GROUNDCREW_HTTP__BIND=0.0.0.0:9000`,
//! `GROUNDCREW_POOLS__BACKGROUND=4`, `GROUNDCREW_STORE=postgres://...`.
//! Optional values take `none` (or an empty value) for "unset";
//! `GROUNDCREW_TOKENS`, `GROUNDCREW_FEEDS` and `GROUNDCREW_KINDS` take their
//! lists as YAML/JSON flow sequences.
//! Any other `GROUNDCREW_` variable is an error naming it, except
//! `GROUNDCREW_TOKEN` and `GROUNDCREW_URL`, which belong to the CLI client.
//!
//! # Errors
//! Every [`ConfigError`] about a value names its key and where the value
//! came from: `file:line:column`, the variable, or the flag.
//!
//! # Derived paths
//! The SQLite file and the artifact directory default to places inside
//! `data_dir`. They are kept unresolved and resolved on demand
//! ([`Config::store_location`], [`Config::artifacts_dir`]), so that a
//! `--data-dir` flag moves them too unless they were set explicitly.

mod de;
mod env;
mod error;
mod load;
mod locate;
mod pool;
mod redact;
mod store;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use groundcrew_actors::Retention;
use serde::Deserialize;

use crate::auth::Token;
use crate::entities::{FeedGuard, FeedOrigin, FeedSource};
use crate::feed::FeedFormat;

pub use error::{ConfigError, Origin, Problem};
pub use pool::PoolConfig;
pub use store::{StoreConfig, StoreLocation, StoreParseError, DEFAULT_SQLITE_FILE};

use load::Source;
use locate::KeyPath;

/// The daemon's configuration. See the [module docs](self) for where each
/// value comes from.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the daemon keeps its state; default `./groundcrew-data`.
    pub data_dir: PathBuf,
    /// The admin HTTP listener.
    pub http: HttpConfig,
    /// The task journal's database; default `sqlite` in `data_dir`.
    pub store: StoreConfig,
    /// Worker limit and cancel grace per pool; merged over
    /// `{background: 2}`.
    #[serde(deserialize_with = "de::pools")]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Admin API tokens; when empty, a generated token in the data
    /// directory is used and the listener must stay on loopback.
    pub tokens: Vec<Token>,
    /// How much finished history to keep.
    pub retention: RetentionConfig,
    /// Where artifacts are written.
    pub artifacts: ArtifactsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Feeds artifacts are built from; absent: the built-in sample feed,
    /// an empty list: none.
    pub feeds: Option<Vec<FeedConfig>>,
    /// How often feed files are checked for changes, in milliseconds;
    /// default 1000.
    pub feed_poll_ms: u64,
    /// Kinds that run an external command; default none.
    pub kinds: Vec<KindConfig>,
    /// How a command's processes are kept from outliving its task;
    /// default auto.
    pub kinds_isolation: KindsIsolation,
    /// Limits of the built-in kinds.
    pub builtin_kinds: BuiltinKindsConfig,
    /// This daemon's name among the nodes sharing a PostgreSQL store;
    /// default the host name. Unused on SQLite.
    pub node: Option<String>,
    /// How long a node's claim of a task holds without a heartbeat, in
    /// seconds (PostgreSQL only); default 30. A node that dies or freezes
    /// loses its tasks to the other nodes this long after its last
    /// heartbeat.
    pub lease_s: f64,
    /// Where each value came from, for error positions.
    #[serde(skip)]
    provenance: Provenance,
}

/// The admin HTTP listener.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; default `127.0.0.1:7878`.
    pub bind: SocketAddr,
    /// Whether `/metrics` needs a token too; default false.
    pub metrics_require_token: bool,
    /// Largest request body accepted; default 64 KiB.
    pub max_body_bytes: usize,
}

/// Retention of finished tasks.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished tasks older than this are pruned; default 7 days, `none`
    /// keeps them whatever their age.
    #[serde(deserialize_with = "de::optional_count")]
    pub max_age_s: Option<u64>,
    /// At most this many finished tasks are kept; default 10 000, `none`
    /// for no limit.
    #[serde(deserialize_with = "de::optional_count")]
    pub max_count: Option<u64>,
    /// Seconds between prune passes; default 300, must be positive.
    pub prune_interval_s: u64,
}

/// Where artifacts go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// The artifact directory; `None` is `<data_dir>/artifacts`, a relative
    /// path is relative to `data_dir`.
    pub dir: Option<PathBuf>,
    /// File extension of artifacts, without the dot; default `txt`, empty
    /// (or null) for none.
    #[serde(deserialize_with = "de::optional_extension")]
    pub extension: Option<String>,
    /// Where artifacts are published: files under `dir` (the default), or
    /// table `groundcrew.artifacts` so that every node of a cluster serves
    /// the same artifacts (only with a PostgreSQL store).
    pub sink: ArtifactSinkKind,
}

/// The artifact sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactSinkKind {
    /// Files under the artifact directory.
    #[default]
    File,
    /// Table `groundcrew.artifacts` in the PostgreSQL store.
    Postgres,
}

impl FromStr for ArtifactSinkKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "file" => Ok(ArtifactSinkKind::File),
            "postgres" => Ok(ArtifactSinkKind::Postgres),
            _ => Err(()),
        }
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Human-readable or JSON lines; default pretty.
    pub format: LogFormat,
    /// A tracing filter directive: `info`, or `warn,groundcrew=debug`.
    pub level: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for a log collector.
    Json,
}

/// How the processes a command kind starts are kept from outliving its
/// task (see [`crate::kinds`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindsIsolation {
    /// A cgroup when a writable cgroup2 hierarchy is found, else a
    /// subreaper.
    #[default]
    Auto,
    /// A cgroup v2 group per task run; the daemon refuses to start when
    /// none can be created.
    Cgroup,
    /// The daemon is the child subreaper of its commands and kills the
    /// orphans of a task by their `GROUNDCREW_TASK_ID`.
    Subreaper,
}

/// Graceful shutdown on SIGTERM.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long running tasks may take to finish; default 30 s.
    pub drain_timeout_s: u64,
    /// After the drain timeout, how long cancelled tasks get to stop;
    /// default 5 s.
    pub cancel_grace_s: u64,
}

/// One feed file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Its name in the API (`POST /api/v1/feeds/{name}/updated`).
    pub name: String,
    /// The file; a relative path is relative to `data_dir`.
    pub path: PathBuf,
    /// `ip2asn` (TSV as published by iptoasn) or `csv` (`prefix,country,asn`).
    pub format: FeedFormat,
    /// Largest share of bad lines a reading may have; default 0.01.
    #[serde(default)]
    pub max_bad_line_ratio: Option<f64>,
    /// Largest share of the feed's entities a reading may drop; default 0.5.
    #[serde(default)]
    pub max_entity_drop_ratio: Option<f64>,
}

/// Limits of the built-in kinds, `artifact` and `test`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinKindsConfig {
    /// The kind that refreshes and rebuilds entity artifacts.
    pub artifact: BuiltinKindConfig,
    /// The operators' `test` kind.
    pub test: BuiltinKindConfig,
}

/// One built-in kind's limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinKindConfig {
    /// How long one execution may run before it is stopped and its attempt
    /// fails; default `none` (no limit).
    #[serde(deserialize_with = "de::optional_count")]
    pub timeout_s: Option<u64>,
}

impl BuiltinKindConfig {
    /// The timeout as the runtime takes it.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_s.map(Duration::from_secs)
    }
}

/// A task kind that runs an external command (see [`crate::kinds`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    /// The kind's name, `[a-z][a-z0-9_-]{0,63}`, not a built-in one.
    pub name: String,
    /// The program and its first arguments; the target is appended.
    pub command: Vec<String>,
    /// The pool its tasks run in; default `background`.
    #[serde(default = "default_kind_pool")]
    pub pool: String,
    /// Seconds an execution may take before its process group is killed;
    /// default 600.
    #[serde(default = "default_kind_timeout_s")]
    pub timeout_s: u64,
    /// Executions at most, retries included; default 3.
    #[serde(default = "default_kind_max_attempts")]
    pub max_attempts: u32,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_kind_pool() -> String {
    groundcrew_actors::DEFAULT_POOL.to_owned()
}

fn default_kind_timeout_s() -> u64 {
    600
}

fn default_kind_max_attempts() -> u32 {
    groundcrew_actors::KindOptions::default().max_attempts
}

/// Command-line flags that override the file and the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--bind`.
    pub bind: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// Where values came from: the file (kept to find a key's line on demand),
/// the variables and the flags that set keys.
///
/// It takes no part in equality, so that two configurations with the same
/// values are equal wherever they came from; and its `Debug` shows neither
/// the file's text nor variable values, which may hold secrets.
#[derive(Clone, Default)]
struct Provenance {
    source: Option<Arc<Source>>,
    env: BTreeMap<String, String>,
    flags: BTreeMap<String, &'static str>,
}

impl PartialEq for Provenance {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provenance")
            .field("file", &self.source.as_ref().map(|s| s.path()))
            .field("env", &self.env.values().collect::<Vec<_>>())
            .field("flags", &self.flags.values().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./groundcrew-data"),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            pools: de::default_pools(),
            tokens: Vec::new(),
            retention: RetentionConfig::default(),
            artifacts: ArtifactsConfig::default(),
            log: LogConfig::default(),
            shutdown: ShutdownConfig::default(),
            feeds: None,
            feed_poll_ms: 1000,
            kinds: Vec::new(),
            kinds_isolation: KindsIsolation::Auto,
            builtin_kinds: BuiltinKindsConfig::default(),
            node: None,
            lease_s: 30.0,
            provenance: Provenance::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 7878)),
            metrics_require_token: false,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_s: Some(7 * 24 * 3600),
            max_count: Some(10_000),
            prune_interval_s: 300,
        }
    }
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        ArtifactsConfig {
            dir: None,
            extension: Some("txt".to_owned()),
            sink: ArtifactSinkKind::File,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_s: 30,
            cancel_grace_s: 5,
        }
    }
}

impl FromStr for KindsIsolation {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "auto" => Ok(KindsIsolation::Auto),
            "cgroup" => Ok(KindsIsolation::Cgroup),
            "subreaper" => Ok(KindsIsolation::Subreaper),
            _ => Err(()),
        }
    }
}

impl FromStr for LogFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

impl Config {
    /// Reads `file` (defaults when `None`), applies `GROUNDCREW_*` variables
    /// from `env` and validates the result. `main` passes
    /// `std::env::vars()`; tests pass a map.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => load::from_file(path)?,
            None => Config::default(),
        };
        env::apply(&mut config, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies command-line flags. Paths derived from `data_dir` follow a
    /// new data directory unless they were set explicitly. Call
    /// [`Config::validate_bind`] afterwards.
    pub fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(bind) = o.bind {
            self.http.bind = bind;
            self.provenance.flags.insert("http.bind".into(), "--bind");
        }
        if let Some(dir) = &o.data_dir {
            self.data_dir = dir.clone();
            self.provenance
                .flags
                .insert("data_dir".into(), "--data-dir");
        }
    }

    /// Refuses a non-loopback `http.bind` while no token is configured:
    /// the token generated into the data directory is meant for a local
    /// operator, not for a listener others can reach.
    pub fn validate_bind(&self) -> Result<(), ConfigError> {
        let bind = self.http.bind;
        if self.tokens.is_empty() && !bind.ip().is_loopback() {
            return Err(self.refuse(
                KeyPath::parse("http.bind"),
                Problem::NonLoopbackWithoutTokens(bind),
            ));
        }
        Ok(())
    }

    /// Each pool and its worker limit, by name.
    pub fn pool_limits(&self) -> impl Iterator<Item = (&str, usize)> {
        self.pools.iter().map(|(name, p)| (name.as_str(), p.limit))
    }

    /// The retention limits in the runtime's terms.
    pub fn retention(&self) -> Retention {
        Retention {
            max_age_s: self.retention.max_age_s,
            max_count: self.retention.max_count,
        }
    }

    /// The store, with a default or relative SQLite path resolved against
    /// `data_dir`.
    pub fn store_location(&self) -> StoreLocation {
        self.store.locate(&self.data_dir)
    }

    /// The artifact directory, resolved against `data_dir`.
    pub fn artifacts_dir(&self) -> PathBuf {
        match &self.artifacts.dir {
            Some(dir) => self.data_dir.join(dir),
            None => self.data_dir.join("artifacts"),
        }
    }

    /// The feeds to read, with relative paths resolved against `data_dir`.
    pub fn feed_sources(&self) -> Vec<FeedSource> {
        match &self.feeds {
            None => vec![FeedSource::sample()],
            Some(feeds) => feeds
                .iter()
                .map(|f| FeedSource {
                    name: f.name.clone(),
                    origin: FeedOrigin::File(self.data_dir.join(&f.path)),
                    format: f.format,
                    guard: {
                        let default = FeedGuard::default();
                        FeedGuard {
                            max_bad_line_ratio: f
                                .max_bad_line_ratio
                                .unwrap_or(default.max_bad_line_ratio),
                            max_entity_drop_ratio: f
                                .max_entity_drop_ratio
                                .unwrap_or(default.max_entity_drop_ratio),
                        }
                    },
                })
                .collect(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err((key, problem)) = validate::check(self) {
            return Err(self.refuse(key, problem));
        }
        self.validate_bind()
    }

    /// An error about `key`, placed where its value came from: the last
    /// flag, variable or file line that set it.
    fn refuse(&self, key: KeyPath, problem: Problem) -> ConfigError {
        ConfigError::Invalid {
            at: self.origin_of(&key),
            key: key.to_string(),
            problem,
        }
    }

    fn origin_of(&self, key: &KeyPath) -> Origin {
        let p = &self.provenance;
        if let Some(flag) = key.find_set_by(&p.flags) {
            return Origin::Flag(flag);
        }
        if let Some(var) = key.find_set_by(&p.env) {
            return Origin::Env(var.clone());
        }
        p.source
            .as_ref()
            .and_then(|source| source.origin_of(key))
            .unwrap_or(Origin::Default)
    }
}

#[cfg(test)]
mod example_tests;
#[cfg(test)]
mod tests;
