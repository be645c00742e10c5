//! Restart recovery: turning the tasks a store found unfinished into a
//! queue to resume, and the store changes that record what was decided.
//!
//! An execution found `running` was interrupted by the crash. It is queued
//! again (its attempt counted and its error recorded), or failed once its
//! kind's attempts are used up. A follow-up loses its reason to wait, since
//! nothing runs any more: when its key is queued again it is merged into
//! that task, which now serves its requests too. A task recorded in a pool
//! that is no longer configured moves to its kind's current pool. One found
//! `canceling` was being stopped when the process died: its run has ended
//! with the process, so it ends `canceled`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::coalesce::Queue;
use crate::kind::Registry;
use crate::spec::TaskState;
use crate::store::{AttemptError, Change, TaskRecord};
use crate::time::Timestamp;

/// The outcome of recovery.
pub(crate) struct Recovered {
    /// Tasks pending again, by id.
    pub(crate) live: Vec<TaskRecord>,
    /// Store changes recording the decisions.
    pub(crate) changes: Vec<Change>,
}

pub(crate) fn recover(
    records: Vec<TaskRecord>,
    registry: &Registry,
    pools: &BTreeMap<String, usize>,
    queue: &mut Queue,
    now: Timestamp,
) -> Recovered {
    let mut live: Vec<TaskRecord> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut changes = Vec::new();
    for mut r in records {
        let Some(kind) = registry.get(&r.kind) else {
            let message = format!("task kind {:?} is not registered after restart", r.kind);
            end(&mut r, TaskState::Failed, message, now);
            changes.push(Change::Put(Arc::new(r)));
            continue;
        };
        if r.state == TaskState::Canceling {
            // The crash ended the run an operator was waiting to stop.
            let message = "canceled while running; the process stopped before the run ended";
            end(&mut r, TaskState::Canceled, message.to_owned(), now);
            changes.push(Change::Put(Arc::new(r)));
            continue;
        }
        let mut changed = false;
        if r.state == TaskState::Running {
            let attempt = r.attempts;
            r.errors.push(AttemptError {
                attempt,
                at: now,
                message: "interrupted: the process stopped while it ran".to_owned(),
            });
            if attempt >= kind.options.max_attempts {
                let message = format!(
                    "interrupted on its last attempt ({attempt} of {})",
                    kind.options.max_attempts
                );
                end(&mut r, TaskState::Failed, message, now);
                changes.push(Change::Put(Arc::new(r)));
                continue;
            }
            r.state = TaskState::Queued;
            r.stage = None;
            r.progress = None;
            changed = true;
        }
        if r.waiting_behind.take().is_some() {
            changed = true;
        }
        if !pools.contains_key(&r.pool) {
            // Checked at start: the kind's own pool is configured.
            let to = kind.options.pool.clone();
            tracing::warn!(task = r.id.0, kind = %r.kind, target = %r.target, from = %r.pool, to = %to,
                "recovered task's pool is no longer configured; moved to its kind's pool");
            r.pool = to;
            changed = true;
        }
        let key = (r.kind.clone(), r.target.clone());
        let delayed = r.run_after.is_some_and(|t| t > now);
        // Pool (when it still exists) and priority as recorded: they were
        // decided at submit time.
        match queue.restore(r.id, key, &r.pool, r.priority, delayed) {
            Ok(()) => {
                if changed {
                    changes.push(Change::Put(Arc::new(r.clone())));
                }
                index.insert(r.id, live.len());
                live.push(r);
            }
            Err(into) => {
                let target = &mut live[index[&into]];
                target.merged += 1 + r.merged;
                for t in &r.triggers {
                    if !target.triggers.contains(t) {
                        target.triggers.push(t.clone());
                    }
                }
                target.priority = target.priority.max(r.priority);
                // An interactive request ends the backoff (see coalesce).
                if !queue.is_delayed(into) {
                    target.run_after = None;
                }
                changes.push(Change::Put(Arc::new(target.clone())));
                r.merged_into = Some(into);
                end(&mut r, TaskState::Merged, String::new(), now);
                r.error = None;
                changes.push(Change::Put(Arc::new(r)));
            }
        }
    }
    Recovered { live, changes }
}

fn end(r: &mut TaskRecord, state: TaskState, message: String, now: Timestamp) {
    r.state = state;
    r.error = Some(message);
    r.finished_at = Some(now);
    r.stage = None;
    r.progress = None;
}
