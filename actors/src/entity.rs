//! Entity names and task targets.
//!
//! An entity is the unit an artifact is published for: `country:DE`,
//! `asn:13335`. Its name is `<class>:<id>` with a lowercase class and an id of
//! ASCII letters, digits, `_` and `-`. That grammar is the only line of
//! defense between an API caller and the artifact directory, so it admits no
//! `/`, no `.` and no empty parts: an [`EntityName`] can always be turned into
//! the relative path `<class>/<id>` without escaping its root.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest entity name accepted, in bytes.
pub const MAX_ENTITY_LEN: usize = 128;

/// A validated entity name such as `country:DE` or `asn:13335`.
///
/// ```
/// use groundcrew_actors::EntityName;
///
/// let de: EntityName = "country:DE".parse().unwrap();
/// assert_eq!(de.class(), "country");
/// assert_eq!(de.id(), "DE");
/// assert!("../etc:passwd".parse::<EntityName>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityName {
    name: String,
    colon: usize,
}

/// An entity name that does not follow the `<class>:<id>` grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid entity name {name:?}: must match [a-z][a-z0-9_]*:[A-Za-z0-9_-]+ (at most {MAX_ENTITY_LEN} bytes)")]
pub struct EntityNameError {
    /// The rejected name, truncated to a printable length.
    pub name: String,
}

impl EntityName {
    /// Parses and validates an entity name.
    pub fn new(name: &str) -> Result<Self, EntityNameError> {
        let reject = || EntityNameError {
            name: name.chars().take(MAX_ENTITY_LEN).collect(),
        };
        if name.len() > MAX_ENTITY_LEN {
            return Err(reject());
        }
        let (class, id) = name.split_once(':').ok_or_else(reject)?;
        let class_ok = class.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && class
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let id_ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !(class_ok && id_ok) {
            return Err(reject());
        }
        Ok(Self {
            name: name.to_owned(),
            colon: class.len(),
        })
    }

    /// The class before the colon: `country` in `country:DE`.
    pub fn class(&self) -> &str {
        &self.name[..self.colon]
    }

    /// The id after the colon: `DE` in `country:DE`.
    pub fn id(&self) -> &str {
        &self.name[self.colon + 1..]
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

impl FromStr for EntityName {
    type Err = EntityNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for EntityName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for EntityName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// What a task works on: one entity, or every entity of its kind.
///
/// Serialized as the entity name, or `"all"` for a full rebuild.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A full rebuild of everything the task kind produces.
    All,
    /// One entity.
    Entity(EntityName),
}

impl Target {
    /// Parses `all` or an entity name.
    pub fn parse(s: &str) -> Result<Self, EntityNameError> {
        if s == "all" {
            Ok(Target::All)
        } else {
            EntityName::new(s).map(Target::Entity)
        }
    }

    /// Whether this is a full rebuild.
    pub fn is_all(&self) -> bool {
        matches!(self, Target::All)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Entity(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Target {
    type Err = EntityNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<EntityName> for Target {
    fn from(e: EntityName) -> Self {
        Target::Entity(e)
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_country_and_asn_names() {
        for ok in ["country:DE", "asn:13335", "feed_2:a-b_C"] {
            assert_eq!(EntityName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_that_could_escape_the_artifact_directory() {
        for bad in [
            "",
            ":",
            "country:",
            ":DE",
            "../x:y",
            "country:../DE",
            "country:DE/..",
            "country:.",
            "country:..",
            "a/b:c",
            "country:D E",
            "Country:DE",
            "country:DE\0",
            "country:\u{e9}",
            "country:a:b",
            "/etc:passwd",
            "1x:y",
        ] {
            let err = EntityName::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid entity name"), "{bad:?}");
        }
        assert!(EntityName::new(&format!("c:{}", "x".repeat(MAX_ENTITY_LEN))).is_err());
    }

    #[test]
    fn target_all_round_trips_through_json() {
        let t: Target = serde_json::from_str("\"all\"").unwrap();
        assert!(t.is_all());
        let e: Target = serde_json::from_str("\"asn:13335\"").unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"asn:13335\"");
        assert!(serde_json::from_str::<Target>("\"../x\"").is_err());
    }
}
