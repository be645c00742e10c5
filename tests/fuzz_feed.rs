//! Fuzzing the feed parsers: random lines built from the formats' own
//! fields, and raw bytes, always parse (bad lines counted and numbered,
//! never a panic). Case counts are bounded so this runs in seconds in CI.

use groundcrew::feed::{parse, FeedFormat};
use proptest::prelude::*;

const FIELDS: &[&str] = &[
    "1.0.0.0",
    "1.0.0.255",
    "255.255.255.255",
    "0.0.0.0",
    "::",
    "2001:db8::",
    "2001:db8::ffff",
    "10.0.0.0/8",
    "::/0",
    "1.2.3.4/33",
    "13335",
    "0",
    "4294967296",
    "-1",
    "US",
    "de",
    "None",
    "ZZ",
    "",
    " ",
    "x",
    "é",
    "prefix",
    "country",
    "asn",
    "#",
    "\"",
    "1.2.3",
    "999.0.0.0",
];

fn feed_text(separator: &'static str) -> impl Strategy<Value = String> {
    let line = prop::collection::vec(prop::sample::select(FIELDS), 0..7)
        .prop_map(move |fields| fields.join(separator));
    let ending = prop::sample::select(&["\n", "\r\n", ""][..]);
    prop::collection::vec((line, ending), 0..40).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(line, end)| line + if end.is_empty() { "\n" } else { end })
            .collect()
    })
}

fn check(format: FeedFormat, input: &[u8]) {
    let parsed = parse(format, input).expect("reading from memory cannot fail");
    assert!(parsed.bad_line_count >= parsed.bad_lines.len() as u64);
    assert!(parsed.bad_line_count <= parsed.lines);
    for bad in &parsed.bad_lines {
        assert!(bad.line >= 1 && bad.line <= parsed.lines, "{bad:?}");
        assert!(!bad.reason.is_empty());
    }
    for ranges in parsed.ranges_by_entity.values() {
        assert!(!ranges.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_ip2asn_lines_parse(text in feed_text("\t")) {
        check(FeedFormat::Ip2asn, text.as_bytes());
    }

    #[test]
    fn random_csv_lines_parse(text in feed_text(",")) {
        check(FeedFormat::Csv, text.as_bytes());
    }

    #[test]
    fn random_bytes_parse_in_both_formats(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(FeedFormat::Ip2asn, &bytes);
        check(FeedFormat::Csv, &bytes);
    }
}
