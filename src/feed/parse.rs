//! Reading a feed into ranges per entity.
//!
//! [`parse`] reads a feed line by line and files every range under the
//! entities it belongs to: `asn:<n>` for its autonomous system and
//! `country:<CC>` for its country. A line that cannot be read is not an
//! error: it becomes a [`BadLine`] with its 1-based number and a reason that
//! names the offending value, and parsing goes on, so one typo in a feed of
//! half a million lines never stops the other entities from being published.
//! Only failing to read the input at all is a [`FeedError`].
//!
//! # Formats
//!
//! - [`FeedFormat::Ip2asn`], `range_start\trange_end\tAS_number\tcountry_code\tAS_description`,
//!   as published by iptoasn. Exactly five tab-separated fields; the
//!   description is not interpreted (it need not even be UTF-8). AS number 0
//!   means "Not routed" and belongs to no `asn:` entity.
//! - [`FeedFormat::Csv`], `prefix,country,asn`, where the prefix is a CIDR
//!   of either family. A prefix with host bits set (`10.0.0.1/24`) is a bad
//!   line rather than silently widened: it is more likely a typo than intent.
//!   The first record line may be the header `prefix,country,asn`. An empty
//!   country or asn field means none; fields may be padded with spaces.
//!
//! In both, a country code is two ASCII letters (upper-cased on the way in);
//! `None`, `Unknown` and an empty field mean no country. Blank lines and lines
//! starting with `#` are skipped. Line ends may be `\n` or `\r\n`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead};
use std::net::IpAddr;

use groundcrew_actors::EntityName;
use ipnet::IpNet;

use super::{FeedFormat, IpRange};

/// How many [`BadLine`]s a [`ParsedFeed`] keeps; the rest are only counted,
/// so a feed in the wrong format cannot hold a million reasons in memory.
pub const MAX_BAD_LINES: usize = 1000;

/// Longest field value quoted in a [`BadLine`] reason, in characters.
const MAX_QUOTED: usize = 64;

/// A feed read into ranges per entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFeed {
    /// Every entity with at least one range, with its ranges in feed order
    /// (unmerged; see [`aggregate`](super::aggregate)).
    pub ranges_by_entity: BTreeMap<EntityName, Vec<IpRange>>,
    /// The first [`MAX_BAD_LINES`] lines that could not be read.
    pub bad_lines: Vec<BadLine>,
    /// Every line that could not be read, including those not kept in
    /// `bad_lines`.
    pub bad_line_count: u64,
    /// Lines read, including blank, comment and bad lines.
    pub lines: u64,
}

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadLine {
    /// The 1-based line number.
    pub line: u64,
    /// What is wrong, naming the offending value.
    pub reason: String,
}

/// The feed could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The input failed; lines before `line` were read.
    #[error("reading feed failed at line {line}")]
    Read {
        /// The 1-based number of the line being read.
        line: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// One readable line: a range and the entities it belongs to.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    range: IpRange,
    /// `None` for "not routed" (AS 0) or an empty field.
    asn: Option<u32>,
    /// Upper-case ASCII letters.
    country: Option<[u8; 2]>,
}

/// Reads a whole feed; see the module docs (`groundcrew::feed`) for the rules.
///
/// ```
/// use groundcrew::feed::{parse, FeedFormat};
///
/// let feed = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\nbogus\n";
/// let parsed = parse(FeedFormat::Ip2asn, feed.as_bytes()).unwrap();
/// assert_eq!(parsed.ranges_by_entity.len(), 2); // asn:13335, country:US
/// assert_eq!(parsed.bad_lines[0].line, 2);
/// ```
pub fn parse(format: FeedFormat, mut input: impl BufRead) -> Result<ParsedFeed, FeedError> {
    let read_line = match format {
        FeedFormat::Ip2asn => ip2asn_line,
        FeedFormat::Csv => csv_line,
    };
    let mut entities = Entities::default();
    let mut feed = ParsedFeed::default();
    let mut seen_record_line = false;
    // One buffer for the whole feed: half a million lines must not mean half
    // a million allocations.
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let read = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| FeedError::Read {
                line: feed.lines + 1,
                source,
            })?;
        if read == 0 {
            break;
        }
        feed.lines += 1;
        let line = trim_line_end(&buf);
        let content = line.trim_ascii_start();
        if content.is_empty() || content[0] == b'#' {
            continue;
        }
        let first = !seen_record_line;
        seen_record_line = true;
        if first && format == FeedFormat::Csv && line.trim_ascii() == b"prefix,country,asn" {
            continue;
        }
        match read_line(line) {
            Ok(record) => entities.add(record),
            Err(reason) => {
                feed.bad_line_count += 1;
                if feed.bad_lines.len() < MAX_BAD_LINES {
                    feed.bad_lines.push(BadLine {
                        line: feed.lines,
                        reason,
                    });
                }
            }
        }
    }
    feed.ranges_by_entity = entities.into_map();
    Ok(feed)
}

/// Ranges gathered by the raw asn number and country code, so a line costs
/// no entity-name allocation; names are made once per entity at the end.
#[derive(Default)]
struct Entities {
    by_asn: HashMap<u32, Vec<IpRange>>,
    by_country: HashMap<[u8; 2], Vec<IpRange>>,
}

impl Entities {
    fn add(&mut self, record: Record) {
        if let Some(asn) = record.asn {
            self.by_asn.entry(asn).or_default().push(record.range);
        }
        if let Some(country) = record.country {
            self.by_country
                .entry(country)
                .or_default()
                .push(record.range);
        }
    }

    fn into_map(self) -> BTreeMap<EntityName, Vec<IpRange>> {
        // Both names are valid by construction (digits; two ASCII letters),
        // so a failure here is a bug in this module, not in the feed.
        // Shrunk: the catalog keeps these for as long as the reading is in
        // force, and growth by doubling leaves up to half of each unused.
        let asns = self.by_asn.into_iter().map(|(asn, mut ranges)| {
            let name = EntityName::new(&format!("asn:{asn}")).expect("asn entity name");
            ranges.shrink_to_fit();
            (name, ranges)
        });
        let countries = self.by_country.into_iter().map(|([a, b], mut ranges)| {
            let name = EntityName::new(&format!("country:{}{}", a as char, b as char))
                .expect("country entity name");
            ranges.shrink_to_fit();
            (name, ranges)
        });
        asns.chain(countries).collect()
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `range_start\trange_end\tAS_number\tcountry_code\tAS_description`.
fn ip2asn_line(line: &[u8]) -> Result<Record, String> {
    let [start, end, asn, country, _description] = fields(line, b'\t')
        .map_err(|count| format!("expected 5 tab-separated fields, found {count}"))?;
    let start = address(start, "range start")?;
    let end = address(end, "range end")?;
    let range = IpRange::new(start, end).map_err(|e| e.to_string())?;
    Ok(Record {
        range,
        asn: asn_number(asn)?,
        country: country_code(country)?,
    })
}

/// `prefix,country,asn`.
fn csv_line(line: &[u8]) -> Result<Record, String> {
    let [prefix, country, asn] = fields(line, b',')
        .map_err(|count| format!("expected 3 comma-separated fields, found {count}"))?
        .map(<[u8]>::trim_ascii);
    let net: IpNet = std::str::from_utf8(prefix)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("invalid prefix {}: expected address/length", quote(prefix)))?;
    if net.trunc() != net {
        return Err(format!(
            "prefix {net} has host bits set (its network is {})",
            net.trunc()
        ));
    }
    let asn = if asn.is_empty() {
        None
    } else {
        asn_number(asn)?
    };
    Ok(Record {
        range: IpRange::from_net(net),
        asn,
        country: country_code(country)?,
    })
}

/// Splits a line into exactly `N` fields without allocating, or returns how
/// many fields it has.
fn fields<const N: usize>(line: &[u8], separator: u8) -> Result<[&[u8]; N], usize> {
    let mut out = [&line[..0]; N];
    let mut count = 0;
    for field in line.split(|&b| b == separator) {
        if let Some(slot) = out.get_mut(count) {
            *slot = field;
        }
        count += 1;
    }
    if count == N {
        Ok(out)
    } else {
        Err(count)
    }
}

fn address(field: &[u8], what: &str) -> Result<IpAddr, String> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("invalid {what} address {}", quote(field)))
}

/// An AS number; 0 is iptoasn's "Not routed" and names no entity.
fn asn_number(field: &[u8]) -> Result<Option<u32>, String> {
    let asn: u32 = std::str::from_utf8(field)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("invalid AS number {}", quote(field)))?;
    Ok((asn != 0).then_some(asn))
}

fn country_code(field: &[u8]) -> Result<Option<[u8; 2]>, String> {
    match field {
        b"" | b"None" | b"Unknown" => Ok(None),
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Ok(Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
        }
        _ => Err(format!(
            "invalid country code {}: expected 2 letters, None or Unknown",
            quote(field)
        )),
    }
}

/// A field as a quoted, length-capped string for a reason.
fn quote(field: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(field)
        .chars()
        .take(MAX_QUOTED)
        .collect();
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> EntityName {
        s.parse().unwrap()
    }

    fn range(start: &str, end: &str) -> IpRange {
        IpRange::new(start.parse().unwrap(), end.parse().unwrap()).unwrap()
    }

    fn ip2asn(feed: &str) -> ParsedFeed {
        parse(FeedFormat::Ip2asn, feed.as_bytes()).unwrap()
    }

    fn csv(feed: &str) -> ParsedFeed {
        parse(FeedFormat::Csv, feed.as_bytes()).unwrap()
    }

    fn reasons(feed: &ParsedFeed) -> Vec<(u64, &str)> {
        feed.bad_lines
            .iter()
            .map(|b| (b.line, b.reason.as_str()))
            .collect()
    }

    #[test]
    fn ip2asn_range_goes_to_its_asn_and_upper_cased_country() {
        let feed = ip2asn("1.0.0.0\t1.0.0.255\t13335\tus\tCLOUDFLARENET\n");
        let r = vec![range("1.0.0.0", "1.0.0.255")];
        assert_eq!(feed.ranges_by_entity[&name("asn:13335")], r);
        assert_eq!(feed.ranges_by_entity[&name("country:US")], r);
        assert_eq!(feed.ranges_by_entity.len(), 2);
        assert_eq!((feed.lines, feed.bad_line_count), (1, 0));
    }

    #[test]
    fn not_routed_lines_go_nowhere() {
        let feed = ip2asn(
            "0.0.0.0\t0.255.255.255\t0\tNone\tNot routed\n\
             1.0.1.0\t1.0.3.255\t0\tUnknown\tNot routed\n\
             1.0.4.0\t1.0.4.255\t0\t\t\n",
        );
        assert!(feed.ranges_by_entity.is_empty());
        assert_eq!(feed.bad_line_count, 0);
    }

    #[test]
    fn not_routed_range_with_a_country_goes_to_the_country_only() {
        let feed = ip2asn("1.0.4.0\t1.0.4.255\t0\tAU\tNot routed\n");
        let names: Vec<_> = feed.ranges_by_entity.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["country:AU"]);
    }

    #[test]
    fn ipv6_ranges_are_read() {
        let feed = ip2asn("2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE\n");
        let r = vec![range(
            "2001:200::",
            "2001:200:ffff:ffff:ffff:ffff:ffff:ffff",
        )];
        assert_eq!(feed.ranges_by_entity[&name("asn:2500")], r);
        assert_eq!(feed.ranges_by_entity[&name("country:JP")], r);
    }

    #[test]
    fn every_ip2asn_bad_line_kind_is_reported_with_its_line_number() {
        let feed = ip2asn(
            "1.0.0.0\t1.0.0.255\t13335\tUS\tok\n\
             1.0.0.0\t1.0.0.255\t13335\n\
             1.0.0.0\t1.0.0.255\t13335\tUS\tx\textra\n\
             1.0.0.x\t1.0.0.255\t13335\tUS\tx\n\
             1.0.0.0\t1.0.0.300\t13335\tUS\tx\n\
             1.0.0.0\t::ff\t13335\tUS\tx\n\
             1.0.0.9\t1.0.0.1\t13335\tUS\tx\n\
             1.0.0.0\t1.0.0.255\tAS13335\tUS\tx\n\
             1.0.0.0\t1.0.0.255\t4294967296\tUS\tx\n\
             1.0.0.0\t1.0.0.255\t13335\tUSA\tx\n\
             1.0.0.0\t1.0.0.255\t13335\t1A\tx\n",
        );
        assert_eq!(
            reasons(&feed),
            [
                (2, "expected 5 tab-separated fields, found 3"),
                (3, "expected 5 tab-separated fields, found 6"),
                (4, "invalid range start address \"1.0.0.x\""),
                (5, "invalid range end address \"1.0.0.300\""),
                (
                    6,
                    "range start 1.0.0.0 and end ::ff are of different address families"
                ),
                (7, "range start 1.0.0.9 is after its end 1.0.0.1"),
                (8, "invalid AS number \"AS13335\""),
                (9, "invalid AS number \"4294967296\""),
                (
                    10,
                    "invalid country code \"USA\": expected 2 letters, None or Unknown"
                ),
                (
                    11,
                    "invalid country code \"1A\": expected 2 letters, None or Unknown"
                ),
            ]
        );
        assert_eq!(feed.bad_line_count, 10);
        assert_eq!(feed.lines, 11);
        // The good line still counts.
        assert_eq!(feed.ranges_by_entity.len(), 2);
    }

    #[test]
    fn blank_lines_comments_and_crlf_are_not_bad() {
        let feed = ip2asn("# iptoasn\n\n   \n1.0.0.0\t1.0.0.255\t13335\tUS\tx\r\n  # indented\n");
        assert_eq!(feed.bad_line_count, 0);
        assert_eq!(feed.lines, 5);
        assert_eq!(feed.ranges_by_entity.len(), 2);
    }

    #[test]
    fn non_utf8_description_is_not_bad_but_non_utf8_address_is() {
        let mut input = b"1.0.0.0\t1.0.0.255\t1\tUS\tCaf\xe9\n".to_vec();
        input.extend_from_slice(b"1.0.0.\xff\t1.0.0.255\t1\tUS\tx\n");
        let feed = parse(FeedFormat::Ip2asn, &input[..]).unwrap();
        assert_eq!(
            reasons(&feed),
            [(2, "invalid range start address \"1.0.0.\u{fffd}\"")]
        );
    }

    #[test]
    fn bad_lines_beyond_the_cap_are_counted_but_not_kept() {
        let feed = ip2asn(&"garbage\n".repeat(MAX_BAD_LINES + 5));
        assert_eq!(feed.bad_lines.len(), MAX_BAD_LINES);
        assert_eq!(feed.bad_line_count, MAX_BAD_LINES as u64 + 5);
        assert_eq!(feed.bad_lines.last().unwrap().line, MAX_BAD_LINES as u64);
    }

    #[test]
    fn long_values_are_quoted_truncated() {
        let long = "x".repeat(10_000);
        let feed = ip2asn(&format!("{long}\t1.0.0.1\t1\tUS\tx\n"));
        assert!(feed.bad_lines[0].reason.len() < 200);
    }

    #[test]
    fn read_failure_is_an_error_naming_the_line() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let err = parse(FeedFormat::Csv, io::BufReader::new(Failing)).unwrap_err();
        assert_eq!(err.to_string(), "reading feed failed at line 1");
    }

    #[test]
    fn csv_header_is_skipped() {
        let feed = csv("prefix,country,asn\n10.0.0.0/8,de,3320\n");
        assert_eq!(feed.bad_line_count, 0);
        let names: Vec<_> = feed.ranges_by_entity.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["asn:3320", "country:DE"]);
    }

    #[test]
    fn csv_header_after_data_is_a_bad_line() {
        let feed = csv("10.0.0.0/8,DE,3320\nprefix,country,asn\n");
        assert_eq!(
            reasons(&feed),
            [(2, "invalid prefix \"prefix\": expected address/length")]
        );
    }

    #[test]
    fn csv_empty_fields_mean_no_entity() {
        let feed = csv("10.0.0.0/8,,3320\n2001:db8::/32, NL ,\n192.0.2.0/24,,\n");
        assert_eq!(feed.bad_line_count, 0);
        let names: Vec<_> = feed.ranges_by_entity.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["asn:3320", "country:NL"]);
        assert_eq!(
            feed.ranges_by_entity[&name("country:NL")],
            [range(
                "2001:db8::",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
            )]
        );
    }

    #[test]
    fn every_csv_bad_line_kind_is_reported_with_its_line_number() {
        let feed = csv("prefix,country,asn\n\
             10.0.0.0/8,DE\n\
             10.0.0.0/8,DE,1,2\n\
             10.0.0.0,DE,1\n\
             10.0.0.0/33,DE,1\n\
             10.0.0.1/24,DE,1\n\
             10.0.0.0/8,DEU,1\n\
             10.0.0.0/8,DE,one\n");
        assert_eq!(
            reasons(&feed),
            [
                (2, "expected 3 comma-separated fields, found 2"),
                (3, "expected 3 comma-separated fields, found 4"),
                (4, "invalid prefix \"10.0.0.0\": expected address/length"),
                (5, "invalid prefix \"10.0.0.0/33\": expected address/length"),
                (
                    6,
                    "prefix 10.0.0.1/24 has host bits set (its network is 10.0.0.0/24)"
                ),
                (
                    7,
                    "invalid country code \"DEU\": expected 2 letters, None or Unknown"
                ),
                (8, "invalid AS number \"one\""),
            ]
        );
    }
}
