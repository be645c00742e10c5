//! IP-range feeds turned into one artifact per entity.
//!
//! A feed maps ranges of IP addresses to autonomous systems and countries.
//! This module is the pure data layer behind the daemon's feed task: no
//! actors, no I/O beyond the reader it is handed, no store.
//!
//! ```text
//!  feed bytes ──parse──▶ ParsedFeed ──build_artifacts──▶ entity → content
//!   (ip2asn/csv)          ranges per entity               (aggregate + render)
//!                         + bad lines                          │
//!                                          old contents ──changed_entities──▶ FeedDiff
//! ```
//!
//! - [`parse`] reads [`FeedFormat::Ip2asn`] or [`FeedFormat::Csv`] and files
//!   each range under `asn:<n>` and `country:<CC>`; unreadable lines are
//!   reported as [`BadLine`]s, never dropped silently, never fatal.
//! - [`aggregate`] merges an entity's ranges into the minimal sorted CIDR
//!   list; [`render`] writes it one per line. [`build_artifacts`] does both
//!   for every entity.
//! - [`changed_entities`] compares two builds so a feed update refreshes
//!   only the entities whose content changed.
//! - [`feed_version`] names a feed file's content for the manifest.
//! - [`generate_ip2asn`] and [`SAMPLE_FEED`] provide synthetic feeds.
//!
//! # Example
//!
//! ```
//! use groundcrew::feed::{build_artifacts, parse, FeedFormat};
//!
//! let csv = "prefix,country,asn\n192.0.2.0/25,NL,64500\n192.0.2.128/25,NL,64501\n";
//! let feed = parse(FeedFormat::Csv, csv.as_bytes()).unwrap();
//! let artifacts = build_artifacts(&feed);
//! assert_eq!(artifacts[&"country:NL".parse().unwrap()], b"192.0.2.0/24\n");
//! assert_eq!(artifacts[&"asn:64500".parse().unwrap()], b"192.0.2.0/25\n");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod aggregate;
mod artifacts;
mod diff;
mod parse;
mod range;
mod sample;

pub use aggregate::{aggregate, render};
pub use artifacts::{build_artifacts, feed_version};
pub use diff::{changed_entities, FeedDiff};
pub use parse::{parse, BadLine, FeedError, ParsedFeed, MAX_BAD_LINES};
pub use range::{IpRange, RangeError};
pub use sample::{generate_ip2asn, SAMPLE_FEED};

/// The text format of a feed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedFormat {
    /// iptoasn's TSV: `range_start\trange_end\tAS_number\tcountry_code\tAS_description`.
    Ip2asn,
    /// `prefix,country,asn`, with an optional header line.
    Csv,
}

/// A feed format name other than `ip2asn` or `csv`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feed format {name:?}: expected ip2asn or csv")]
pub struct FeedFormatError {
    /// The rejected name.
    pub name: String,
}

impl FeedFormat {
    /// The name used in config files and the API: `ip2asn` or `csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedFormat::Ip2asn => "ip2asn",
            FeedFormat::Csv => "csv",
        }
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeedFormat {
    type Err = FeedFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ip2asn" => Ok(FeedFormat::Ip2asn),
            "csv" => Ok(FeedFormat::Csv),
            _ => Err(FeedFormatError { name: s.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip_through_str_and_json() {
        for format in [FeedFormat::Ip2asn, FeedFormat::Csv] {
            assert_eq!(format.to_string().parse::<FeedFormat>().unwrap(), format);
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{format}\""));
            assert_eq!(serde_json::from_str::<FeedFormat>(&json).unwrap(), format);
        }
        let err = "xml".parse::<FeedFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown feed format \"xml\": expected ip2asn or csv"
        );
    }
}
