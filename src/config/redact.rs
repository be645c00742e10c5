//! Keeping secrets out of configuration errors.
//!
//! Values under `tokens` and `kinds[].env` may be secrets, and so may any
//! part of a `GROUNDCREW_TOKENS`, `GROUNDCREW_KINDS` or `GROUNDCREW_FEEDS`
//! value. A parser quotes the value it could not use (`invalid type:
//! string "…"`, `integer `…``); for those keys the value is replaced whole
//! by `***`, whatever its type, and only what was expected is kept.

/// Whether values at `key` (a dotted path such as `tokens[0].token` or
/// `kinds[1].env.API_KEY`) are never shown in errors.
pub(super) fn is_secret_key(key: &str) -> bool {
    if key == "tokens" || key.starts_with("tokens[") || key.starts_with("tokens.") {
        return true;
    }
    let Some(rest) = key.strip_prefix("kinds[") else {
        return false;
    };
    let Some((index, field)) = rest.split_once(']') else {
        return false;
    };
    index.bytes().all(|b| b.is_ascii_digit())
        && (field == ".env" || field.starts_with(".env.") || field.starts_with(".env["))
}

/// `message` with the value it quotes replaced by `***`: everything from
/// the first quote (`"` or `` ` ``) up to `, expected` goes, so the
/// message still says what was expected.
pub(super) fn redact_message(message: &str) -> String {
    // These quote a key, never a value.
    if message.starts_with("missing field `") || message.starts_with("unknown field `") {
        return message.to_owned();
    }
    let (head, tail) = match message.find(", expected") {
        Some(i) => message.split_at(i),
        None => (message, ""),
    };
    match head.find(['"', '`', '\'']) {
        Some(i) => format!("{}***{tail}", &head[..i]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_tokens_and_kind_environments() {
        for key in [
            "tokens",
            "tokens[0].token",
            "kinds[2].env",
            "kinds[0].env.API_KEY",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "kinds[0].command",
            "kinds[0].environment",
            "pools.background",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn quoted_values_of_any_type_are_replaced_whole() {
        assert_eq!(
            redact_message("invalid type: string \"s3cr3t-value\", expected a sequence"),
            "invalid type: string ***, expected a sequence"
        );
        assert_eq!(
            redact_message("invalid type: integer `424242`, expected a string"),
            "invalid type: integer ***, expected a string"
        );
        assert_eq!(
            redact_message("unknown variant `s3cr3t`, expected `read` or `operate`"),
            "unknown variant ***, expected `read` or `operate`"
        );
        assert_eq!(
            redact_message("missing field `role`"),
            "missing field `role`"
        );
    }
}
