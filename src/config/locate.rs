//! Finding the line and column of a key path in the configuration file.
//!
//! Validation runs on the deserialized [`Config`](super::Config), which no
//! longer knows positions. Rather than a second, hand-written parser for
//! YAML and TOML, the file is deserialized once more by its own parser with
//! a seed that walks down the key path and fails on purpose at the target,
//! inside the deserializer of that key. Both parsers attach the position of
//! the node being read to an error raised there (`serde_norway` its mark,
//! `toml` its span), so the failure carries exactly the position we want,
//! whatever the layout: block or flow style, dotted keys, inline tables or
//! arrays of tables. The error message is a sentinel, so that a genuine
//! parse error is never mistaken for "found".

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A key path such as `pools.background` or `tokens[1].token`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct KeyPath(Vec<Segment>);

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// A map key or struct field.
    Key(String),
    /// A list position, from 0.
    Index(usize),
}

impl KeyPath {
    /// A path of plain keys separated by dots, e.g. `http.bind`.
    pub(super) fn parse(dotted: &str) -> Self {
        KeyPath(
            dotted
                .split('.')
                .map(|k| Segment::Key(k.to_owned()))
                .collect(),
        )
    }

    /// This path extended by a key.
    pub(super) fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path extended by a list position.
    pub(super) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// The path of a serde error, as `serde_path_to_error` tracked it.
    pub(super) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        KeyPath(
            path.iter()
                .map(|s| match s {
                    S::Seq { index } => Segment::Index(*index),
                    S::Map { key } => Segment::Key(key.clone()),
                    S::Enum { variant } => Segment::Key(variant.clone()),
                    S::Unknown => Segment::Key("?".to_owned()),
                })
                .collect(),
        )
    }

    /// This path and each of its ancestors, longest first.
    pub(super) fn prefixes(&self) -> impl Iterator<Item = KeyPath> + '_ {
        (1..=self.0.len())
            .rev()
            .map(|n| KeyPath(self.0[..n].to_vec()))
    }

    /// What `set` records for the longest prefix of this path it has: a
    /// variable that set `tokens` also set `tokens[1].token`.
    pub(super) fn find_set_by<'a, V>(&self, set: &'a BTreeMap<String, V>) -> Option<&'a V> {
        self.prefixes().find_map(|p| set.get(&p.to_string()))
    }

    /// The position of this key (or, when absent, of its nearest ancestor
    /// present in the file) as a 1-based line and column, given a parse
    /// of the file per attempt.
    pub(super) fn locate_with<E: de::Error>(
        &self,
        mut attempt: impl FnMut(Seek<'_>) -> Result<(), E>,
        mut position: impl FnMut(&E) -> Option<(usize, usize)>,
    ) -> Option<(usize, usize)> {
        self.prefixes().find_map(|p| match attempt(Seek(&p.0)) {
            Err(e) if e.to_string().contains(FOUND) => position(&e),
            _ => None,
        })
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The sentinel message of the deliberate failure at the target.
const FOUND: &str = "\u{0}groundcrew-config-key-found";

/// A seed that walks `0` and fails with [`FOUND`] at its last segment:
/// at the key itself for a map key, at the item for a list position.
#[derive(Clone, Copy)]
pub(super) struct Seek<'p>(&'p [Segment]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.first() {
            None => d.deserialize_any(Target),
            Some(Segment::Key(_)) => d.deserialize_map(self),
            Some(Segment::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or list on the key path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(want), rest)) = self.0.split_first() else {
            return Ok(());
        };
        // Every entry is read, even after the wanted one: a parser may
        // reject a map left half-read, and that error must not look found.
        if rest.is_empty() {
            while map.next_key_seed(TargetKey(want))?.is_some() {
                map.next_value::<IgnoredAny>()?;
            }
        } else {
            while let Some(key) = map.next_key::<String>()? {
                if key == *want {
                    map.next_value_seed(Seek(rest))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(want), rest)) = self.0.split_first() else {
            return Ok(());
        };
        let mut index = 0;
        loop {
            let more = if index == *want {
                seq.next_element_seed(Seek(rest))?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// Reads a map key and fails with [`FOUND`] if it is the wanted one.
struct TargetKey<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for TargetKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TargetKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        if key == self.0 {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

/// Fails with [`FOUND`] on whatever value it is given.
struct Target;

macro_rules! found_on {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, $(_: $arg),*) -> Result<(), E> {
            Err(E::custom(FOUND))
        }
    )*};
}

impl<'de> Visitor<'de> for Target {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    found_on!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
        visit_unit(),
        visit_none(),
    );

    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(FOUND))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

/// Line and column (1-based, column in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}
