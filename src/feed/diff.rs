//! Which entities a feed change touches.
//!
//! When a feed file changes, only the entities whose artifact content changed
//! are refreshed. Because [`aggregate`](super::aggregate) makes the content a
//! function of the covered address set alone, comparing rendered content is
//! exact: a one-line edit changes only the entities that line belongs to
//! (its asn and its country), however large the feed.

use std::collections::{BTreeMap, BTreeSet};

use groundcrew_actors::EntityName;

/// The entities to refresh after a feed change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedDiff {
    /// Entities that are new or whose content differs: publish these.
    pub changed: BTreeSet<EntityName>,
    /// Entities no longer in the feed: remove their artifacts.
    pub removed: BTreeSet<EntityName>,
}

impl FeedDiff {
    /// Whether the feed change touches no entity at all.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Compares the artifacts built from the old and the new feed.
///
/// Both maps are sorted by entity, so this is one merge-like pass; comparing
/// two equal contents stops at the first differing byte or at a length
/// mismatch, which is what makes it cheap next to rebuilding.
pub fn changed_entities(
    old: &BTreeMap<EntityName, Vec<u8>>,
    new: &BTreeMap<EntityName, Vec<u8>>,
) -> FeedDiff {
    let changed = new
        .iter()
        .filter(|(entity, content)| old.get(*entity) != Some(content))
        .map(|(entity, _)| entity.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|entity| !new.contains_key(*entity))
        .cloned()
        .collect();
    FeedDiff { changed, removed }
}

#[cfg(test)]
mod tests {
    use super::super::{build_artifacts, generate_ip2asn, parse, FeedFormat};
    use super::*;

    fn artifacts(feed: &str) -> BTreeMap<EntityName, Vec<u8>> {
        let parsed = parse(FeedFormat::Ip2asn, feed.as_bytes()).unwrap();
        assert_eq!(parsed.bad_line_count, 0, "{:?}", parsed.bad_lines);
        build_artifacts(&parsed)
    }

    fn names(set: &BTreeSet<EntityName>) -> Vec<&str> {
        set.iter().map(EntityName::as_str).collect()
    }

    /// Rewrites line `index` of `feed` with `edit` applied to its fields.
    fn edit_line(feed: &str, index: usize, edit: impl Fn(&mut Vec<String>)) -> String {
        let mut lines: Vec<String> = feed.lines().map(str::to_owned).collect();
        let mut fields: Vec<String> = lines[index].split('\t').map(str::to_owned).collect();
        edit(&mut fields);
        lines[index] = fields.join("\t");
        lines.join("\n") + "\n"
    }

    /// A routed IPv4 line with a country whose range spans several addresses.
    fn routed_line(feed: &str) -> (usize, Vec<String>) {
        feed.lines()
            .enumerate()
            .skip(feed.lines().count() / 2)
            .map(|(i, l)| (i, l.split('\t').map(str::to_owned).collect::<Vec<_>>()))
            .find(|(_, f)| f[2] != "0" && f[3].len() == 2 && f[0] != f[1] && !f[0].contains(':'))
            .expect("generated feed has routed lines")
    }

    #[test]
    fn one_line_change_in_a_500k_line_feed_touches_only_its_asn_and_country() {
        let old_feed = generate_ip2asn(500_000, 7);
        let (index, fields) = routed_line(&old_feed);
        // Shrink the range to its first address: the rest now belongs to
        // nobody, so exactly this line's asn and country lose addresses.
        let new_feed = edit_line(&old_feed, index, |f| f[1] = f[0].clone());
        let diff = changed_entities(&artifacts(&old_feed), &artifacts(&new_feed));
        let expected = [
            format!("asn:{}", fields[2]),
            format!("country:{}", fields[3]),
        ];
        assert_eq!(names(&diff.changed), expected);
        assert!(diff.removed.is_empty());
    }

    #[test]
    fn moving_a_range_to_another_asn_touches_both_asns_only() {
        let old_feed = generate_ip2asn(5_000, 3);
        let (index, fields) = routed_line(&old_feed);
        let new_feed = edit_line(&old_feed, index, |f| f[2] = "4200000000".into());
        let diff = changed_entities(&artifacts(&old_feed), &artifacts(&new_feed));
        // The old asn is changed, or removed if this was its only range.
        let touched: BTreeSet<_> = diff.changed.union(&diff.removed).cloned().collect();
        let expected: BTreeSet<EntityName> =
            [format!("asn:{}", fields[2]), "asn:4200000000".into()]
                .iter()
                .map(|n| n.parse().unwrap())
                .collect();
        assert_eq!(touched, expected);
        assert!(!diff.removed.contains(&"asn:4200000000".parse().unwrap()));
    }

    #[test]
    fn splitting_a_line_in_two_changes_nothing() {
        let old = artifacts("1.0.0.0\t1.0.1.255\t13335\tUS\tX\n");
        let new = artifacts("1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.1.0\t1.0.1.255\t13335\tUS\tX\n");
        assert!(changed_entities(&old, &new).is_empty());
    }

    #[test]
    fn entities_gone_from_the_feed_are_removed() {
        let old = artifacts("1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.1.0\t1.0.1.255\t7\tDE\tY\n");
        let new = artifacts(
            "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.1.0\t1.0.1.255\t0\tNone\tNot routed\n",
        );
        let diff = changed_entities(&old, &new);
        assert!(diff.changed.is_empty());
        assert_eq!(names(&diff.removed), ["asn:7", "country:DE"]);
    }

    #[test]
    fn first_build_reports_every_entity_as_changed() {
        let new = artifacts("1.0.0.0\t1.0.0.255\t13335\tUS\tX\n");
        let diff = changed_entities(&BTreeMap::new(), &new);
        assert_eq!(names(&diff.changed), ["asn:13335", "country:US"]);
    }
}
