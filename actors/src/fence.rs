//! Fencing tokens: which execution of each task holds its claim now.
//!
//! Every execution of a task carries a [`RunToken`] that grows with each
//! claim of the task ([`RunToken::after`]). The supervisor records the
//! token of every task it runs in a [`Runs`] table that it shares with the
//! [`EntityWriter`](crate::EntityWriter), and takes it out when the
//! execution ends or is stopped hard. The writer checks the table for each
//! publication and removal right before it carries it out: one from any
//! other execution (an earlier claim, a run stopped hard while its
//! publication still waited in the writer's mailbox) is refused with
//! [`PublishError::StaleRun`](crate::PublishError::StaleRun). The
//! supervisor applies the same rule to stage, progress and completion
//! messages, and the store to the reports it is handed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::entity::EntityName;
use crate::metrics::Metrics;
use crate::spec::{RunToken, TaskId};
use crate::writer::PublishError;

impl RunToken {
    /// The token of the claim after one that held `previous` (the first
    /// claim of a task, with `None`, gets 1).
    ///
    /// ```
    /// use groundcrew_actors::RunToken;
    /// assert_eq!(RunToken::after(None), RunToken(1));
    /// assert_eq!(RunToken::after(Some(RunToken(7))), RunToken(8));
    /// ```
    pub fn after(previous: Option<RunToken>) -> RunToken {
        RunToken(previous.map_or(1, |t| t.0.saturating_add(1)))
    }
}

/// The current claim of every running task.
///
/// On a shared queue a claim also needs this node's lease: the table
/// knows until when each run's lease holds (from before the claim or the
/// last renewal listing it was sent; otherwise from before the last
/// renewal), and past that no claim passes, so a node that froze or lost
/// the database publishes nothing until a heartbeat shows it still holds
/// its runs.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    current: Mutex<crate::FastMap<TaskId, RunToken>>,
    lease_until: Mutex<Option<Instant>>,
    run_leases: Mutex<HashMap<TaskId, (RunToken, Instant)>>,
}

impl Runs {
    /// `run` now holds the claim of `task`, replacing any earlier one.
    pub(crate) fn claim(&self, task: TaskId, run: RunToken) {
        self.lock().insert(task, run);
    }

    /// The claim of `task` by `run` ended; a later claim is left alone.
    pub(crate) fn release(&self, task: TaskId, run: RunToken) {
        let mut current = self.lock();
        if current.get(&task) == Some(&run) {
            current.remove(&task);
        }
        let mut leases = self.run_leases();
        if leases.get(&task).is_some_and(|(r, _)| *r == run) {
            leases.remove(&task);
        }
    }

    /// `Ok` when `run` holds the claim of `task`; else the token that does,
    /// if any.
    pub(crate) fn check(&self, task: TaskId, run: RunToken) -> Result<(), Option<RunToken>> {
        let lease = self
            .lease_of(task, run)
            .or(*self.lease_until.lock().unwrap_or_else(|e| e.into_inner()));
        if lease.is_some_and(|until| Instant::now() >= until) {
            return Err(None);
        }
        match self.lock().get(&task) {
            Some(&held) if held == run => Ok(()),
            held => Err(held.copied()),
        }
    }

    /// On a shared queue: claims hold until `until` (a renewal moves it).
    pub(crate) fn lease_until(&self, until: Instant) {
        *self.lease_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    /// On a shared queue: run `run` of `task` holds until `until` (its
    /// claim or a renewal that listed it moves it).
    pub(crate) fn lease_run_until(&self, task: TaskId, run: RunToken, until: Instant) {
        self.run_leases().insert(task, (run, until));
    }

    /// Until when run `run` of `task` holds, if its lease is known.
    pub(crate) fn lease_of(&self, task: TaskId, run: RunToken) -> Option<Instant> {
        self.run_leases()
            .get(&task)
            .filter(|(r, _)| *r == run)
            .map(|(_, until)| *until)
    }

    fn run_leases(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, (RunToken, Instant)>> {
        self.run_leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::FastMap<TaskId, RunToken>> {
        // The map is left consistent by every operation: a panic elsewhere
        // while it was held does not make it wrong.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The entity writer's side: the supervisor's table once it was handed
/// over, and the stale runs already logged.
#[derive(Debug, Default)]
pub(crate) struct WriterFence {
    runs: Option<Arc<Runs>>,
    logged: HashSet<(TaskId, RunToken)>,
}

impl WriterFence {
    /// Most stale runs remembered as logged; beyond it the memory starts
    /// over (and a run still sending is logged once more).
    const LOGGED_MAX: usize = 4096;

    /// Checks writes against `runs` from now on.
    pub(crate) fn attach(&mut self, runs: Arc<Runs>) {
        self.runs = Some(runs);
    }

    /// `Ok` when a write of `entity` from execution `source` may go ahead:
    /// it holds its task's claim, or it comes from no task execution. A
    /// refusal is counted, and logged once per stale run.
    pub(crate) fn check(
        &mut self,
        source: Option<(TaskId, RunToken)>,
        entity: &EntityName,
        write: &'static str,
        metrics: &Metrics,
    ) -> Result<(), PublishError> {
        let (Some(runs), Some((task, run))) = (&self.runs, source) else {
            return Ok(());
        };
        let Err(current) = runs.check(task, run) else {
            return Ok(());
        };
        metrics.stale_runs.with_label_values(&[write]).inc();
        if self.logged.len() >= Self::LOGGED_MAX {
            self.logged.clear();
        }
        if self.logged.insert((task, run)) {
            tracing::warn!(task = task.0, run = run.0, current = current.map(|c| c.0), %entity, write,
                "refused a write from an execution that no longer holds its task's claim");
        }
        Err(PublishError::StaleRun {
            entity: entity.clone(),
            task,
            stale: run,
            current,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_claim_passes_and_a_stale_release_keeps_it() {
        let runs = Runs::default();
        let t = TaskId(4);
        assert_eq!(runs.check(t, RunToken(1)), Err(None));
        runs.claim(t, RunToken(1));
        assert_eq!(runs.check(t, RunToken(1)), Ok(()));
        runs.claim(t, RunToken(2));
        assert_eq!(runs.check(t, RunToken(1)), Err(Some(RunToken(2))));
        runs.release(t, RunToken(1));
        assert_eq!(runs.check(t, RunToken(2)), Ok(()));
        runs.release(t, RunToken(2));
        assert_eq!(runs.check(t, RunToken(2)), Err(None));
    }
}
