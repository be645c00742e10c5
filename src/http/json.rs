//! Shared rules for reading JSON request bodies.
//!
//! An optional field is either absent or a value of its type: an explicit
//! `null` is refused (400 `invalid_json`) rather than read as absent, so
//! that the daemon refuses exactly what its OpenAPI document refuses.

use serde::{Deserialize, Deserializer};

/// For `#[serde(default, deserialize_with = "non_null")]` on an `Option`
/// field: present means `Some`, and `null` is an error.
pub(super) fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}
