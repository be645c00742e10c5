//! Recent task history for charts: how many tasks ended per time bucket
//! (succeeded, failed, canceled) and their queue wait and run time
//! percentiles, per kind and pool, over the last hour or day.
//!
//! # Memory
//! Two rings of time buckets: 60 one-minute buckets and 96 fifteen-minute
//! buckets. A bucket keeps, per (kind, pool) that had an end in it, three
//! counters and two fixed log-scale histograms (four bins per doubling,
//! 1 ms to about 37 h), never the samples themselves. Memory is therefore
//! bounded by the number of buckets times the number of (kind, pool)
//! series, itself bounded by [`MAX_SERIES`]: under 1 KiB per series and
//! bucket that had an end, so a few hundred KiB for a daemon with a dozen
//! busy kinds. Recording an end is a few array increments under an
//! uncontended lock. Nothing survives a restart.
//!
//! # Time
//! An end is filed under the bucket of its `finished_at`; its queue wait
//! is `started_at - created_at` (request to the start of the last
//! execution) and its run time `finished_at - started_at`. A task canceled
//! before it ran counts as canceled with neither. Callers pass `now` to
//! [`StatsRecorder::snapshot`], so tests drive the clock.
//!
//! # Percentiles
//! A percentile is read from the histogram: the geometric middle of the
//! bin holding the rank, clamped to the smallest and largest sample seen,
//! so it is within about 9 % of the exact value (exact for a single
//! sample).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::spec::TaskState;
use crate::store::TaskRecord;
use crate::time::Timestamp;

/// Most (kind, pool) series kept; ends of further series are counted under
/// kind and pool `other`. Kinds are registered and pools configured, so a
/// daemon stays far below it.
pub const MAX_SERIES: usize = 256;

/// Histogram bins per doubling of a duration.
const BINS_PER_DOUBLING: u32 = 4;
/// Bins in all: 1 ms up to 2^27 ms (about 37 h); longer lands in the last.
const BINS: usize = 27 * BINS_PER_DOUBLING as usize;

/// A span of recent history [`StatsRecorder::snapshot`] reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum StatsWindow {
    /// The last hour, in one-minute buckets.
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours, in fifteen-minute buckets.
    #[serde(rename = "24h")]
    Day,
}

impl StatsWindow {
    /// The window's name as in the API: `1h` or `24h`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatsWindow::Hour => "1h",
            StatsWindow::Day => "24h",
        }
    }

    /// Parses `1h` or `24h`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1h" => Some(StatsWindow::Hour),
            "24h" => Some(StatsWindow::Day),
            _ => None,
        }
    }

    /// The width of one bucket.
    pub fn bucket(self) -> Duration {
        match self {
            StatsWindow::Hour => Duration::from_secs(60),
            StatsWindow::Day => Duration::from_secs(15 * 60),
        }
    }

    /// How many buckets the window has.
    pub fn buckets(self) -> usize {
        match self {
            StatsWindow::Hour => 60,
            StatsWindow::Day => 96,
        }
    }
}

impl fmt::Display for StatsWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a window of history holds: every bucket for all tasks together,
/// and per (kind, pool) series that had an end in the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// The window reported on.
    pub window: StatsWindow,
    /// Width of each bucket in seconds.
    pub bucket_seconds: u64,
    /// Every bucket of the window, oldest first, for all tasks together.
    /// The last one is the bucket `now` falls in, still filling.
    pub total: Vec<StatsBucket>,
    /// Per kind and pool, sorted by kind then pool; each has the same
    /// buckets as `total`.
    pub series: Vec<StatsSeries>,
}

/// One (kind, pool) series of a [`Stats`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsSeries {
    /// Task kind.
    pub kind: String,
    /// The pool it runs in.
    pub pool: String,
    /// Buckets, oldest first.
    pub buckets: Vec<StatsBucket>,
}

/// The ends within one time bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsBucket {
    /// Start of the bucket.
    pub start: Timestamp,
    /// Tasks that ended `succeeded`.
    pub succeeded: u64,
    /// Tasks that ended `failed`.
    pub failed: u64,
    /// Tasks that ended `canceled` (before or while running).
    pub canceled: u64,
    /// From request to start, of the ended tasks that ran; `null` if none.
    pub queue_wait: Option<Percentiles>,
    /// From start to end, of the ended tasks that ran; `null` if none.
    pub duration: Option<Percentiles>,
}

/// Percentiles of a set of durations, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, seconds.
    pub p50: f64,
    /// 95th percentile, seconds.
    pub p95: f64,
}

/// Records task ends into bounded rings and reports a window of them.
///
/// Cheap to clone: clones share one history. The supervisor records every
/// task that ends `succeeded`, `failed` or `canceled` into the recorder
/// of its [`Metrics`](crate::Metrics); read it with
/// [`StatsSnapshot`](crate::StatsSnapshot) or [`Metrics::stats`](crate::Metrics::stats).
#[derive(Clone, Default)]
pub struct StatsRecorder {
    inner: Arc<Mutex<Rings>>,
}

impl fmt::Debug for StatsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsRecorder").finish_non_exhaustive()
    }
}

impl StatsRecorder {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files a task end; ignores records in other states or without
    /// `finished_at`, and ends older than both rings.
    pub fn record(&self, task: &TaskRecord) {
        let Some(finished) = task.finished_at else {
            return;
        };
        let outcome = match task.state {
            TaskState::Succeeded => Outcome::Succeeded,
            TaskState::Failed => Outcome::Failed,
            TaskState::Canceled => Outcome::Canceled,
            _ => return,
        };
        let end = End {
            outcome,
            queue_wait: task.started_at.map(|s| s.since(task.created_at)),
            duration: task.started_at.map(|s| finished.since(s)),
        };
        // A panic while holding the lock leaves consistent counters (each
        // update is a few increments), so a poisoned lock is still used.
        let mut rings = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let series = rings.series_id(&task.kind, &task.pool);
        rings.minutes.record(finished, series, &end);
        rings.quarters.record(finished, series, &end);
    }

    /// The window ending with the bucket `now` falls in.
    pub fn snapshot(&self, window: StatsWindow, now: Timestamp) -> Stats {
        let rings = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = match window {
            StatsWindow::Hour => &rings.minutes,
            StatsWindow::Day => &rings.quarters,
        };
        let slots = ring.window(now);
        let mut total = Vec::with_capacity(slots.len());
        let mut per_series: Vec<Option<Vec<StatsBucket>>> = vec![None; rings.keys.len()];
        for (i, (start, slot)) in slots.iter().enumerate() {
            let mut all = Counts::default();
            for (id, counts) in slot.map(|s| s.series.as_slice()).unwrap_or_default() {
                all.merge(counts);
                let buckets = per_series[*id].get_or_insert_with(|| {
                    slots
                        .iter()
                        .map(|(start, _)| Counts::default().bucket(*start))
                        .collect()
                });
                buckets[i] = counts.bucket(*start);
            }
            total.push(all.bucket(*start));
        }
        let mut series: Vec<StatsSeries> = per_series
            .into_iter()
            .enumerate()
            .filter_map(|(id, buckets)| {
                let (kind, pool) = rings.keys[id].clone();
                buckets.map(|buckets| StatsSeries {
                    kind,
                    pool,
                    buckets,
                })
            })
            .collect();
        series.sort_by(|a, b| (&a.kind, &a.pool).cmp(&(&b.kind, &b.pool)));
        Stats {
            window,
            bucket_seconds: window.bucket().as_secs(),
            total,
            series,
        }
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Succeeded,
    Failed,
    Canceled,
}

struct End {
    outcome: Outcome,
    queue_wait: Option<Duration>,
    duration: Option<Duration>,
}

struct Rings {
    /// (kind, pool) of each series id.
    keys: Vec<(String, String)>,
    /// kind → pool → series id.
    ids: HashMap<String, HashMap<String, usize>>,
    minutes: Ring,
    quarters: Ring,
}

impl Default for Rings {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            ids: HashMap::new(),
            minutes: Ring::new(StatsWindow::Hour),
            quarters: Ring::new(StatsWindow::Day),
        }
    }
}

impl Rings {
    fn series_id(&mut self, kind: &str, pool: &str) -> usize {
        if let Some(id) = self.ids.get(kind).and_then(|p| p.get(pool)) {
            return *id;
        }
        let (kind, pool) = if self.keys.len() + 1 >= MAX_SERIES {
            ("other", "other")
        } else {
            (kind, pool)
        };
        if let Some(id) = self.ids.get(kind).and_then(|p| p.get(pool)) {
            return *id;
        }
        let id = self.keys.len();
        self.keys.push((kind.to_owned(), pool.to_owned()));
        self.ids
            .entry(kind.to_owned())
            .or_default()
            .insert(pool.to_owned(), id);
        id
    }
}

/// Buckets of one width; slot `epoch % len` holds the bucket `epoch`
/// (time / width) until a later epoch needs the slot.
struct Ring {
    width_ms: u64,
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    epoch: u64,
    series: Vec<(usize, Counts)>,
}

impl Ring {
    fn new(window: StatsWindow) -> Self {
        Self {
            width_ms: window.bucket().as_millis() as u64,
            slots: (0..window.buckets()).map(|_| Slot::default()).collect(),
        }
    }

    fn record(&mut self, at: Timestamp, series: usize, end: &End) {
        let epoch = at.as_millis() / self.width_ms;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % len) as usize];
        if slot.epoch > epoch {
            return; // older than the ring
        }
        if slot.epoch < epoch {
            slot.epoch = epoch;
            slot.series.clear();
        }
        let counts = match slot.series.iter().position(|(id, _)| *id == series) {
            Some(i) => &mut slot.series[i].1,
            None => {
                slot.series.push((series, Counts::default()));
                &mut slot.series.last_mut().expect("just pushed").1
            }
        };
        counts.add(end);
    }

    /// Every bucket of the ring's window ending at `now`, oldest first,
    /// with its start and its slot if the slot still holds that bucket.
    fn window(&self, now: Timestamp) -> Vec<(Timestamp, Option<&Slot>)> {
        let len = self.slots.len() as u64;
        let last = now.as_millis() / self.width_ms;
        (last.saturating_sub(len - 1)..=last)
            .map(|epoch| {
                let slot = &self.slots[(epoch % len) as usize];
                let start = Timestamp(epoch * self.width_ms);
                (start, (slot.epoch == epoch).then_some(slot))
            })
            .collect()
    }
}

#[derive(Clone, Default)]
struct Counts {
    succeeded: u64,
    failed: u64,
    canceled: u64,
    queue_wait: Histogram,
    duration: Histogram,
}

impl Counts {
    fn add(&mut self, end: &End) {
        match end.outcome {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Canceled => self.canceled += 1,
        }
        if let Some(d) = end.queue_wait {
            self.queue_wait.add(d);
        }
        if let Some(d) = end.duration {
            self.duration.add(d);
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.canceled += other.canceled;
        self.queue_wait.merge(&other.queue_wait);
        self.duration.merge(&other.duration);
    }

    fn bucket(&self, start: Timestamp) -> StatsBucket {
        StatsBucket {
            start,
            succeeded: self.succeeded,
            failed: self.failed,
            canceled: self.canceled,
            queue_wait: self.queue_wait.percentiles(),
            duration: self.duration.percentiles(),
        }
    }
}

/// Durations in log-scale bins; bin `i` holds `[2^(i/4), 2^((i+1)/4))` ms,
/// bin 0 everything below 2^(1/4) ms.
#[derive(Clone, Default)]
struct Histogram {
    /// Empty until the first sample, then `BINS` long.
    bins: Vec<u32>,
    count: u64,
    min_ms: u64,
    max_ms: u64,
}

impl Histogram {
    fn add(&mut self, d: Duration) {
        let ms = d.as_millis() as u64;
        if self.bins.is_empty() {
            self.bins = vec![0; BINS];
            self.min_ms = ms;
        }
        self.bins[bin(ms)] += 1;
        self.count += 1;
        self.min_ms = self.min_ms.min(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        for (mine, theirs) in self.bins.iter_mut().zip(&other.bins) {
            *mine += theirs;
        }
        self.count += other.count;
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    fn percentiles(&self) -> Option<Percentiles> {
        (self.count > 0).then(|| Percentiles {
            count: self.count,
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
        })
    }

    /// The `q` quantile in seconds; `count` must be above 0.
    fn quantile(&self, q: f64) -> f64 {
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let mut at = BINS - 1;
        for (i, n) in self.bins.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                at = i;
                break;
            }
        }
        let middle = 2f64.powf((at as f64 + 0.5) / f64::from(BINS_PER_DOUBLING));
        middle.clamp(self.min_ms as f64, self.max_ms as f64) / 1000.0
    }
}

fn bin(ms: u64) -> usize {
    if ms <= 1 {
        return 0;
    }
    let i = (ms as f64).log2() * f64::from(BINS_PER_DOUBLING);
    (i.floor() as usize).min(BINS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Priority, TaskId, TaskSpec, Trigger};

    /// 2026-12-03T10:00:00Z, a bucket start in both rings.
    const T0: u64 = 1_796_292_000_000;
    const MINUTE: u64 = 60_000;

    fn end(
        kind: &str,
        state: TaskState,
        created: u64,
        started: Option<u64>,
        finished: u64,
    ) -> TaskRecord {
        let spec = TaskSpec::new(kind, "country:DE".parse().unwrap(), Trigger::Api);
        let mut r = TaskRecord::new_queued(
            TaskId(1),
            spec,
            "background".into(),
            Priority::AUTOMATIC,
            Timestamp(created),
        );
        r.state = state;
        r.started_at = started.map(Timestamp);
        r.finished_at = Some(Timestamp(finished));
        r
    }

    fn succeeded(kind: &str, at: u64, wait_ms: u64, run_ms: u64) -> TaskRecord {
        let created = at - run_ms - wait_ms;
        end(
            kind,
            TaskState::Succeeded,
            created,
            Some(created + wait_ms),
            at,
        )
    }

    #[test]
    fn ends_are_counted_in_the_minute_they_end_per_kind_and_in_total() {
        let stats = StatsRecorder::new();
        stats.record(&succeeded("refresh", T0 + 5_000, 10, 100));
        stats.record(&succeeded("refresh", T0 + 59_999, 10, 100));
        stats.record(&end(
            "refresh",
            TaskState::Failed,
            T0,
            Some(T0),
            T0 + MINUTE,
        ));
        stats.record(&end(
            "rebuild",
            TaskState::Canceled,
            T0,
            None,
            T0 + MINUTE + 1,
        ));
        // Not ends: ignored.
        stats.record(&end("refresh", TaskState::Merged, T0, None, T0 + 1));

        let s = stats.snapshot(StatsWindow::Hour, Timestamp(T0 + MINUTE + 30_000));
        assert_eq!((s.bucket_seconds, s.total.len()), (60, 60));
        let [.., first, second] = s.total.as_slice() else {
            unreachable!()
        };
        assert_eq!(first.start, Timestamp(T0));
        assert_eq!(second.start, Timestamp(T0 + MINUTE));
        assert_eq!((first.succeeded, first.failed, first.canceled), (2, 0, 0));
        assert_eq!(
            (second.succeeded, second.failed, second.canceled),
            (0, 1, 1)
        );
        // The canceled task never ran: only the failed one has a duration.
        assert_eq!(second.duration.unwrap().count, 1);

        let kinds: Vec<(&str, &str)> = s
            .series
            .iter()
            .map(|s| (s.kind.as_str(), s.pool.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("rebuild", "background"), ("refresh", "background")]
        );
        let rebuild = &s.series[0].buckets;
        assert_eq!(rebuild.len(), 60);
        assert_eq!(rebuild[59].canceled, 1);
        assert_eq!(rebuild[58].canceled + rebuild[58].succeeded, 0);
        assert_eq!(s.series[1].buckets[58].succeeded, 2);
    }

    #[test]
    fn percentiles_come_from_bins_within_nine_percent_and_exact_for_one_sample() {
        let stats = StatsRecorder::new();
        stats.record(&succeeded("refresh", T0 + 1_000, 250, 1_234));
        let one = stats
            .snapshot(StatsWindow::Hour, Timestamp(T0 + 2_000))
            .total[59]
            .clone();
        let wait = one.queue_wait.unwrap();
        let run = one.duration.unwrap();
        assert_eq!((wait.p50, wait.p95), (0.25, 0.25));
        assert_eq!((run.p50, run.p95), (1.234, 1.234));

        // 1..=1000 ms: p50 is 500 ms, p95 950 ms.
        let stats = StatsRecorder::new();
        for ms in 1..=1000 {
            stats.record(&succeeded("refresh", T0 + 10_000, 0, ms));
        }
        let d = stats
            .snapshot(StatsWindow::Hour, Timestamp(T0 + 10_000))
            .total[59]
            .duration
            .unwrap();
        assert_eq!(d.count, 1000);
        assert!((d.p50 - 0.5).abs() / 0.5 < 0.09, "p50 {}", d.p50);
        assert!((d.p95 - 0.95).abs() / 0.95 < 0.09, "p95 {}", d.p95);
    }

    #[test]
    fn totals_merge_the_histograms_of_every_series() {
        let stats = StatsRecorder::new();
        for _ in 0..19 {
            stats.record(&succeeded("fast", T0 + 1_000, 0, 10));
        }
        stats.record(&succeeded("slow", T0 + 1_000, 0, 60_000));
        let s = stats.snapshot(StatsWindow::Hour, Timestamp(T0 + 1_000));
        let d = s.total[59].duration.unwrap();
        assert_eq!(d.count, 20);
        assert!((d.p50 - 0.010).abs() < 0.001, "p50 {}", d.p50);
        // The 95th of 20 samples is the 19th: still fast.
        assert!(d.p95 < 0.011, "p95 {}", d.p95);
        assert_eq!(s.series[1].buckets[59].duration.unwrap().p95, 60.0);
    }

    #[test]
    fn the_hour_rolls_over_and_the_day_keeps_what_the_hour_dropped() {
        let stats = StatsRecorder::new();
        stats.record(&succeeded("refresh", T0 + 1_000, 0, 5));
        let hour_later = Timestamp(T0 + 60 * MINUTE);
        // The end's minute was the first of the hour ending at T0 + 59 min
        // and is gone an hour later, the slot reused by a new end.
        let before = stats.snapshot(StatsWindow::Hour, Timestamp(T0 + 59 * MINUTE));
        assert_eq!(before.total[0].succeeded, 1);
        stats.record(&end(
            "refresh",
            TaskState::Failed,
            T0,
            None,
            hour_later.as_millis(),
        ));
        let after = stats.snapshot(StatsWindow::Hour, hour_later);
        assert_eq!(after.total.iter().map(|b| b.succeeded).sum::<u64>(), 0);
        assert_eq!(after.total[59].failed, 1);
        assert_eq!(after.total[0].start, Timestamp(T0 + MINUTE));

        let day = stats.snapshot(StatsWindow::Day, hour_later);
        assert_eq!((day.bucket_seconds, day.total.len()), (900, 96));
        assert_eq!(day.total.iter().map(|b| b.succeeded).sum::<u64>(), 1);
        assert_eq!(day.total[95 - 4].succeeded, 1);
        assert_eq!(day.total[95].failed, 1);

        // A day later, nothing of it is left, and a late end for a bucket
        // already reused is dropped rather than mixed in.
        let next_day = Timestamp(T0 + 24 * 60 * MINUTE + 1_000);
        stats.record(&succeeded("refresh", next_day.as_millis(), 0, 5));
        stats.record(&succeeded("refresh", T0 + 2_000, 0, 5));
        let day = stats.snapshot(StatsWindow::Day, next_day);
        assert_eq!(day.total.iter().map(|b| b.succeeded).sum::<u64>(), 1);
        assert_eq!(day.total[95].succeeded, 1);
    }

    #[test]
    fn a_window_with_no_ends_has_every_bucket_and_no_series() {
        let s = StatsRecorder::new().snapshot(StatsWindow::Day, Timestamp(T0));
        assert_eq!(s.total.len(), 96);
        assert!(s.series.is_empty());
        assert!(s
            .total
            .iter()
            .all(|b| b.duration.is_none() && b.succeeded == 0));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["window"], "24h");
        assert!(json["total"][0]["queue_wait"].is_null());
    }

    #[test]
    fn series_beyond_the_limit_are_counted_as_other() {
        let stats = StatsRecorder::new();
        for k in 0..MAX_SERIES + 10 {
            stats.record(&succeeded(&format!("k{k}"), T0 + 1_000, 0, 5));
        }
        let s = stats.snapshot(StatsWindow::Hour, Timestamp(T0 + 1_000));
        assert_eq!(s.series.len(), MAX_SERIES);
        let other = s.series.iter().find(|s| s.kind == "other").unwrap();
        assert_eq!(other.buckets[59].succeeded, 11);
        assert_eq!(s.total[59].succeeded, (MAX_SERIES + 10) as u64);
    }

    #[test]
    fn bins_grow_by_a_fourth_root_of_two() {
        assert_eq!(bin(0), 0);
        assert_eq!(bin(1), 0);
        assert_eq!(bin(2), 4);
        assert_eq!(bin(1024), 40);
        assert_eq!(bin(u64::MAX), BINS - 1);
    }

    proptest::proptest! {
        /// Ends arriving in time order, over two days: every bucket of
        /// either window holds exactly the ends whose `finished_at` falls
        /// in it, the series add up to the total, and every percentile
        /// lies within the bucket's samples.
        #[test]
        fn windows_hold_exactly_the_ends_of_their_buckets(
            steps in proptest::collection::vec((0u64..20 * MINUTE, 0usize..3, 0u8..3, 0u64..5_000), 1..120)
        ) {
            let stats = StatsRecorder::new();
            let mut at = T0;
            let mut ends = Vec::new();
            for (gap, kind, outcome, run_ms) in steps {
                at += gap;
                let state = [TaskState::Succeeded, TaskState::Failed, TaskState::Canceled][outcome as usize];
                let kind = ["a", "b", "c"][kind];
                stats.record(&end(kind, state, at - run_ms, Some(at - run_ms), at));
                ends.push((at, kind, state, run_ms));
            }
            for window in [StatsWindow::Hour, StatsWindow::Day] {
                let s = stats.snapshot(window, Timestamp(at));
                let width = window.bucket().as_millis() as u64;
                proptest::prop_assert_eq!(s.total.len(), window.buckets());
                for (i, b) in s.total.iter().enumerate() {
                    let start = b.start.as_millis();
                    let mine: Vec<_> = ends.iter().filter(|e| e.0 / width == start / width).collect();
                    let count = |st: TaskState| mine.iter().filter(|e| e.2 == st).count() as u64;
                    proptest::prop_assert_eq!(
                        (b.succeeded, b.failed, b.canceled),
                        (count(TaskState::Succeeded), count(TaskState::Failed), count(TaskState::Canceled))
                    );
                    let by_series: u64 = s.series.iter()
                        .map(|x| x.buckets[i].succeeded + x.buckets[i].failed + x.buckets[i].canceled)
                        .sum();
                    proptest::prop_assert_eq!(by_series, mine.len() as u64);
                    if let Some(d) = b.duration {
                        let lo = mine.iter().map(|e| e.3).min().unwrap() as f64 / 1000.0;
                        let hi = mine.iter().map(|e| e.3).max().unwrap() as f64 / 1000.0;
                        proptest::prop_assert!(lo <= d.p50 && d.p50 <= d.p95 && d.p95 <= hi);
                    } else {
                        proptest::prop_assert!(mine.is_empty());
                    }
                }
            }
        }
    }
}
