//! The [`Catalog`]: what every entity's artifact should contain, given the
//! feeds as last read. Each feed contributes ranges per entity; an entity's
//! artifact is the aggregate of its ranges across all feeds. Replacing one
//! feed recomputes only the entities whose ranges in that feed changed, and
//! reports which artifacts now differ.
//!
//! The catalog keeps each entity's expected hash and size, not its bytes:
//! [`Catalog::render`] makes the content again from the ranges when it is
//! published. The ranges are kept anyway (to tell what a new reading
//! changed), and all artifacts' bytes together are as large again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use groundcrew_actors::{content_hash, EntityName, Timestamp};
use serde::Serialize;

use crate::feed::{aggregate, render, BadLine, FeedDiff, IpRange, ParsedFeed};

/// How many bad lines of a feed are kept for operators to see.
const BAD_LINES_SHOWN: usize = 20;

/// An entity's expected artifact: what its content hashes to.
#[derive(Debug, PartialEq, Eq)]
pub struct Expected {
    /// The content's SHA-256, lowercase hex, as the manifest records it.
    pub hash: String,
    /// The content's length in bytes.
    pub size: u64,
}

impl Expected {
    /// The expected artifact with `content`.
    pub fn of(content: &[u8]) -> Self {
        Self {
            hash: content_hash(content),
            size: content.len() as u64,
        }
    }
}

/// What operators see of one feed.
#[derive(Clone, Debug, Serialize)]
pub struct FeedStatus {
    /// Feed name.
    pub name: String,
    /// Version of the content last read (a hash prefix), if any was read.
    pub version: Option<String>,
    /// When it was last read.
    pub loaded_at: Option<Timestamp>,
    /// Lines in the file.
    pub lines: u64,
    /// Lines that could not be read.
    pub bad_line_count: u64,
    /// The first of them, with line numbers.
    pub bad_lines: Vec<BadLine>,
    /// Entities it contributes to.
    pub entities: usize,
    /// Whether the feed is marked healthy.
    pub healthy: bool,
    /// Why the last read failed, if it did (the previous content stays).
    pub error: Option<String>,
    /// Why the feed's guard refused the last reading, if it did: the
    /// previous content stays in force, the feed shows as unhealthy, and
    /// `POST /api/v1/feeds/{name}/accept` puts the reading in force.
    pub refused: Option<String>,
}

#[derive(Debug, Default)]
struct Feed {
    ranges: BTreeMap<EntityName, Vec<IpRange>>,
    status: Option<FeedStatus>,
}

/// Expected artifacts of every entity, from every feed.
#[derive(Debug, Default)]
pub struct Catalog {
    feeds: BTreeMap<String, Feed>,
    expected: BTreeMap<EntityName, Arc<Expected>>,
}

impl Catalog {
    /// Replaces a feed's content with a new reading; returns the entities
    /// whose artifact changed or disappeared.
    pub fn replace(&mut self, name: &str, parsed: ParsedFeed, version: String) -> FeedDiff {
        let healthy = self.is_healthy(name);
        let feed = self.feeds.entry(name.to_owned()).or_default();
        let mut touched: BTreeSet<EntityName> = BTreeSet::new();
        for (entity, ranges) in &feed.ranges {
            if parsed.ranges_by_entity.get(entity) != Some(ranges) {
                touched.insert(entity.clone());
            }
        }
        for entity in parsed.ranges_by_entity.keys() {
            if !feed.ranges.contains_key(entity) {
                touched.insert(entity.clone());
            }
        }
        feed.status = Some(FeedStatus {
            name: name.to_owned(),
            version: Some(version),
            loaded_at: Some(Timestamp::now()),
            lines: parsed.lines,
            bad_line_count: parsed.bad_line_count,
            bad_lines: parsed.bad_lines.into_iter().take(BAD_LINES_SHOWN).collect(),
            entities: parsed.ranges_by_entity.len(),
            healthy,
            error: None,
            refused: None,
        });
        feed.ranges = parsed.ranges_by_entity;
        self.recompute(touched)
    }

    /// Drops a feed (no longer configured); returns what that changes.
    pub fn remove(&mut self, name: &str) -> FeedDiff {
        let Some(feed) = self.feeds.remove(name) else {
            return FeedDiff::default();
        };
        self.recompute(feed.ranges.into_keys().collect())
    }

    /// Records that reading a feed failed; its previous content stays.
    pub fn record_error(&mut self, name: &str, error: String) {
        let feed = self.feeds.entry(name.to_owned()).or_default();
        let status = feed.status.get_or_insert_with(|| FeedStatus {
            name: name.to_owned(),
            version: None,
            loaded_at: None,
            lines: 0,
            bad_line_count: 0,
            bad_lines: Vec::new(),
            entities: 0,
            healthy: true,
            error: None,
            refused: None,
        });
        status.error = Some(error);
    }

    /// Records that the feed's guard refused a reading; its previous
    /// content stays in force.
    pub fn record_refusal(&mut self, name: &str, reason: String) {
        self.record_error(name, reason.clone());
        if let Some(status) = self.feeds.get_mut(name).and_then(|f| f.status.as_mut()) {
            status.refused = Some(reason);
        }
    }

    /// Why the last reading of a feed was refused, if it was.
    pub fn refusal(&self, name: &str) -> Option<&str> {
        self.feeds.get(name)?.status.as_ref()?.refused.as_deref()
    }

    /// Marks a feed healthy or not; returns the previous value (`None` for
    /// an unknown feed).
    pub fn set_health(&mut self, name: &str, healthy: bool) -> Option<bool> {
        let status = self.feeds.get_mut(name)?.status.as_mut()?;
        Some(std::mem::replace(&mut status.healthy, healthy))
    }

    /// Whether a feed has been read successfully at least once.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.feeds
            .get(name)
            .and_then(|f| f.status.as_ref())
            .is_some_and(|s| s.version.is_some())
    }

    /// Whether a feed is healthy (an unknown feed counts as healthy).
    pub fn is_healthy(&self, name: &str) -> bool {
        self.feeds
            .get(name)
            .and_then(|f| f.status.as_ref())
            .is_none_or(|s| s.healthy)
    }

    /// The expected artifact of an entity; `None` when no feed has it.
    pub fn expected(&self, entity: &EntityName) -> Option<Arc<Expected>> {
        self.expected.get(entity).cloned()
    }

    /// The expected content of an entity, made from its ranges in every
    /// feed (what [`Catalog::expected`] hashes); `None` when no feed has it.
    pub fn render(&self, entity: &EntityName) -> Option<Vec<u8>> {
        self.expected.contains_key(entity).then(|| {
            let ranges = self.ranges_of(entity);
            render(&aggregate(&ranges))
        })
    }

    fn ranges_of(&self, entity: &EntityName) -> Vec<IpRange> {
        self.feeds
            .values()
            .filter_map(|f| f.ranges.get(entity))
            .flatten()
            .copied()
            .collect()
    }

    /// Every entity with an expected artifact, sorted.
    pub fn all(&self) -> Vec<(EntityName, Arc<Expected>)> {
        self.expected
            .iter()
            .map(|(e, x)| (e.clone(), Arc::clone(x)))
            .collect()
    }

    /// The entities one feed contributes to.
    pub fn entities_of(&self, name: &str) -> Vec<EntityName> {
        self.feeds
            .get(name)
            .map(|f| f.ranges.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a feed of that name is known.
    pub fn has_feed(&self, name: &str) -> bool {
        self.feeds.contains_key(name)
    }

    /// The version of all feeds together, as recorded with artifacts:
    /// `name@version` per feed, comma-separated.
    pub fn version(&self) -> String {
        self.feeds
            .iter()
            .filter_map(|(name, f)| {
                Some(format!("{name}@{}", f.status.as_ref()?.version.as_ref()?))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Status of every feed, by name; a feed whose last reading was
    /// refused shows as unhealthy.
    pub fn statuses(&self) -> Vec<FeedStatus> {
        self.feeds
            .values()
            .filter_map(|f| f.status.clone())
            .map(|mut s| {
                s.healthy &= s.refused.is_none();
                s
            })
            .collect()
    }

    fn recompute(&mut self, touched: BTreeSet<EntityName>) -> FeedDiff {
        let mut diff = FeedDiff::default();
        for entity in touched {
            let ranges = self.ranges_of(&entity);
            if ranges.is_empty() {
                if self.expected.remove(&entity).is_some() {
                    diff.removed.insert(entity);
                }
                continue;
            }
            let next = Expected::of(&render(&aggregate(&ranges)));
            if self.expected.get(&entity).is_none_or(|old| **old != next) {
                self.expected.insert(entity.clone(), Arc::new(next));
                diff.changed.insert(entity);
            }
        }
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{parse, FeedFormat};

    fn parsed(text: &str) -> ParsedFeed {
        parse(FeedFormat::Ip2asn, text.as_bytes()).unwrap()
    }

    const V4: &str =
        "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n2.0.0.0\t2.0.0.255\t3320\tDE\tDTAG\n";

    #[test]
    fn first_reading_makes_every_entity_changed() {
        let mut c = Catalog::default();
        let diff = c.replace("geo", parsed(V4), "v1".into());
        let names: Vec<String> = diff.changed.iter().map(|e| e.to_string()).collect();
        assert_eq!(names, ["asn:13335", "asn:3320", "country:DE", "country:US"]);
        let de: EntityName = "country:DE".parse().unwrap();
        assert_eq!(c.render(&de).unwrap(), b"2.0.0.0/24\n");
        assert_eq!(*c.expected(&de).unwrap(), Expected::of(b"2.0.0.0/24\n"));
        assert_eq!(c.version(), "geo@v1");
    }

    #[test]
    fn one_changed_line_touches_only_its_entities() {
        let mut c = Catalog::default();
        c.replace("geo", parsed(V4), "v1".into());
        let changed = V4.replace("2.0.0.255\t3320", "2.0.1.255\t3320");
        let diff = c.replace("geo", parsed(&changed), "v2".into());
        let names: Vec<String> = diff.changed.iter().map(|e| e.to_string()).collect();
        assert_eq!(names, ["asn:3320", "country:DE"]);
        assert!(diff.removed.is_empty());
    }

    #[test]
    fn entities_combine_ranges_of_every_feed_and_leave_with_the_last() {
        let mut c = Catalog::default();
        c.replace("v4", parsed(V4), "a".into());
        let v6 = "2001:db8::\t2001:db8::ffff\t13335\tUS\tCLOUDFLARENET\n";
        let diff = c.replace("v6", parsed(v6), "b".into());
        assert_eq!(diff.changed.len(), 2);
        let us = c.render(&"country:US".parse().unwrap()).unwrap();
        assert_eq!(us, b"1.0.0.0/24\n2001:db8::/112\n");
        let diff = c.remove("v4");
        let removed: Vec<String> = diff.removed.iter().map(|e| e.to_string()).collect();
        assert_eq!(removed, ["asn:3320", "country:DE"]);
        assert_eq!(
            diff.changed.len(),
            2,
            "asn:13335 and country:US lost their v4 ranges"
        );
    }

    #[test]
    fn an_unchanged_reading_changes_nothing() {
        let mut c = Catalog::default();
        c.replace("geo", parsed(V4), "v1".into());
        assert!(c.replace("geo", parsed(V4), "v1".into()).is_empty());
    }
}
