//! The line protocol a command speaks on stdout: one JSON object per line
//! with exactly one key (see the [module docs](super) for the messages).
//!
//! Parsing is pure and separate from the process handling so that every
//! message and every malformed line can be tested without spawning
//! anything. Reading is bounded: a line longer than [`MAX_LINE`] is an
//! error as soon as the limit is passed, not when its newline arrives
//! (see [`read_output`](super::output)).

use std::io;
use std::path::PathBuf;

use groundcrew_actors::{EntityName, EntityNameError};
use serde_json::Value;

/// The longest stdout line accepted, newline excluded.
pub(super) const MAX_LINE: usize = 1024 * 1024;

/// The keys a message may have, in the order the errors list them.
const KEYS: &str = "stage, progress, publish or result";

/// One message of the command.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Message {
    /// `{"stage": "name"}`: the execution entered a stage.
    Stage(String),
    /// `{"progress": [done, total]}`.
    Progress {
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// `{"publish": {"entity": "country:DE", "path": "out/de.txt"}}`: the
    /// file's content becomes the entity's artifact.
    Publish {
        /// The entity.
        entity: EntityName,
        /// The file, relative to the command's working directory unless
        /// absolute.
        path: PathBuf,
    },
    /// `{"result": <any JSON>}`: the task's result (the last one wins).
    Result(Value),
}

/// A stdout line the command should not have written, with its 1-based
/// number. The problem is the [source](std::error::Error::source), so that
/// error chains read `command output line 3: unknown key "stagee"; ...`.
#[derive(Debug, thiserror::Error)]
#[error("command output line {line}")]
pub(super) struct LineError {
    /// The line number, from 1.
    pub(super) line: usize,
    /// What is wrong with it.
    #[source]
    pub(super) problem: LineProblem,
}

/// What is wrong with a stdout line.
#[derive(Debug, thiserror::Error)]
pub(super) enum LineProblem {
    /// Longer than [`MAX_LINE`].
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not valid UTF-8.
    #[error("line is not valid utf-8")]
    NotUtf8,
    /// Not JSON.
    #[error("not a json object: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object with exactly one key.
    #[error("expected an object with exactly one key ({KEYS}), got {0}")]
    Shape(String),
    /// A key the protocol does not have.
    #[error("unknown key {0:?}; expected {KEYS}")]
    UnknownKey(String),
    /// A known key with a value of the wrong form.
    #[error("invalid {key} {value}: expected {expected}")]
    Value {
        /// The message key.
        key: &'static str,
        /// The value given, as JSON.
        value: String,
        /// The form it must have.
        expected: &'static str,
    },
    /// A `publish` naming an invalid entity.
    #[error(transparent)]
    Entity(#[from] EntityNameError),
    /// A published file that could not be read.
    #[error("cannot read published file {}", path.display())]
    Unreadable {
        /// The file, resolved against the working directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A published file over the size limit.
    #[error("published file {} is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file, resolved against the working directory.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The entity writer refused the publication.
    #[error(transparent)]
    Publish(#[from] groundcrew_actors::PublishError),
}

/// Parses one line: `Ok(None)` for a blank line.
pub(super) fn parse(line: &str) -> Result<Option<Message>, LineProblem> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(line).map_err(LineProblem::NotJson)?;
    let Value::Object(object) = value else {
        return Err(LineProblem::Shape(describe(&value)));
    };
    let mut entries = object.into_iter();
    let (key, value) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => return Err(LineProblem::Shape("an empty object".into())),
        (Some(_), Some(_)) => {
            let n = 2 + entries.count();
            return Err(LineProblem::Shape(format!("an object with {n} keys")));
        }
    };
    let message = match key.as_str() {
        "stage" => Message::Stage(stage(value)?),
        "progress" => progress(value)?,
        "publish" => publish(value)?,
        "result" => Message::Result(value),
        _ => return Err(LineProblem::UnknownKey(key)),
    };
    Ok(Some(message))
}

fn stage(value: Value) -> Result<String, LineProblem> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        other => Err(invalid("stage", &other, "a non-empty string")),
    }
}

fn progress(value: Value) -> Result<Message, LineProblem> {
    let pair = value.as_array().and_then(|a| match a.as_slice() {
        [done, total] => Some((done.as_u64()?, total.as_u64()?)),
        _ => None,
    });
    match pair {
        Some((done, total)) => Ok(Message::Progress { done, total }),
        None => Err(invalid(
            "progress",
            &value,
            "[done, total] as non-negative integers",
        )),
    }
}

fn publish(value: Value) -> Result<Message, LineProblem> {
    const EXPECTED: &str = r#"{"entity": "<class>:<id>", "path": "<file>"}"#;
    let fields = value.as_object().filter(|o| o.len() == 2).and_then(|o| {
        let entity = o.get("entity")?.as_str()?;
        let path = o.get("path")?.as_str().filter(|p| !p.is_empty())?;
        Some((entity, path))
    });
    let Some((entity, path)) = fields else {
        return Err(invalid("publish", &value, EXPECTED));
    };
    Ok(Message::Publish {
        entity: EntityName::new(entity)?,
        path: PathBuf::from(path),
    })
}

fn invalid(key: &'static str, value: &Value, expected: &'static str) -> LineProblem {
    let mut value = value.to_string();
    // The value is echoed into task errors: keep a runaway one short.
    if value.len() > 200 {
        let cut = (0..=200).rev().find(|&i| value.is_char_boundary(i));
        value.truncate(cut.unwrap_or(0));
        value.push('…');
    }
    LineProblem::Value {
        key,
        value,
        expected,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(line: &str) -> String {
        let e = parse(line).unwrap_err();
        e.to_string()
    }

    #[test]
    fn each_message_kind_parses() {
        assert_eq!(
            parse(r#"{"stage": "download"}"#).unwrap(),
            Some(Message::Stage("download".into()))
        );
        assert_eq!(
            parse(r#"{"progress": [3, 10]}"#).unwrap(),
            Some(Message::Progress { done: 3, total: 10 })
        );
        assert_eq!(
            parse(r#"{"publish": {"entity": "country:DE", "path": "out/de.txt"}}"#).unwrap(),
            Some(Message::Publish {
                entity: EntityName::new("country:DE").unwrap(),
                path: PathBuf::from("out/de.txt"),
            })
        );
        assert_eq!(
            parse(r#"{"result": {"rows": 5, "ok": [true]}}"#).unwrap(),
            Some(Message::Result(json!({"rows": 5, "ok": [true]})))
        );
        assert_eq!(
            parse(r#"{"result": null}"#).unwrap(),
            Some(Message::Result(Value::Null))
        );
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   \t").unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_named_with_the_expected_ones() {
        assert_eq!(
            problem(r#"{"stagee": "x"}"#),
            r#"unknown key "stagee"; expected stage, progress, publish or result"#
        );
    }

    #[test]
    fn lines_that_are_not_one_key_objects_are_refused() {
        assert!(problem("hello").starts_with("not a json object: "));
        assert!(problem(r#"{"stage": "x""#).starts_with("not a json object: "));
        assert_eq!(
            problem("[1, 2]"),
            "expected an object with exactly one key (stage, progress, publish or result), got an array"
        );
        assert!(problem("{}").ends_with("got an empty object"));
        assert!(problem(r#"{"stage": "a", "result": 1}"#).ends_with("got an object with 2 keys"));
    }

    #[test]
    fn bad_values_name_the_key_the_value_and_the_form() {
        assert_eq!(
            problem(r#"{"stage": 5}"#),
            "invalid stage 5: expected a non-empty string"
        );
        assert_eq!(
            problem(r#"{"progress": [1, -2]}"#),
            "invalid progress [1,-2]: expected [done, total] as non-negative integers"
        );
        assert!(problem(r#"{"progress": 7}"#).starts_with("invalid progress 7"));
        assert!(problem(r#"{"publish": {"entity": "country:DE"}}"#).starts_with("invalid publish"));
        assert!(
            problem(r#"{"publish": {"entity": "a:b", "path": "x", "extra": 1}}"#)
                .starts_with("invalid publish")
        );
        let long = format!(r#"{{"stage": [{}]}}"#, "1,".repeat(500) + "1");
        assert!(problem(&long).len() < 300);
    }

    #[test]
    fn bad_entity_names_are_refused_naming_the_entity() {
        let message = problem(r#"{"publish": {"entity": "../etc", "path": "x"}}"#);
        assert!(message.contains(r#""../etc""#), "{message}");
    }

    #[test]
    fn line_errors_carry_the_line_number_before_the_problem() {
        let e = LineError {
            line: 3,
            problem: parse(r#"{"stagee": 1}"#).unwrap_err(),
        };
        let chained = groundcrew_actors::TaskError::from(e).to_string();
        assert_eq!(
            chained,
            r#"command output line 3: unknown key "stagee"; expected stage, progress, publish or result"#
        );
    }
}
