//! Prometheus collectors for the runtime, registered into the caller's
//! registry.
//!
//! Label values are bounded: kinds are the registered kind names, triggers
//! the built-in names plus `custom`, pools the configured pools. Targets and
//! task ids never appear in labels.

use std::cell::RefCell;

use crate::stats::StatsRecorder;
use crate::FastMap;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every collector the runtime updates. Cheap to clone (collectors are
/// reference-counted).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub(crate) submitted: IntCounterVec,
    pub(crate) coalesced: IntCounterVec,
    pub(crate) finished: IntCounterVec,
    pub(crate) duration: HistogramVec,
    pub(crate) queue_wait: HistogramVec,
    pub(crate) workers_active: IntGaugeVec,
    pub(crate) workers_limit: IntGaugeVec,
    pub(crate) pending: IntGaugeVec,
    pub(crate) writer_mailbox: IntGauge,
    pub(crate) artifact_writes: IntCounterVec,
    pub(crate) artifact_write_seconds: Histogram,
    pub(crate) stale_runs: IntCounterVec,
    pub(crate) hard_stops: IntCounterVec,
    pub(crate) stats: StatsRecorder,
}

const TASK_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
];
const WRITE_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

impl Metrics {
    /// Creates the collectors and registers them.
    ///
    /// Fails if `registry` already holds collectors of the same names.
    ///
    /// ```
    /// let registry = prometheus::Registry::new();
    /// let metrics = groundcrew_actors::Metrics::register(&registry).unwrap();
    /// # drop(metrics);
    /// ```
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.submitted.clone()))?;
        registry.register(Box::new(m.coalesced.clone()))?;
        registry.register(Box::new(m.finished.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.queue_wait.clone()))?;
        registry.register(Box::new(m.workers_active.clone()))?;
        registry.register(Box::new(m.workers_limit.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.writer_mailbox.clone()))?;
        registry.register(Box::new(m.artifact_writes.clone()))?;
        registry.register(Box::new(m.artifact_write_seconds.clone()))?;
        registry.register(Box::new(m.stale_runs.clone()))?;
        registry.register(Box::new(m.hard_stops.clone()))?;
        Ok(m)
    }

    /// Collectors that no registry exposes, for embedders that do not scrape.
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let metrics = Self::collectors()?;
        // Series a dashboard or an alert reads exist from the start, at 0,
        // rather than appearing with their first event.
        for write in ["publish", "remove", "lease"] {
            metrics.stale_runs.with_label_values(&[write]);
        }
        Ok(metrics)
    }

    /// Recent task history for charts: every task end the supervisor
    /// counts here is also filed in this recorder (not a Prometheus
    /// collector; no registry exposes it). Clones share it.
    pub fn stats(&self) -> &StatsRecorder {
        &self.stats
    }

    fn collectors() -> Result<Self, prometheus::Error> {
        Ok(Self {
            submitted: IntCounterVec::new(
                Opts::new("groundcrew_tasks_submitted_total", "Task requests received."),
                &["kind", "trigger"],
            )?,
            coalesced: IntCounterVec::new(
                Opts::new(
                    "groundcrew_tasks_coalesced_total",
                    "Task requests that did not create a new execution: merged into a pending task, queued as a follow-up, or absorbed by a full rebuild.",
                ),
                &["kind", "outcome"],
            )?,
            finished: IntCounterVec::new(
                Opts::new("groundcrew_tasks_finished_total", "Tasks that reached a terminal state."),
                &["kind", "outcome"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new("groundcrew_task_duration_seconds", "Run time of task executions.")
                    .buckets(TASK_BUCKETS.to_vec()),
                &["kind"],
            )?,
            queue_wait: HistogramVec::new(
                HistogramOpts::new(
                    "groundcrew_task_queue_wait_seconds",
                    "Time from a task's request to the start of its execution.",
                )
                .buckets(TASK_BUCKETS.to_vec()),
                &["kind"],
            )?,
            workers_active: IntGaugeVec::new(
                Opts::new("groundcrew_workers_active", "Task executions running, per pool."),
                &["pool"],
            )?,
            workers_limit: IntGaugeVec::new(
                Opts::new("groundcrew_workers_limit", "Worker limit, per pool."),
                &["pool"],
            )?,
            pending: IntGaugeVec::new(
                Opts::new("groundcrew_tasks_pending", "Tasks waiting to run, per pool."),
                &["pool"],
            )?,
            writer_mailbox: IntGauge::new(
                "groundcrew_writer_mailbox_depth",
                "Publications waiting in the entity writer.",
            )?,
            artifact_writes: IntCounterVec::new(
                Opts::new(
                    "groundcrew_artifact_writes_total",
                    "Artifact publications by result: written, unchanged, removed, failed, refused (from a stale run).",
                ),
                &["result"],
            )?,
            artifact_write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "groundcrew_artifact_write_seconds",
                    "Time to make one batch of artifact publications durable.",
                )
                .buckets(WRITE_BUCKETS.to_vec()),
            )?,
            stale_runs: IntCounterVec::new(
                Opts::new(
                    "groundcrew_stale_runs_total",
                    "Writes refused because the execution sending them no longer held its task's claim, by what was refused: publish, remove, or lease (a run whose lease expired, found at a heartbeat).",
                ),
                &["write"],
            )?,
            hard_stops: IntCounterVec::new(
                Opts::new(
                    "groundcrew_task_hard_stops_total",
                    "Executions stopped hard (their future dropped, their processes killed) at the end of a grace period, by why they were stopped: cancel, timeout, shutdown.",
                ),
                &["kind", "reason"],
            )?,
            stats: StatsRecorder::new(),
        })
    }
}

/// Handles of one collector's children, resolved once per label set: a
/// `with_label_values` per request or execution (it hashes the labels with
/// SipHash and compares them under a lock) was ~6% of the supervisor's time
/// on a flood of requests. Keyed by the first label (kind or pool), then a
/// short list by the second.
#[derive(Debug)]
pub(crate) struct Cached<M> {
    children: RefCell<FastMap<String, Vec<(String, M)>>>,
}

impl<M> Default for Cached<M> {
    fn default() -> Self {
        Self {
            children: RefCell::default(),
        }
    }
}

impl<M> Cached<M> {
    /// Calls `f` with the child for (`first`, `second`), made by `resolve`
    /// the first time.
    pub(crate) fn with<R>(
        &self,
        first: &str,
        second: &str,
        resolve: impl FnOnce() -> M,
        f: impl FnOnce(&M) -> R,
    ) -> R {
        let mut children = self.children.borrow_mut();
        if !children.contains_key(first) {
            children.insert(first.to_owned(), Vec::new());
        }
        let list = children.get_mut(first).expect("inserted above");
        let i = match list.iter().position(|(l, _)| l == second) {
            Some(i) => i,
            None => {
                list.push((second.to_owned(), resolve()));
                list.len() - 1
            }
        };
        f(&list[i].1)
    }
}

/// The children the supervisor updates per request or execution.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    pub(crate) submitted: Cached<IntCounter>,
    pub(crate) coalesced: Cached<IntCounter>,
    pub(crate) finished: Cached<IntCounter>,
    pub(crate) queue_wait: Cached<Histogram>,
    pub(crate) duration: Cached<Histogram>,
    pub(crate) workers_active: Cached<IntGauge>,
    pub(crate) pending: Cached<IntGauge>,
}

impl Metrics {
    /// `submitted{kind, trigger}` += 1.
    pub(crate) fn count_submitted(&self, h: &Handles, kind: &str, trigger: &str) {
        h.submitted.with(
            kind,
            trigger,
            || self.submitted.with_label_values(&[kind, trigger]),
            IntCounter::inc,
        );
    }

    /// `coalesced{kind, outcome}` += 1.
    pub(crate) fn count_coalesced(&self, h: &Handles, kind: &str, outcome: &str) {
        h.coalesced.with(
            kind,
            outcome,
            || self.coalesced.with_label_values(&[kind, outcome]),
            IntCounter::inc,
        );
    }

    /// `finished{kind, outcome}` += 1.
    pub(crate) fn count_finished(&self, h: &Handles, kind: &str, outcome: &str) {
        h.finished.with(
            kind,
            outcome,
            || self.finished.with_label_values(&[kind, outcome]),
            IntCounter::inc,
        );
    }

    /// Observes a queue wait of `kind`.
    pub(crate) fn observe_queue_wait(&self, h: &Handles, kind: &str, secs: f64) {
        h.queue_wait.with(
            kind,
            "",
            || self.queue_wait.with_label_values(&[kind]),
            |m| m.observe(secs),
        );
    }

    /// Observes an execution's duration of `kind`.
    pub(crate) fn observe_duration(&self, h: &Handles, kind: &str, secs: f64) {
        h.duration.with(
            kind,
            "",
            || self.duration.with_label_values(&[kind]),
            |m| m.observe(secs),
        );
    }

    /// Sets a pool's active and pending gauges.
    pub(crate) fn set_pool(&self, h: &Handles, pool: &str, active: usize, pending: usize) {
        h.workers_active.with(
            pool,
            "",
            || self.workers_active.with_label_values(&[pool]),
            |m| m.set(active as i64),
        );
        h.pending.with(
            pool,
            "",
            || self.pending.with_label_values(&[pool]),
            |m| m.set(pending as i64),
        );
    }
}
