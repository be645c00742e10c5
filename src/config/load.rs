//! Reading the file: format by extension, syntax and type errors with the
//! parser's position, and the [`Source`] kept for locating keys later.
//!
//! YAML is read with `serde_norway`, the maintained fork of the deprecated
//! `serde_yaml`; TOML with `toml`. The text is first parsed on its own, so
//! that a syntax error is told apart from a type error, then deserialized
//! through `serde_path_to_error` to learn the key path of a type error,
//! which neither parser reports in a usable form.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeSeed, IgnoredAny};

use super::locate::{line_column, KeyPath};
use super::{Config, ConfigError, Origin, Problem};

/// The file formats, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Yaml,
    Toml,
}

impl Format {
    fn of(path: &Path) -> Result<Format, ConfigError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("toml") => Ok(Format::Toml),
            _ => Err(ConfigError::UnsupportedFormat {
                path: path.to_owned(),
            }),
        }
    }
}

/// The configuration file as read, kept to place later errors.
#[derive(Debug)]
pub(super) struct Source {
    path: PathBuf,
    text: String,
    format: Format,
}

/// Reads and deserializes `path` over the defaults.
pub(super) fn from_file(path: &Path) -> Result<Config, ConfigError> {
    let format = Format::of(path)?;
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source = Source {
        path: path.to_owned(),
        text,
        format,
    };
    let mut config = source.deserialize()?;
    config.provenance.source = Some(Arc::new(source));
    Ok(config)
}

impl Source {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn deserialize(&self) -> Result<Config, ConfigError> {
        match self.format {
            Format::Yaml => self.deserialize_yaml(),
            Format::Toml => self.deserialize_toml(),
        }
    }

    fn deserialize_yaml(&self) -> Result<Config, ConfigError> {
        // An empty file (or one of comments only) is an empty document,
        // which serde_norway refuses; it means "all defaults".
        match serde_norway::from_str::<Option<IgnoredAny>>(&self.text) {
            Ok(None) => return Ok(Config::default()),
            Ok(Some(_)) => {}
            Err(e) => {
                return Err(ConfigError::Syntax {
                    at: self.at_yaml(&e),
                    message: strip_positions(&e.to_string()),
                })
            }
        }
        let d = serde_norway::Deserializer::from_str(&self.text);
        serde_path_to_error::deserialize(d).map_err(|e| {
            let at = self.at_yaml(e.inner());
            self.type_error(at, e.path(), &e.inner().to_string())
        })
    }

    fn deserialize_toml(&self) -> Result<Config, ConfigError> {
        let d = toml::Deserializer::parse(&self.text).map_err(|e| ConfigError::Syntax {
            at: self.at_toml(&e),
            message: e.message().trim_end().to_owned(),
        })?;
        serde_path_to_error::deserialize(d).map_err(|e| {
            let at = self.at_toml(e.inner());
            self.type_error(at, e.path(), e.inner().message())
        })
    }

    /// A deserialization error: an unknown key, or a value of the wrong type.
    fn type_error(
        &self,
        at: Origin,
        path: &serde_path_to_error::Path,
        message: &str,
    ) -> ConfigError {
        let key = KeyPath::from_serde(path);
        let message = strip_positions(message);
        // serde_norway prefixes its own rendering of the path: the same
        // path, or for an unknown key the path of its parent.
        let message = key
            .prefixes()
            .find_map(|p| message.strip_prefix(&format!("{p}: ")))
            .unwrap_or(&message);
        if let Some(expected) = unknown_field(message) {
            // The tracked path already ends with the unknown key.
            return ConfigError::UnknownKey {
                at,
                key: key.to_string(),
                expected,
            };
        }
        // Placed at the key, like validation errors: the parser's own
        // position is sometimes the enclosing map's (an error raised after
        // a value was read, as by `try_from`), which can be lines away.
        let at = self.origin_of(&key).unwrap_or(at);
        let key = key.to_string();
        ConfigError::Invalid {
            problem: Problem::Type(redact(&key, message)),
            at,
            key,
        }
    }

    fn at_yaml(&self, e: &serde_norway::Error) -> Origin {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        self.at(line, column)
    }

    fn at_toml(&self, e: &toml::de::Error) -> Origin {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(&self.text, span.start));
        self.at(line, column)
    }

    fn at(&self, line: usize, column: usize) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line,
            column,
        }
    }

    /// Where `key` (or its nearest ancestor present) is in the file.
    pub(super) fn origin_of(&self, key: &KeyPath) -> Option<Origin> {
        let (line, column) = match self.format {
            Format::Yaml => key.locate_with(
                |seek| seek.deserialize(serde_norway::Deserializer::from_str(&self.text)),
                |e: &serde_norway::Error| e.location().map(|l| (l.line(), l.column())),
            ),
            Format::Toml => key.locate_with(
                |seek| seek.deserialize(toml::Deserializer::parse(&self.text)?),
                |e: &toml::de::Error| e.span().map(|s| line_column(&self.text, s.start)),
            ),
        }?;
        Some(self.at(line, column))
    }
}

/// The expected names of serde's `unknown field` message:
/// `unknown field `x`, expected one of `a`, `b`` (or `expected `a``, or
/// `there are no fields`).
fn unknown_field(message: &str) -> Option<Vec<String>> {
    let rest = message.strip_prefix("unknown field `")?;
    let (_field, rest) = rest.split_once('`')?;
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// `message` without the parser's ` at line N column M` (or ` at position
/// N`) parts: the position is reported separately, in one format.
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        rest = skip_position(after).unwrap_or_else(|| {
            out.push_str(" at ");
            after
        });
    }
    out.push_str(rest);
    out
}

/// The text after a leading `line N column M` or `position N`, if any.
fn skip_position(s: &str) -> Option<&str> {
    fn number(s: &str) -> Option<&str> {
        let rest = s.trim_start_matches(|c: char| c.is_ascii_digit());
        (rest.len() < s.len()).then_some(rest)
    }
    if let Some(s) = s.strip_prefix("line ") {
        return number(number(s)?.strip_prefix(" column ")?);
    }
    number(s.strip_prefix("position ")?)
}

/// The parser's message, with the value hidden where it may be a secret.
fn redact(key: &str, message: &str) -> String {
    if super::redact::is_secret_key(key) {
        super::redact::redact_message(message)
    } else {
        message.to_owned()
    }
}
