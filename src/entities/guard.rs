//! The reading guard: whether a new reading of a feed is plausible enough
//! to replace the content in force. A feed file replaced by an empty file,
//! an HTML error page or lines that do not parse would otherwise remove the
//! artifacts of every entity the feed had; such a reading is refused, the
//! previous content stays, and an operator can accept it deliberately.

use std::collections::BTreeSet;

use groundcrew_actors::EntityName;

use crate::feed::ParsedFeed;

/// Limits one feed's readings must keep to (config keys of the same names
/// on each feed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeedGuard {
    /// Largest share of a reading's lines that may be bad (default 0.01).
    pub max_bad_line_ratio: f64,
    /// Largest share of the feed's entities a reading may drop (default
    /// 0.5); not checked on the first reading.
    pub max_entity_drop_ratio: f64,
}

impl Default for FeedGuard {
    fn default() -> Self {
        Self {
            max_bad_line_ratio: 0.01,
            max_entity_drop_ratio: 0.5,
        }
    }
}

/// Why a reading was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Too many lines could not be read.
    #[error("{bad} of {lines} lines could not be read (more than max_bad_line_ratio {max})")]
    BadLines {
        /// Bad lines.
        bad: u64,
        /// Lines in all.
        lines: u64,
        /// The limit.
        max: f64,
    },
    /// The reading drops too many of the feed's entities.
    #[error("the reading drops {dropped} of the feed's {before} entities (more than max_entity_drop_ratio {max})")]
    EntityDrop {
        /// Entities the content in force has that the reading lacks.
        dropped: usize,
        /// Entities of the content in force.
        before: usize,
        /// The limit.
        max: f64,
    },
    /// The first reading since the start has no entity while artifacts
    /// are published: an empty file replaced the feed while the daemon was
    /// down, and taking it would remove every artifact at the start-up
    /// repair.
    #[error("the first reading since the start has no entities while {artifacts} artifacts are published")]
    EmptyAtStart {
        /// Artifacts in the manifest.
        artifacts: usize,
    },
}

impl Refusal {
    /// The metric label of the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadLines { .. } => "bad_lines",
            Refusal::EntityDrop { .. } | Refusal::EmptyAtStart { .. } => "entity_drop",
        }
    }
}

impl FeedGuard {
    /// Checks the first reading of a feed since the start, when nothing of
    /// it is in force yet, against the number of published artifacts.
    pub fn check_first(&self, reading: &ParsedFeed, artifacts: usize) -> Result<(), Refusal> {
        if reading.ranges_by_entity.is_empty() && artifacts > 0 && self.max_entity_drop_ratio < 1.0
        {
            return Err(Refusal::EmptyAtStart { artifacts });
        }
        self.check(reading, &BTreeSet::new())
    }

    /// Checks a reading against the entities of the content in force.
    pub fn check(
        &self,
        reading: &ParsedFeed,
        in_force: &BTreeSet<EntityName>,
    ) -> Result<(), Refusal> {
        let (bad, lines) = (reading.bad_line_count, reading.lines);
        if bad > 0 && bad as f64 > self.max_bad_line_ratio * lines as f64 {
            return Err(Refusal::BadLines {
                bad,
                lines,
                max: self.max_bad_line_ratio,
            });
        }
        let dropped = in_force
            .iter()
            .filter(|e| !reading.ranges_by_entity.contains_key(*e))
            .count();
        if dropped > 0 && dropped as f64 > self.max_entity_drop_ratio * in_force.len() as f64 {
            return Err(Refusal::EntityDrop {
                dropped,
                before: in_force.len(),
                max: self.max_entity_drop_ratio,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{parse, FeedFormat};

    fn reading(text: &str) -> ParsedFeed {
        parse(FeedFormat::Csv, text.as_bytes()).unwrap()
    }

    fn entities(r: &ParsedFeed) -> BTreeSet<EntityName> {
        r.ranges_by_entity.keys().cloned().collect()
    }

    const GOOD: &str = "prefix,country,asn\n192.0.2.0/24,DE,64500\n198.51.100.0/24,FR,64501\n";

    #[test]
    fn empty_and_html_readings_are_refused_and_a_normal_change_passes() {
        let guard = FeedGuard::default();
        let in_force = entities(&reading(GOOD));
        let empty = guard.check(&reading(""), &in_force).unwrap_err();
        assert_eq!(empty.reason(), "entity_drop");
        let html = "<html>\n<body>502 Bad Gateway</body>\n</html>\n";
        assert_eq!(
            guard.check(&reading(html), &in_force).unwrap_err().reason(),
            "bad_lines"
        );
        let moved = "prefix,country,asn\n192.0.2.0/24,DE,64500\n198.51.100.0/24,DE,64501\n";
        // Drops country:FR of four entities: a quarter, within 0.5.
        guard.check(&reading(moved), &in_force).unwrap();
        // The first reading has nothing to drop, unless it is empty while
        // artifacts are published (the file was emptied while stopped).
        guard.check_first(&reading(GOOD), 10).unwrap();
        guard.check_first(&reading(""), 0).unwrap();
        let first = guard.check_first(&reading(""), 10).unwrap_err();
        assert_eq!(first, Refusal::EmptyAtStart { artifacts: 10 });
    }

    #[test]
    fn limits_are_the_configured_ratios() {
        let strict = FeedGuard {
            max_bad_line_ratio: 0.0,
            max_entity_drop_ratio: 0.0,
        };
        let one_bad = format!("{GOOD}garbage\n");
        assert!(strict.check(&reading(&one_bad), &BTreeSet::new()).is_err());
        let lax = FeedGuard {
            max_bad_line_ratio: 1.0,
            max_entity_drop_ratio: 1.0,
        };
        lax.check(&reading(""), &entities(&reading(GOOD))).unwrap();
        lax.check(&reading(&one_bad), &BTreeSet::new()).unwrap();
    }
}
