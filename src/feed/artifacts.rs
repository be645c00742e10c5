//! Turning a parsed feed into artifact contents, and naming a feed's version.
//!
//! Each entity's artifact is its ranges [aggregated](super::aggregate) and
//! [rendered](super::render); entities are independent of each other, so the
//! work can be split across threads later without changing the result.
//! Writing, hashing and fsyncing the artifacts is the writer's job, not this
//! module's.

use std::collections::BTreeMap;
use std::fmt::Write;

use groundcrew_actors::EntityName;
use sha2::{Digest, Sha256};

use super::{aggregate, render, ParsedFeed};

/// Hex characters of the SHA-256 kept in a [`feed_version`]: 64 bits, plenty
/// to tell feed files apart, short enough to read in a manifest.
const VERSION_LEN: usize = 16;

/// The rendered artifact content of every entity in the feed.
pub fn build_artifacts(feed: &ParsedFeed) -> BTreeMap<EntityName, Vec<u8>> {
    feed.ranges_by_entity
        .iter()
        .map(|(entity, ranges)| (entity.clone(), render(&aggregate(ranges))))
        .collect()
}

/// A stable version id of a feed file's content: the first 16 hex digits of
/// its SHA-256, recorded as the manifest's `source_version`.
///
/// ```
/// let version = groundcrew::feed::feed_version(b"");
/// assert_eq!(version, "e3b0c44298fc1c14");
/// ```
pub fn feed_version(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(VERSION_LEN);
    for byte in &digest[..VERSION_LEN / 2] {
        write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::super::{parse, FeedFormat};
    use super::*;

    #[test]
    fn each_entity_gets_its_aggregated_prefixes() {
        let feed = parse(
            FeedFormat::Ip2asn,
            "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
             1.0.1.0\t1.0.1.255\t13335\tUS\tCLOUDFLARENET\n\
             1.0.2.0\t1.0.2.0\t7\tDE\tX\n\
             2606:4700::\t2606:4700:ffff:ffff:ffff:ffff:ffff:ffff\t13335\tUS\tCLOUDFLARENET\n"
                .as_bytes(),
        )
        .unwrap();
        let artifacts = build_artifacts(&feed);
        let text = |e: &str| String::from_utf8(artifacts[&e.parse().unwrap()].clone()).unwrap();
        assert_eq!(text("asn:13335"), "1.0.0.0/23\n2606:4700::/32\n");
        assert_eq!(text("country:US"), "1.0.0.0/23\n2606:4700::/32\n");
        assert_eq!(text("asn:7"), "1.0.2.0/32\n");
        assert_eq!(text("country:DE"), "1.0.2.0/32\n");
        assert_eq!(artifacts.len(), 4);
    }

    #[test]
    fn feed_version_is_a_stable_16_digit_hex_prefix() {
        let v = feed_version(b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n");
        assert_eq!(v.len(), 16);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            v,
            feed_version(b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n")
        );
        assert_ne!(
            v,
            feed_version(b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET")
        );
    }
}
