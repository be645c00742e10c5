//! Fuzzing the config loader: random YAML and TOML built from the
//! configuration's own keys and values, and raw bytes, must load or fail
//! with an error, never panic; an error about the file's content names
//! its line. Case counts are bounded so this runs in seconds in CI.

use std::collections::BTreeMap;

use groundcrew::config::{Config, ConfigError};
use proptest::prelude::*;

/// Keys and fragments the loader knows, so that random text reaches past
/// the syntax check into key lookup and validation.
const WORDS: &[&str] = &[
    "data_dir",
    "http",
    "bind",
    "metrics_require_token",
    "max_body_bytes",
    "store",
    "pools",
    "background",
    "tokens",
    "token",
    "role",
    "operate",
    "read",
    "retention",
    "artifacts",
    "dir",
    "log",
    "format",
    "json",
    "pretty",
    "shutdown",
    "drain_s",
    "feeds",
    "name",
    "path",
    "feed_poll_ms",
    "kinds",
    "command",
    "pool",
    "env",
    "cancel_grace_s",
    "127.0.0.1:7878",
    "sqlite",
    "-1",
    "0",
    "1",
    "18446744073709551616",
    "1.5",
    "true",
    "null",
    "~",
    "\"\"",
    "[]",
    "{}",
    "ip2asn",
    "csv",
    "x",
    "é",
    "\t",
    "&a",
    "*a",
    "!!str",
    "---",
    "#",
];

fn yaml_text() -> impl Strategy<Value = String> {
    let line = (
        0usize..4,
        prop::sample::select(WORDS),
        prop::sample::select(&[": ", ":", " ", "- ", ": - ", " = ", ""][..]),
        prop::sample::select(WORDS),
    )
        .prop_map(|(indent, key, sep, value)| format!("{}{key}{sep}{value}", "  ".repeat(indent)));
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

/// Loads `text` as file `name`; panics only if the loader panics or an
/// error about the content names no line.
fn load(name: &str, text: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let empty = BTreeMap::<String, String>::new();
    match Config::load(Some(&path), empty) {
        Ok(_) => {}
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            if let ConfigError::Syntax { .. } | ConfigError::UnknownKey { .. } = e {
                let (_, line, _) = e
                    .location()
                    .unwrap_or_else(|| panic!("no position in {shown:?} for {text:?}"));
                assert!(line >= 1, "line {line} in {shown:?}");
                assert!(shown.contains(&format!(":{line}:")), "{shown:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_yaml_loads_or_fails_with_a_line(text in yaml_text()) {
        load("groundcrew.yaml", text.as_bytes());
    }

    #[test]
    fn random_toml_loads_or_fails_with_a_line(text in yaml_text()) {
        load("groundcrew.toml", text.as_bytes());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        load("groundcrew.yaml", &bytes);
        load("groundcrew.toml", &bytes);
    }
}
