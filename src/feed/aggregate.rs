//! Merging an entity's ranges into the minimal list of CIDRs, and rendering it.
//!
//! The artifact for an entity must depend only on the set of addresses it
//! covers, never on how the feed happened to slice them: a range split over
//! two lines, listed twice, or reordered must render to the same bytes. That
//! is what lets [`changed_entities`](super::changed_entities) compare content
//! and refresh only what really changed. So [`aggregate`] sorts (IPv4 before
//! IPv6, then by address), merges overlapping and adjacent ranges, and cuts
//! each merged range into the fewest CIDRs that cover exactly it; [`render`]
//! writes one per line.
//!
//! `ipnet` only merges CIDRs, not arbitrary ranges, so the merge is done here
//! on integers; cutting a merged range into CIDRs is `ipnet`'s
//! [`Ipv4Subnets`] / [`Ipv6Subnets`].

use std::io::Write;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv4Subnets, Ipv6Subnets};

use super::IpRange;

/// The minimal sorted list of CIDRs covering exactly the addresses in `ranges`.
///
/// ```
/// use groundcrew::feed::{aggregate, IpRange};
///
/// let range = |a: &str, b: &str| IpRange::new(a.parse().unwrap(), b.parse().unwrap()).unwrap();
/// let nets = aggregate(&[range("1.0.0.128", "1.0.0.255"), range("1.0.0.0", "1.0.0.127")]);
/// assert_eq!(nets, ["1.0.0.0/24".parse().unwrap()]);
/// ```
pub fn aggregate(ranges: &[IpRange]) -> Vec<IpNet> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for range in ranges {
        match (range.start(), range.end()) {
            (IpAddr::V4(s), IpAddr::V4(e)) => v4.push((u32::from(s), u32::from(e))),
            (IpAddr::V6(s), IpAddr::V6(e)) => v6.push((u128::from(s), u128::from(e))),
            _ => unreachable!("IpRange::new admits only one family per range"),
        }
    }
    let mut nets = Vec::with_capacity(ranges.len());
    for (start, end) in merge(v4, |a| a.checked_add(1)) {
        nets.extend(Ipv4Subnets::new(start.into(), end.into(), 0).map(IpNet::V4));
    }
    for (start, end) in merge(v6, |a| a.checked_add(1)) {
        nets.extend(Ipv6Subnets::new(start.into(), end.into(), 0).map(IpNet::V6));
    }
    nets
}

/// Sorts inclusive intervals and merges those that overlap or touch.
///
/// `successor` is `None` at the top of the address space, where nothing can
/// follow and so nothing can be adjacent.
fn merge<T: Ord + Copy>(mut intervals: Vec<(T, T)>, successor: fn(T) -> Option<T>) -> Vec<(T, T)> {
    // Feeds are mostly sorted already, which the pattern-defeating sort
    // notices, so this is close to linear in practice.
    intervals.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        if let Some((_, last_end)) = merged.last_mut() {
            // Touching: `start` is at most one past the current end.
            if successor(*last_end).is_none_or(|next| start <= next) {
                *last_end = (*last_end).max(end);
                continue;
            }
        }
        merged.push((start, end));
    }
    merged
}

/// The artifact content: one CIDR per line, each ending in `\n`.
///
/// ```
/// let nets = ["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()];
/// assert_eq!(groundcrew::feed::render(&nets), b"10.0.0.0/8\n2001:db8::/32\n");
/// ```
pub fn render(nets: &[IpNet]) -> Vec<u8> {
    // "2001:db8:ffff:ffff:ffff:ffff:ffff:ff00/120\n" is 43 bytes; most
    // lines are far shorter, so this rarely grows and never by much.
    let mut out = Vec::with_capacity(nets.len() * 20);
    for net in nets {
        match net {
            IpNet::V4(net) => push_ipv4_net(&mut out, net),
            IpNet::V6(net) => writeln!(out, "{net}").expect("writing to a Vec cannot fail"),
        }
    }
    out
}

/// Writes `a.b.c.d/len\n`, byte for byte what `Display` writes.
///
/// Rendering is the larger part of a full rebuild and IPv4 prefixes the
/// bulk of it; formatting machinery made it several times slower than these
/// few pushes.
fn push_ipv4_net(out: &mut Vec<u8>, net: &Ipv4Net) {
    let [a, b, c, d] = net.addr().octets();
    for (octet, separator) in [(a, b'.'), (b, b'.'), (c, b'.'), (d, b'/')] {
        push_decimal(out, octet);
        out.push(separator);
    }
    push_decimal(out, net.prefix_len());
    out.push(b'\n');
}

fn push_decimal(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn range(start: &str, end: &str) -> IpRange {
        IpRange::new(start.parse().unwrap(), end.parse().unwrap()).unwrap()
    }

    fn nets(list: &[IpNet]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn aligned_range_becomes_one_prefix() {
        assert_eq!(
            nets(&aggregate(&[range("1.0.0.0", "1.0.0.255")])),
            ["1.0.0.0/24"]
        );
    }

    #[test]
    fn unaligned_range_becomes_the_fewest_prefixes() {
        assert_eq!(
            nets(&aggregate(&[range("1.0.0.1", "1.0.0.6")])),
            ["1.0.0.1/32", "1.0.0.2/31", "1.0.0.4/31", "1.0.0.6/32"]
        );
    }

    #[test]
    fn adjacent_ranges_merge() {
        let merged = aggregate(&[
            range("10.0.1.0", "10.0.1.255"),
            range("10.0.0.0", "10.0.0.255"),
        ]);
        assert_eq!(nets(&merged), ["10.0.0.0/23"]);
    }

    #[test]
    fn overlapping_and_contained_ranges_merge() {
        let merged = aggregate(&[
            range("10.0.0.0", "10.0.0.200"),
            range("10.0.0.100", "10.0.0.255"),
            range("10.0.0.10", "10.0.0.20"),
            range("10.0.0.0", "10.0.0.255"),
        ]);
        assert_eq!(nets(&merged), ["10.0.0.0/24"]);
    }

    #[test]
    fn gap_keeps_ranges_apart() {
        let merged = aggregate(&[
            range("10.0.0.0", "10.0.0.127"),
            range("10.0.0.129", "10.0.0.255"),
        ]);
        assert_eq!(
            nets(&merged),
            [
                "10.0.0.0/25",
                "10.0.0.129/32",
                "10.0.0.130/31",
                "10.0.0.132/30",
                "10.0.0.136/29",
                "10.0.0.144/28",
                "10.0.0.160/27",
                "10.0.0.192/26"
            ]
        );
    }

    #[test]
    fn ipv4_sorts_before_ipv6_and_families_never_merge() {
        let merged = aggregate(&[
            range("2001:db8::", "2001:db8::ffff"),
            range("255.255.255.255", "255.255.255.255"),
            range("::", "::"),
            range("0.0.0.0", "0.0.0.0"),
        ]);
        assert_eq!(
            nets(&merged),
            [
                "0.0.0.0/32",
                "255.255.255.255/32",
                "::/128",
                "2001:db8::/112"
            ]
        );
    }

    #[test]
    fn whole_address_space_is_one_prefix_per_family() {
        let merged = aggregate(&[
            range("0.0.0.0", "127.255.255.255"),
            range("128.0.0.0", "255.255.255.255"),
            range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ]);
        assert_eq!(nets(&merged), ["0.0.0.0/0", "::/0"]);
    }

    #[test]
    fn no_ranges_render_empty() {
        assert!(aggregate(&[]).is_empty());
        assert!(render(&[]).is_empty());
    }

    #[test]
    fn render_writes_one_newline_terminated_prefix_per_line() {
        let out = render(&aggregate(&[
            range("1.0.0.1", "1.0.0.2"),
            range("2001:db8::", "2001:db8::1"),
        ]));
        assert_eq!(out, b"1.0.0.1/32\n1.0.0.2/32\n2001:db8::/127\n");
    }

    #[test]
    fn ipv4_render_matches_display() {
        for octet in [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255] {
            for len in [0u8, 8, 9, 10, 24, 31, 32] {
                let net = IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::new(octet, 255 - octet, octet / 3, 7), len).unwrap(),
                );
                assert_eq!(render(&[net]), format!("{net}\n").into_bytes());
            }
        }
    }

    /// The minimal cover computed the slow way: walk every address, and at
    /// each take the largest aligned block that lies wholly in the set.
    fn brute_force(addresses: &BTreeSet<u128>, bits: u32) -> Vec<(u128, u32)> {
        let mut out = Vec::new();
        let mut iter = addresses.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut size_log = 0;
            while size_log < bits
                && start.trailing_zeros() > size_log
                && start
                    .checked_add((2u128 << size_log) - 1)
                    .is_some_and(|end| (start..=end).all(|a| addresses.contains(&a)))
            {
                size_log += 1;
            }
            for _ in 1..(1u128 << size_log) {
                iter.next();
            }
            out.push((start, bits - size_log));
        }
        out
    }

    /// Small ranges near the interesting places: the bottom and top of each
    /// family's address space and somewhere in the middle.
    fn small_ranges(bits: u32) -> impl Strategy<Value = (u128, Vec<(u128, u128)>)> {
        let top = if bits == 32 {
            u128::from(u32::MAX) - 95
        } else {
            u128::MAX - 95
        };
        let base = prop_oneof![Just(0u128), Just(0x0a00_0000u128 << (bits - 32)), Just(top)];
        let ranges = prop::collection::vec((0u128..96, 0u128..12), 0..8).prop_map(|v| {
            v.into_iter()
                .map(|(s, len)| (s, (s + len).min(95)))
                .collect()
        });
        (base, ranges)
    }

    fn check(bits: u32, base: u128, offsets: &[(u128, u128)]) {
        let to_ip = |a: u128| -> IpAddr {
            if bits == 32 {
                Ipv4Addr::from(a as u32).into()
            } else {
                Ipv6Addr::from(a).into()
            }
        };
        let ranges: Vec<IpRange> = offsets
            .iter()
            .map(|&(s, e)| IpRange::new(to_ip(base + s), to_ip(base + e)).unwrap())
            .collect();
        let addresses: BTreeSet<u128> = offsets
            .iter()
            .flat_map(|&(s, e)| (base + s)..=(base + e))
            .collect();
        let expected: Vec<IpNet> = brute_force(&addresses, bits)
            .into_iter()
            .map(|(start, len)| IpNet::new(to_ip(start), len as u8).unwrap())
            .collect();
        assert_eq!(aggregate(&ranges), expected, "ranges {ranges:?}");
    }

    proptest! {
        #[test]
        fn ipv4_aggregation_matches_brute_force((base, offsets) in small_ranges(32)) {
            check(32, base, &offsets);
        }

        #[test]
        fn ipv6_aggregation_matches_brute_force((base, offsets) in small_ranges(128)) {
            check(128, base, &offsets);
        }
    }
}
