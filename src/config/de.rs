//! Field deserializers for the values YAML and TOML write differently.
//!
//! TOML has no null, so "unset" for an optional number is also accepted as
//! the string `none` (and an empty string), and an empty extension means no
//! extension. The same spellings work in environment variables.

use std::collections::BTreeMap;
use std::fmt;

use groundcrew_actors::DEFAULT_POOL;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::PoolConfig;

/// The pools every configuration starts from.
pub(super) fn default_pools() -> BTreeMap<String, PoolConfig> {
    BTreeMap::from([(DEFAULT_POOL.to_owned(), PoolConfig::with_limit(2))])
}

/// A `pools` map merged over [`default_pools`]: kinds without an explicit
/// pool run in the default one, so a file that only adds a pool must not
/// remove it.
pub(super) fn pools<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, PoolConfig>, D::Error> {
    let mut pools = default_pools();
    pools.extend(BTreeMap::<String, PoolConfig>::deserialize(d)?);
    Ok(pools)
}

/// `Some(n)` from a non-negative integer; `None` from null, `"none"` or `""`.
pub(super) fn optional_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Count;

    impl<'de> Visitor<'de> for Count {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer or \"none\"")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_optional_count(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    d.deserialize_any(Count)
}

/// The string spellings of an optional count, shared with the environment.
pub(super) fn parse_optional_count(v: &str) -> Option<Option<u64>> {
    match v {
        "" | "none" => Some(None),
        _ => v.parse().ok().map(Some),
    }
}

/// `Some(ext)`, or `None` from null or `""`.
pub(super) fn optional_extension<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let ext = Option::<String>::deserialize(d)?;
    Ok(ext.filter(|e| !e.is_empty()))
}
