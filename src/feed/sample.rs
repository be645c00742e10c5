//! Synthetic ip2asn feeds: a generator for tests and benches, and the small
//! feed the daemon ships as its default.
//!
//! [`generate_ip2asn`] imitates the shape of the real iptoasn data rather
//! than its content: increasing, non-overlapping IPv4 ranges (aligned blocks
//! mostly, some unaligned, often back to back) followed by IPv6 ranges, about
//! 40 countries with a skew towards a few large ones, one AS per six lines
//! (the real feed has ~500k lines and ~75k ASes) with a skew towards a few
//! large ones, consecutive lines often sharing an AS, and a few percent of
//! AS 0 "Not routed" lines. The same `(lines, seed)` always gives the same
//! text, so a bench or test failure can be reproduced.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A small synthetic ip2asn feed (about 200 lines), embedded in the daemon
/// as its default feed. Made by [`generate_ip2asn`]; not real routing data.
pub const SAMPLE_FEED: &str = include_str!("../../config/sample-feed.tsv");

const COUNTRIES: [&str; 40] = [
    "US", "CN", "JP", "DE", "GB", "KR", "BR", "FR", "CA", "IT", "AU", "NL", "RU", "IN", "TW", "ES",
    "SE", "MX", "PL", "ZA", "AR", "CH", "ID", "TR", "UA", "VN", "IR", "BE", "CZ", "NO", "AT", "FI",
    "DK", "RO", "SG", "HK", "IL", "CL", "NZ", "IE",
];

const NAME_HEADS: [&str; 12] = [
    "NORD", "FIBER", "TELE", "CLOUD", "METRO", "STAR", "BLUE", "WAVE", "DATA", "CITY", "ALPHA",
    "OPEN",
];
const NAME_TAILS: [&str; 8] = ["NET", "LINK", "COM", "HOST", "TEL", "CAST", "WEB", "IX"];

/// How one family's ranges are laid out.
struct Layout {
    /// First address used.
    first: u128,
    /// One past the last address used.
    limit: u128,
    /// Block sizes are 2^min_log to 2^max_log addresses (fewer when the line
    /// count leaves each line less room).
    min_log: u32,
    max_log: u32,
    /// Percent of ranges that are not aligned blocks.
    unaligned_percent: u64,
}

/// IPv4 from 1.0.0.0 up to the multicast block, /20 to /24 blocks.
const V4: Layout = Layout {
    first: 0x0100_0000,
    limit: 0xE000_0000,
    min_log: 8,
    max_log: 12,
    unaligned_percent: 20,
};

/// IPv6 across today's global unicast allocations (2001::/16 to 2c0f::/16),
/// /32 to /48 blocks.
const V6: Layout = Layout {
    first: 0x2001_0200 << 96,
    limit: 0x2c10 << 112,
    min_log: 80,
    max_log: 96,
    unaligned_percent: 0,
};

/// A deterministic ip2asn feed of exactly `lines` lines shaped like the
/// real iptoasn data: increasing, non-overlapping IPv4 ranges then IPv6
/// ones, about 40 countries, one AS per six lines, a few percent of AS 0
/// "Not routed" lines. The same `(lines, seed)` always gives the same text.
///
/// ```
/// let feed = groundcrew::feed::generate_ip2asn(3, 42);
/// assert_eq!(feed.lines().count(), 3);
/// ```
pub fn generate_ip2asn(lines: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    let ases = AsPool::new(lines.div_ceil(6).clamp(8, 80_000), &mut rng);
    let v6_lines = lines / 12;
    let mut out = String::with_capacity(lines * 48);
    let mut writer = LineWriter {
        out: &mut out,
        ases: &ases,
        current_as: 0,
    };
    // Ranges get their own random stream so the iterator and the line
    // writer need not share one.
    let mut layout_rng = SplitMix64(rng.next());
    for (start, end) in V4.ranges(lines - v6_lines, &mut layout_rng) {
        let (start, end) = (Ipv4Addr::from(start as u32), Ipv4Addr::from(end as u32));
        writer.write(start, end, &mut rng);
    }
    for (start, end) in V6.ranges(v6_lines, &mut layout_rng) {
        writer.write(Ipv6Addr::from(start), Ipv6Addr::from(end), &mut rng);
    }
    out
}

impl Layout {
    /// `count` increasing, non-overlapping inclusive ranges.
    ///
    /// Each range takes at most three quarters of an equal share of the
    /// space (block size, alignment waste and gap are each under a quarter),
    /// so the ranges never run past `limit` for any line count a machine can
    /// hold.
    fn ranges<'a>(
        &'a self,
        count: usize,
        rng: &'a mut SplitMix64,
    ) -> impl Iterator<Item = (u128, u128)> + 'a {
        let share = ((self.limit - self.first) / (count.max(1) as u128)).max(1);
        let quarter = (share / 4).max(1);
        let max_log = (u128::BITS - 1 - quarter.leading_zeros()).min(self.max_log);
        let min_log = self.min_log.min(max_log);
        let mut cursor = self.first;
        (0..count).map(move |_| {
            let size_log = min_log + rng.below(u64::from(max_log - min_log) + 1) as u32;
            let size = 1u128 << size_log;
            let (start, len) = if rng.percent(self.unaligned_percent) {
                // As when a registry splits a block between two holders.
                (cursor + rng.below_u128(size), 1 + rng.below_u128(size))
            } else {
                (cursor.div_ceil(size) * size, size)
            };
            let end = start + len - 1;
            let gap = if rng.percent(60) {
                0
            } else {
                rng.below_u128(quarter)
            };
            cursor = end + 1 + gap;
            (start, end)
        })
    }
}

/// The autonomous systems a feed draws from, each with a home country.
struct AsPool {
    /// `(AS number, index into COUNTRIES)`.
    ases: Vec<(u32, usize)>,
}

impl AsPool {
    fn new(count: usize, rng: &mut SplitMix64) -> Self {
        let ases = (0..count)
            .map(|i| {
                // Unique, increasing, and reaching past 65535 into 32-bit
                // AS numbers as real feeds do.
                let number = 1 + 3 * i as u32 + rng.below(3) as u32;
                (number, rng.skewed(COUNTRIES.len()))
            })
            .collect();
        Self { ases }
    }
}

/// Appends lines to the feed text.
struct LineWriter<'a> {
    out: &'a mut String,
    ases: &'a AsPool,
    /// Index of the AS of the previous line: neighbours often share one.
    current_as: usize,
}

impl LineWriter<'_> {
    fn write(
        &mut self,
        start: impl std::fmt::Display,
        end: impl std::fmt::Display,
        rng: &mut SplitMix64,
    ) {
        // Writing to a String cannot fail.
        if rng.percent(3) {
            let _ = writeln!(self.out, "{start}\t{end}\t0\tNone\tNot routed");
            return;
        }
        if !rng.percent(30) {
            self.current_as = rng.skewed(self.ases.ases.len());
        }
        let (asn, home) = self.ases.ases[self.current_as];
        let country = if rng.percent(1) {
            "Unknown"
        } else if rng.percent(5) {
            COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize]
        } else {
            COUNTRIES[home]
        };
        let head = NAME_HEADS[asn as usize % NAME_HEADS.len()];
        let tail = NAME_TAILS[asn as usize / NAME_HEADS.len() % NAME_TAILS.len()];
        let _ = writeln!(
            self.out,
            "{start}\t{end}\t{asn}\t{country}\t{head}{tail}-AS{asn}"
        );
    }
}

/// Vigna's SplitMix64: tiny, fast and good enough to shape test data,
/// without a dependency on `rand` for one generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn below_u128(&mut self, n: u128) -> u128 {
        ((u128::from(self.next()) << 64) | u128::from(self.next())) % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// An index in `0..n` favouring small ones (squared uniform), so a few
    /// countries and ASes hold most ranges, as in the real feed.
    fn skewed(&mut self, n: usize) -> usize {
        let r = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((r * r * n as f64) as usize).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{parse, FeedFormat};
    use super::*;

    #[test]
    fn generated_feed_parses_cleanly_with_the_requested_line_count() {
        for lines in [0, 1, 12, 10_000] {
            let text = generate_ip2asn(lines, 1);
            let feed = parse(FeedFormat::Ip2asn, text.as_bytes()).unwrap();
            assert_eq!(feed.lines, lines as u64);
            assert_eq!(feed.bad_line_count, 0, "{:?}", feed.bad_lines);
        }
    }

    #[test]
    fn generated_ranges_increase_without_overlap_in_each_family() {
        let text = generate_ip2asn(20_000, 9);
        let mut previous: Option<(std::net::IpAddr, std::net::IpAddr)> = None;
        let mut families = BTreeSet::new();
        for line in text.lines() {
            let mut fields = line.split('\t');
            let start: std::net::IpAddr = fields.next().unwrap().parse().unwrap();
            let end: std::net::IpAddr = fields.next().unwrap().parse().unwrap();
            families.insert(start.is_ipv4());
            if let Some((_, prev_end)) = previous {
                assert!(prev_end < start, "{line} overlaps or precedes {prev_end}");
            }
            previous = Some((start, end));
        }
        assert_eq!(families.len(), 2, "both IPv4 and IPv6 ranges");
    }

    #[test]
    fn generated_feed_has_countries_ases_and_not_routed_lines() {
        let text = generate_ip2asn(20_000, 5);
        let feed = parse(FeedFormat::Ip2asn, text.as_bytes()).unwrap();
        let count = |class: &str| {
            feed.ranges_by_entity
                .keys()
                .filter(|e| e.class() == class)
                .count()
        };
        assert!(
            (30..=40).contains(&count("country")),
            "{}",
            count("country")
        );
        assert!(count("asn") > 1_000, "{}", count("asn"));
        assert!(text.contains("\t0\tNone\tNot routed\n"));
    }

    #[test]
    fn same_seed_gives_the_same_feed() {
        assert_eq!(generate_ip2asn(500, 3), generate_ip2asn(500, 3));
        assert_ne!(generate_ip2asn(500, 3), generate_ip2asn(500, 4));
    }

    #[test]
    fn sample_feed_parses_cleanly() {
        let feed = parse(FeedFormat::Ip2asn, SAMPLE_FEED.as_bytes()).unwrap();
        assert_eq!(feed.bad_line_count, 0, "{:?}", feed.bad_lines);
        assert!(feed.lines >= 200);
        assert!(feed.ranges_by_entity.len() > 20);
    }
}
