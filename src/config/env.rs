//! `GROUNDCREW_*` environment overrides.
//!
//! `GROUNDCREW_HTTP__BIND` sets `http.bind`: the prefix is dropped, `__`
//! separates levels and names are lowercased. Each value is parsed as its
//! field's type and a bad one is an error naming the variable. A variable
//! that maps to no key is an error too, so that a misspelled override is
//! not silently ignored; `GROUNDCREW_TOKEN` and `GROUNDCREW_URL` are the
//! exceptions, read by the CLI client to reach a running daemon.

use std::path::PathBuf;
use std::str::FromStr;

use crate::auth::Token;

use super::de::parse_optional_count;
use super::{Config, ConfigError, Origin, PoolConfig, Problem};

const PREFIX: &str = "GROUNDCREW_";

/// Variables with the prefix that are not configuration keys.
const CLIENT_VARIABLES: [&str; 2] = ["GROUNDCREW_TOKEN", "GROUNDCREW_URL"];

/// Every key a variable can set; `pools.<name>` stands for any pool.
pub(super) const KEYS: [&str; 27] = [
    "data_dir",
    "feeds",
    "feed_poll_ms",
    "node",
    "lease_s",
    "kinds",
    "kinds_isolation",
    "store",
    "tokens",
    "pools.<name>",
    "pools.<name>.cancel_grace_s",
    "pools.<name>.cluster_limit",
    "builtin_kinds.artifact.timeout_s",
    "builtin_kinds.test.timeout_s",
    "http.bind",
    "http.metrics_require_token",
    "http.max_body_bytes",
    "retention.max_age_s",
    "retention.max_count",
    "retention.prune_interval_s",
    "artifacts.dir",
    "artifacts.extension",
    "artifacts.sink",
    "log.format",
    "log.level",
    "shutdown.drain_timeout_s",
    "shutdown.cancel_grace_s",
];

/// Applies the variables of `env` that start with `GROUNDCREW_`, in name
/// order so that the first error is the same on every run.
pub(super) fn apply(
    config: &mut Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && !CLIENT_VARIABLES.contains(&name.as_str()))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let key = key_of(&var);
        set(config, &key, &value).map_err(|problem| match problem {
            None => ConfigError::UnknownKey {
                at: Origin::Env(var.clone()),
                key: key.clone(),
                expected: KEYS.iter().map(|k| (*k).to_owned()).collect(),
            },
            Some(problem) => ConfigError::Invalid {
                at: Origin::Env(var.clone()),
                key: key.clone(),
                problem,
            },
        })?;
        config.provenance.env.insert(key, var);
    }
    Ok(())
}

/// `GROUNDCREW_HTTP__BIND` → `http.bind`.
fn key_of(var: &str) -> String {
    var[PREFIX.len()..]
        .split("__")
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

/// Sets `key` from `raw`; `Err(None)` when there is no such key.
fn set(c: &mut Config, key: &str, raw: &str) -> Result<(), Option<Problem>> {
    match key.split('.').collect::<Vec<_>>()[..] {
        ["data_dir"] => c.data_dir = PathBuf::from(raw),
        ["store"] => c.store = raw.parse().map_err(|e| Some(Problem::Store(e)))?,
        ["tokens"] => c.tokens = tokens(raw)?,
        ["feeds"] => c.feeds = Some(flow_list(raw, "feed list")?),
        ["kinds"] => c.kinds = flow_list(raw, "kind list")?,
        ["kinds_isolation"] => {
            c.kinds_isolation = parse(raw, "kinds isolation (auto, cgroup or subreaper)")?
        }
        ["feed_poll_ms"] => c.feed_poll_ms = parse(raw, "number of milliseconds")?,
        ["node"] => c.node = Some(raw.to_owned()),
        ["lease_s"] => c.lease_s = parse(raw, "number of seconds")?,
        ["pools", name] if !name.is_empty() => {
            let limit = parse(raw, "worker limit")?;
            c.pools
                .entry(name.to_owned())
                .and_modify(|p| p.limit = limit)
                .or_insert_with(|| PoolConfig::with_limit(limit));
        }
        ["pools", name, "cancel_grace_s"] if !name.is_empty() => {
            let grace = parse(raw, "number of seconds")?;
            let Some(pool) = c.pools.get_mut(name) else {
                return Err(Some(Problem::Parse {
                    expected: "a pool configured in the file or by GROUNDCREW_POOLS__<NAME>",
                    value: name.to_owned(),
                }));
            };
            pool.cancel_grace_s = grace;
        }
        ["pools", name, "cluster_limit"] if !name.is_empty() => {
            let limit = parse(raw, "worker limit")?;
            let Some(pool) = c.pools.get_mut(name) else {
                return Err(Some(Problem::Parse {
                    expected: "a pool configured in the file or by GROUNDCREW_POOLS__<NAME>",
                    value: name.to_owned(),
                }));
            };
            pool.cluster_limit = Some(limit);
        }
        ["builtin_kinds", "artifact", "timeout_s"] => {
            c.builtin_kinds.artifact.timeout_s = optional_count(raw)?;
        }
        ["builtin_kinds", "test", "timeout_s"] => {
            c.builtin_kinds.test.timeout_s = optional_count(raw)?;
        }
        ["http", "bind"] => c.http.bind = parse(raw, "socket address")?,
        ["http", "metrics_require_token"] => {
            c.http.metrics_require_token = parse(raw, "boolean (true or false)")?;
        }
        ["http", "max_body_bytes"] => c.http.max_body_bytes = parse(raw, "byte count")?,
        ["retention", "max_age_s"] => c.retention.max_age_s = optional_count(raw)?,
        ["retention", "max_count"] => c.retention.max_count = optional_count(raw)?,
        ["retention", "prune_interval_s"] => {
            c.retention.prune_interval_s = parse(raw, "number of seconds")?;
        }
        ["artifacts", "dir"] => c.artifacts.dir = non_empty(raw).map(PathBuf::from),
        ["artifacts", "extension"] => c.artifacts.extension = non_empty(raw).map(str::to_owned),
        ["artifacts", "sink"] => c.artifacts.sink = parse(raw, "artifact sink (file or postgres)")?,
        ["log", "format"] => c.log.format = parse(raw, "log format (pretty or json)")?,
        ["log", "level"] => c.log.level = raw.to_owned(),
        ["shutdown", "drain_timeout_s"] => {
            c.shutdown.drain_timeout_s = parse(raw, "number of seconds")?;
        }
        ["shutdown", "cancel_grace_s"] => {
            c.shutdown.cancel_grace_s = parse(raw, "number of seconds")?;
        }
        _ => return Err(None),
    }
    Ok(())
}

fn parse<T: FromStr>(raw: &str, expected: &'static str) -> Result<T, Option<Problem>> {
    raw.parse().map_err(|_| {
        Some(Problem::Parse {
            expected,
            value: raw.to_owned(),
        })
    })
}

fn optional_count(raw: &str) -> Result<Option<u64>, Option<Problem>> {
    parse_optional_count(raw).ok_or_else(|| {
        Some(Problem::Parse {
            expected: "count (or none)",
            value: raw.to_owned(),
        })
    })
}

fn non_empty(raw: &str) -> Option<&str> {
    (!raw.is_empty()).then_some(raw)
}

/// The token list as a YAML (or JSON) flow sequence:
/// `[{name: ci, token: "...", role: read}]`. The parser's message is not
/// passed on, since it may quote a token.
fn tokens(raw: &str) -> Result<Vec<Token>, Option<Problem>> {
    serde_norway::from_str(raw).map_err(|_| {
        Some(Problem::Parse {
            expected: "token list",
            value: "***".to_owned(),
        })
    })
}

/// A list as a YAML (or JSON) flow sequence: `[{name: geo, path: a.tsv, format: ip2asn}]`.
/// The value is never shown (a kind's `env` may hold secrets); the
/// parser's message is, with the value it quotes hidden.
fn flow_list<T: serde::de::DeserializeOwned>(
    raw: &str,
    expected: &'static str,
) -> Result<T, Option<Problem>> {
    serde_norway::from_str(raw).map_err(|e| {
        Some(Problem::Redacted {
            expected,
            reason: super::redact::redact_message(&e.to_string()),
        })
    })
}
