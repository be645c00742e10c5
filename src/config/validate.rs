//! Checks that need more than a type: names, limits, unique tokens.
//!
//! [`check`] returns the first problem with the key path it concerns; the
//! caller places it (file line, variable or flag). Keys are checked in the
//! order the example file lists them, so the first error is the topmost.

use std::collections::BTreeMap;

use groundcrew_actors::{LimitError, MAX_WORKER_LIMIT};

use super::locate::KeyPath;
use super::{Config, Problem};

/// The shortest token accepted: shorter ones can be guessed.
pub(super) const MIN_TOKEN_LEN: usize = 16;

type Refusal = (KeyPath, Problem);

/// The first problem in `config`, if any.
pub(super) fn check(config: &Config) -> Result<(), Refusal> {
    if config.data_dir.as_os_str().is_empty() {
        return Err((KeyPath::parse("data_dir"), Problem::EmptyPath));
    }
    if config.http.max_body_bytes == 0 {
        return Err((KeyPath::parse("http.max_body_bytes"), Problem::Zero));
    }
    pools(config)?;
    kinds(config)?;
    tokens(config)?;
    feeds(config)?;
    if config.feed_poll_ms == 0 {
        return Err((KeyPath::parse("feed_poll_ms"), Problem::Zero));
    }
    if !(config.lease_s.is_finite() && (0.3..=86_400.0).contains(&config.lease_s)) {
        return Err((
            KeyPath::parse("lease_s"),
            Problem::Lease(config.lease_s.to_string()),
        ));
    }
    if let Some(node) = &config.node {
        if !crate::store::valid_node_name(node) {
            return Err((KeyPath::parse("node"), Problem::NodeName(node.clone())));
        }
    }
    for (name, kind) in [
        ("artifact", &config.builtin_kinds.artifact),
        ("test", &config.builtin_kinds.test),
    ] {
        if kind.timeout_s == Some(0) {
            let key = format!("builtin_kinds.{name}.timeout_s");
            return Err((KeyPath::parse(&key), Problem::Zero));
        }
    }
    if config.retention.prune_interval_s == 0 {
        return Err((KeyPath::parse("retention.prune_interval_s"), Problem::Zero));
    }
    if let Some(ext) = &config.artifacts.extension {
        if !is_extension(ext) {
            return Err((
                KeyPath::parse("artifacts.extension"),
                Problem::Extension(ext.clone()),
            ));
        }
    }
    if config.artifacts.sink == super::ArtifactSinkKind::Postgres
        && !matches!(config.store_location(), super::StoreLocation::Postgres(_))
    {
        return Err((KeyPath::parse("artifacts.sink"), Problem::SinkNeedsPostgres));
    }
    if !is_level(&config.log.level) {
        return Err((
            KeyPath::parse("log.level"),
            Problem::LogLevel(config.log.level.clone()),
        ));
    }
    Ok(())
}

fn pools(config: &Config) -> Result<(), Refusal> {
    let at = KeyPath::parse("pools");
    for (name, pool) in &config.pools {
        if !is_pool_name(name) {
            return Err((at.key(name), Problem::PoolName(name.clone())));
        }
        if pool.limit > MAX_WORKER_LIMIT {
            let key = match pool.long_form {
                true => at.key(name).key("limit"),
                false => at.key(name),
            };
            return Err((key, Problem::Limit(LimitError::TooLarge(pool.limit))));
        }
        if pool.cluster_limit.is_some()
            && !matches!(config.store_location(), super::StoreLocation::Postgres(_))
        {
            let key = at.key(name).key("cluster_limit");
            return Err((key, Problem::ClusterLimitNeedsPostgres));
        }
    }
    Ok(())
}

/// Configured command kinds: a name the registry accepts and no built-in
/// has, a command, an existing pool, positive limits, portable variable
/// names.
fn kinds(config: &Config) -> Result<(), Refusal> {
    let at = KeyPath::parse("kinds");
    let mut names = BTreeMap::new();
    for (i, k) in config.kinds.iter().enumerate() {
        let item = at.index(i);
        if !is_pool_name(&k.name) {
            return Err((item.key("name"), Problem::KindName(k.name.clone())));
        }
        if crate::kinds::BUILT_IN_KINDS.contains(&k.name.as_str()) {
            return Err((item.key("name"), Problem::BuiltInKind(k.name.clone())));
        }
        if let Some(first) = names.insert(k.name.as_str(), item.key("name")) {
            return Err((
                item.key("name"),
                Problem::DuplicateKindName {
                    name: k.name.clone(),
                    first: first.to_string(),
                },
            ));
        }
        if k.command.first().is_none_or(String::is_empty) {
            return Err((item.key("command"), Problem::EmptyCommand));
        }
        if !config.pools.contains_key(&k.pool) {
            return Err((
                item.key("pool"),
                Problem::UnknownPool {
                    pool: k.pool.clone(),
                    known: config.pools.keys().cloned().collect(),
                },
            ));
        }
        if k.timeout_s == 0 {
            return Err((item.key("timeout_s"), Problem::Zero));
        }
        if k.max_attempts == 0 {
            return Err((item.key("max_attempts"), Problem::Zero));
        }
        if let Some(var) = k.env.keys().find(|v| !is_env_name(v)) {
            return Err((item.key("env").key(var), Problem::EnvName(var.clone())));
        }
    }
    Ok(())
}

/// `[A-Za-z_][A-Za-z0-9_]*`: names every shell and `env` accept.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn tokens(config: &Config) -> Result<(), Refusal> {
    let at = KeyPath::parse("tokens");
    // First key path of each name and of each value.
    let mut names = BTreeMap::new();
    let mut values = BTreeMap::new();
    for (i, t) in config.tokens.iter().enumerate() {
        let item = at.index(i);
        if let Some(first) = names.insert(t.name.as_str(), item.key("name")) {
            return Err((
                item.key("name"),
                Problem::DuplicateTokenName {
                    name: t.name.clone(),
                    first: first.to_string(),
                },
            ));
        }
        let len = t.token.expose().chars().count();
        if len < MIN_TOKEN_LEN {
            return Err((
                item.key("token"),
                Problem::ShortToken {
                    name: t.name.clone(),
                    len,
                    min: MIN_TOKEN_LEN,
                },
            ));
        }
        if let Some(first) = values.insert(t.token.expose(), item.key("token")) {
            return Err((
                item.key("token"),
                Problem::DuplicateToken {
                    name: t.name.clone(),
                    first: first.to_string(),
                },
            ));
        }
    }
    Ok(())
}

/// `[a-z][a-z0-9_-]{0,63}`: pool names appear in metric labels and URLs.
fn feeds(config: &Config) -> Result<(), Refusal> {
    let at = KeyPath::parse("feeds");
    let mut names = BTreeMap::new();
    for (i, f) in config.feeds.iter().flatten().enumerate() {
        let item = at.index(i);
        if !is_pool_name(&f.name) {
            return Err((item.key("name"), Problem::FeedName(f.name.clone())));
        }
        if let Some(first) = names.insert(f.name.as_str(), item.key("name")) {
            return Err((
                item.key("name"),
                Problem::DuplicateFeedName {
                    name: f.name.clone(),
                    first: first.to_string(),
                },
            ));
        }
        if f.path.as_os_str().is_empty() {
            return Err((item.key("path"), Problem::EmptyPath));
        }
        for (key, ratio) in [
            ("max_bad_line_ratio", f.max_bad_line_ratio),
            ("max_entity_drop_ratio", f.max_entity_drop_ratio),
        ] {
            if let Some(r) = ratio.filter(|r| !(0.0..=1.0).contains(r)) {
                return Err((item.key(key), Problem::Ratio(r.to_string())));
            }
        }
    }
    Ok(())
}

/// Pool, feed and kind names: `[a-z][a-z0-9_-]{0,63}`.
fn is_pool_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `[a-z0-9]{1,8}`: the extension becomes part of file names.
fn is_extension(ext: &str) -> bool {
    (1..=8).contains(&ext.len())
        && ext
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// A subset of tracing's `EnvFilter` syntax that it always accepts:
/// comma-separated `level` or `target=level` directives, where a target is
/// a Rust module path. Checked here rather than with `tracing-subscriber`
/// so that configuration does not pull in the logging stack.
fn is_level(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    filter.split(',').all(|directive| {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
            && target.is_none_or(|t| t.split("::").all(is_ident))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_follow_the_pattern() {
        assert!(is_pool_name("background"));
        assert!(is_pool_name("a"));
        assert!(is_pool_name("geo_ip-2"));
        assert!(is_pool_name(&"a".repeat(64)));
        assert!(!is_pool_name(&"a".repeat(65)));
        assert!(!is_pool_name(""));
        assert!(!is_pool_name("2fast"));
        assert!(!is_pool_name("Background"));
        assert!(!is_pool_name("a.b"));
    }

    #[test]
    fn log_levels_accept_levels_and_target_directives() {
        for ok in [
            "info",
            "WARN",
            "warn,groundcrew=debug",
            "groundcrew::store=trace",
        ] {
            assert!(is_level(ok), "{ok}");
        }
        for bad in [
            "",
            "verbose",
            "info,",
            "=debug",
            "groundcrew=loud",
            "a b=info",
        ] {
            assert!(!is_level(bad), "{bad}");
        }
    }

    #[test]
    fn env_names_are_shell_identifiers() {
        assert!(is_env_name("API_KEY"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A=B"));
    }

    #[test]
    fn extensions_are_short_lowercase_alphanumerics() {
        assert!(is_extension("txt"));
        assert!(is_extension("json5"));
        assert!(!is_extension("TXT"));
        assert!(!is_extension("tar.gz"));
        assert!(!is_extension("verylongext"));
    }
}
