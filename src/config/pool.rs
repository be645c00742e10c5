//! One entry of the `pools` map: a worker limit, written as a number, or a
//! map with the limit, the pool's cancel grace period and, on PostgreSQL,
//! a cluster-wide limit.
//!
//! ```yaml
//! pools:
//!   background: 2                       # limit only
//!   slow: {limit: 1, cancel_grace_s: 60}
//!   reports: {limit: 4, cluster_limit: 6}
//! ```

use std::fmt;
use std::time::Duration;

use groundcrew_actors::DEFAULT_CANCEL_GRACE;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A pool's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker limit.
    pub limit: usize,
    /// How long a canceled or timed-out task gets to stop on its own
    /// before it is stopped hard; default 10 s.
    pub cancel_grace_s: u64,
    /// Most tasks of the pool running at once on all the nodes of a
    /// PostgreSQL store together; each claim uses its own node's value.
    pub cluster_limit: Option<usize>,
    /// Written as a map (errors about the limit then name `.limit`).
    pub(super) long_form: bool,
}

impl PoolConfig {
    /// A pool with `limit` and the default grace, as a bare number sets it.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            cancel_grace_s: DEFAULT_CANCEL_GRACE.as_secs(),
            cluster_limit: None,
            long_form: false,
        }
    }

    /// The grace period.
    pub fn cancel_grace(&self) -> Duration {
        Duration::from_secs(self.cancel_grace_s)
    }
}

impl<'de> Deserialize<'de> for PoolConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PoolVisitor)
    }
}

struct PoolVisitor;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongForm {
    limit: usize,
    #[serde(default = "default_grace_s")]
    cancel_grace_s: u64,
    #[serde(default)]
    cluster_limit: Option<usize>,
}

fn default_grace_s() -> u64 {
    DEFAULT_CANCEL_GRACE.as_secs()
}

impl<'de> Visitor<'de> for PoolVisitor {
    type Value = PoolConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a worker limit, or a map with limit, cancel_grace_s and cluster_limit")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        usize::try_from(v)
            .map(PoolConfig::with_limit)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let long = LongForm::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(PoolConfig {
            limit: long.limit,
            cancel_grace_s: long.cancel_grace_s,
            cluster_limit: long.cluster_limit,
            long_form: true,
        })
    }
}
