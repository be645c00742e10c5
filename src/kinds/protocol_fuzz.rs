//! Fuzzing the JSON-lines command protocol parser: random lines built from
//! the protocol's keys and values, and raw text, parse to a message, a
//! blank or a line problem with a message, never a panic. Unit-level
//! because the parser is private; case counts are bounded for CI.

use proptest::prelude::*;

use super::protocol::parse;

const KEYS: &[&str] = &[
    "stage", "progress", "publish", "result", "entity", "path", "done", "total", "x", "",
];
const VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    "1e400",
    "18446744073709551616",
    "\"\"",
    "\"a\"",
    "\"country:DE\"",
    "\"../etc\"",
    "[]",
    "{}",
    "[1,2]",
    "\"\\u0000\"",
];

fn value(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop::sample::select(VALUES).prop_map(str::to_owned);
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![leaf, object(depth - 1)].boxed()
}

fn object(depth: u32) -> BoxedStrategy<String> {
    prop::collection::vec((prop::sample::select(KEYS), value(depth)), 0..4)
        .prop_map(|entries| {
            let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", body.join(","))
        })
        .boxed()
}

fn check(line: &str) {
    if let Err(problem) = parse(line) {
        assert!(!problem.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_protocol_objects_never_panic(line in object(2)) {
        check(&line);
    }

    #[test]
    fn random_text_never_panics(line in "\\PC{0,80}") {
        check(&line);
    }
}
