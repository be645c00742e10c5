//! Stage and progress reports of a command, coalesced: a command may print
//! a `stage` or `progress` line per item, but each report is a mailbox
//! message and a store write, so at most one report of each goes out per
//! [`REPORT_INTERVAL`], carrying the latest value (latest wins). A value
//! held back goes out when the interval ends, and whatever is pending when
//! stdout closes goes out then: the last stage and progress are never lost.

use std::time::{Duration, Instant};

/// The least time between two flushes of a command's reports.
pub(super) const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// What a flush sends.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Flush {
    /// The latest stage since the last flush.
    pub(super) stage: Option<String>,
    /// The latest progress since the last flush, done of total.
    pub(super) progress: Option<(u64, u64)>,
}

/// The reports waiting for their flush.
#[derive(Debug, Default)]
pub(super) struct Reports {
    pending: Flush,
    last: Option<Instant>,
}

impl Reports {
    pub(super) fn stage(&mut self, stage: String) {
        self.pending.stage = Some(stage);
    }

    pub(super) fn progress(&mut self, done: u64, total: u64) {
        self.pending.progress = Some((done, total));
    }

    /// When the pending reports are due; `None` when nothing is pending.
    pub(super) fn due(&self) -> Option<Instant> {
        if self.pending == Flush::default() {
            return None;
        }
        Some(self.last.map_or_else(Instant::now, |t| t + REPORT_INTERVAL))
    }

    /// The pending reports if they are due at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Flush> {
        let pending = self.pending != Flush::default();
        if pending && self.last.is_none_or(|last| last + REPORT_INTERVAL <= now) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.pending))
        } else {
            None
        }
    }

    /// Everything pending, due or not (stdout closed).
    pub(super) fn take_all(&mut self) -> Flush {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_report_goes_out_at_once_and_later_ones_wait_for_the_interval() {
        let start = Instant::now();
        let mut reports = Reports::default();
        assert_eq!(reports.take_due(start), None);
        reports.stage("one".into());
        let first = reports.take_due(start).unwrap();
        assert_eq!(first.stage.as_deref(), Some("one"));
        for i in 0..1000 {
            reports.stage(format!("stage {i}"));
            reports.progress(i, 1000);
        }
        assert_eq!(reports.due(), Some(start + REPORT_INTERVAL));
        assert_eq!(reports.take_due(start + REPORT_INTERVAL / 2), None);
        let second = reports.take_due(start + REPORT_INTERVAL).unwrap();
        assert_eq!(
            second,
            Flush {
                stage: Some("stage 999".into()),
                progress: Some((999, 1000)),
            },
            "the latest value wins"
        );
        assert_eq!(reports.due(), None);
    }

    #[test]
    fn pending_reports_are_all_taken_at_the_end() {
        let start = Instant::now();
        let mut reports = Reports::default();
        reports.stage("a".into());
        reports.take_due(start);
        reports.progress(5, 5);
        assert_eq!(reports.take_due(start), None);
        assert_eq!(reports.take_all().progress, Some((5, 5)));
        assert_eq!(reports.take_all(), Flush::default());
    }
}
