//! An in-memory [`TaskStore`] and [`Manifest`] for embedders that want no
//! durability, and for tests.
//!
//! Every change is applied under one lock in call order, so the returned
//! [`Durable`] futures are ready at once: there is nothing to wait for when
//! nothing survives the process anyway.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{self, BoxFuture, FutureExt};

use crate::entity::EntityName;
use crate::spec::{TaskId, TaskState};
use crate::store::{
    ArtifactRecord, Change, Durable, HistoryCategory, Manifest, ManifestChange, Retention,
    StoreError, TaskFilter, TaskPage, TaskRecord, TaskStore,
};
use crate::task_log::{newest_log_lines, LogLine, TaskLog, TaskLogLine, LOG_LINES_PER_TASK};
use crate::time::Timestamp;

/// A task journal and artifact manifest kept in memory.
///
/// Cheap to clone: clones share the same contents.
///
/// ```
/// use groundcrew_actors::{MemoryStore, TaskStore};
///
/// let store = MemoryStore::new();
/// let first = store.allocate_id();
/// assert!(store.allocate_id() > first);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last_id: AtomicU64,
    /// Shared with the puts that wrote them: a put costs no copy.
    tasks: Mutex<BTreeMap<TaskId, Arc<TaskRecord>>>,
    artifacts: Mutex<BTreeMap<EntityName, ArtifactRecord>>,
    /// Log lines per task; locked after `tasks` where both are held.
    logs: Mutex<BTreeMap<TaskId, VecDeque<LogLine>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tasks(&self) -> MutexGuard<'_, BTreeMap<TaskId, Arc<TaskRecord>>> {
        // A panic while holding the lock leaves whole records behind (every
        // mutation is a single insert or field update), so the data is still
        // consistent and poisoning can be ignored.
        self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn artifacts(&self) -> MutexGuard<'_, BTreeMap<EntityName, ArtifactRecord>> {
        self.inner
            .artifacts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn logs(&self) -> MutexGuard<'_, BTreeMap<TaskId, VecDeque<LogLine>>> {
        self.inner.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(tasks: &mut BTreeMap<TaskId, Arc<TaskRecord>>, change: Change) {
        match change {
            Change::Put(record) => {
                let older = tasks
                    .get(&record.id)
                    .is_some_and(|stored| stored.run.is_some() && record.run < stored.run);
                if !older {
                    tasks.insert(record.id, record);
                }
            }
            Change::Merge { id, .. } => {
                if let Some(stored) = tasks.get_mut(&id) {
                    if stored.state == TaskState::Queued {
                        change.merge_into(Arc::make_mut(stored));
                    }
                }
            }
            Change::Report {
                id,
                run,
                stage,
                progress,
            } => {
                // A report from an execution that is no longer current must
                // not overwrite what the current one (or the final state) says.
                if let Some(stored) = tasks.get_mut(&id) {
                    let current = matches!(stored.state, TaskState::Running | TaskState::Canceling);
                    if current && stored.run == Some(run) {
                        let record = Arc::make_mut(stored);
                        record.stage = stage;
                        record.progress = progress;
                    }
                }
            }
        }
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, Result<T, StoreError>> {
    future::ready(Ok(value)).boxed()
}

impl TaskStore for MemoryStore {
    fn allocate_id(&self) -> TaskId {
        TaskId(self.inner.last_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn write(&self, changes: Vec<Change>) -> Durable {
        let mut tasks = self.tasks();
        for change in changes {
            if let Change::Put(record) = &change {
                // Records put with ids from elsewhere (a restored journal)
                // must never be handed out again.
                self.inner.last_id.fetch_max(record.id.0, Ordering::Relaxed);
            }
            Self::apply(&mut tasks, change);
        }
        ready(())
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        let unfinished = self
            .tasks()
            .values()
            .filter(|t| !t.state.is_terminal())
            .map(|t| TaskRecord::clone(t))
            .collect();
        ready(unfinished)
    }

    fn get(&self, id: TaskId) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        ready(self.tasks().get(&id).map(|t| TaskRecord::clone(t)))
    }

    fn list(
        &self,
        category: HistoryCategory,
        filter: TaskFilter,
        limit: u64,
        offset: u64,
    ) -> BoxFuture<'static, Result<TaskPage, StoreError>> {
        let tasks = self.tasks();
        let states = category.states();
        let in_category = || {
            tasks
                .values()
                .rev()
                .filter(|t| states.contains(&t.state) && filter.matches(t))
        };
        let total = in_category().count() as u64;
        let page = in_category()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|t| TaskRecord::clone(t))
            .collect();
        ready(TaskPage { tasks: page, total })
    }

    fn delete(&self, id: TaskId) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut tasks = self.tasks();
        let terminal = tasks.get(&id).is_some_and(|t| t.state.is_terminal());
        if terminal {
            tasks.remove(&id);
            self.logs().remove(&id);
        }
        ready(terminal)
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let mut tasks = self.tasks();
        let cutoff = retention
            .max_age_s
            .map(|s| Timestamp(now.0.saturating_sub(s.saturating_mul(1000))));
        let keep = retention.max_count.unwrap_or(u64::MAX);
        let mut doomed = Vec::new();
        let mut kept = 0u64;
        for task in tasks.values().rev().filter(|t| t.state.is_terminal()) {
            let too_old = matches!((cutoff, task.finished_at), (Some(c), Some(f)) if f < c);
            if too_old || kept >= keep {
                doomed.push(task.id);
            } else {
                kept += 1;
            }
        }
        let mut logs = self.logs();
        for id in &doomed {
            tasks.remove(id);
            logs.remove(id);
        }
        ready(doomed.len() as u64)
    }
}

impl TaskLog for MemoryStore {
    fn append_log(&self, lines: Vec<TaskLogLine>) -> Durable {
        let tasks = self.tasks();
        let mut logs = self.logs();
        for TaskLogLine { task, line } in newest_log_lines(lines) {
            if !tasks.contains_key(&task) {
                continue;
            }
            let log = logs.entry(task).or_default();
            if log.len() == LOG_LINES_PER_TASK {
                log.pop_front();
            }
            log.push_back(line);
        }
        ready(())
    }

    fn log(&self, task: TaskId) -> BoxFuture<'static, Result<Vec<LogLine>, StoreError>> {
        let lines = self
            .logs()
            .get(&task)
            .map(|log| log.iter().cloned().collect())
            .unwrap_or_default();
        ready(lines)
    }
}

impl Manifest for MemoryStore {
    fn write(&self, changes: Vec<ManifestChange>) -> Durable {
        let mut artifacts = self.artifacts();
        for change in changes {
            match change {
                ManifestChange::Put(record) => {
                    artifacts.insert(record.entity.clone(), record);
                }
                ManifestChange::Remove(entity) => {
                    artifacts.remove(&entity);
                }
            }
        }
        ready(())
    }

    fn artifact(
        &self,
        entity: &EntityName,
    ) -> BoxFuture<'static, Result<Option<ArtifactRecord>, StoreError>> {
        ready(self.artifacts().get(entity).cloned())
    }

    fn artifacts(&self) -> BoxFuture<'static, Result<Vec<ArtifactRecord>, StoreError>> {
        ready(self.artifacts().values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::spec::{Priority, RunToken, Trigger};
    use crate::store::Progress;

    fn task(id: u64, state: TaskState) -> TaskRecord {
        let spec = crate::TaskSpec::new("test", "country:DE".parse().unwrap(), Trigger::Operator);
        let mut r = TaskRecord::new_queued(
            TaskId(id),
            spec,
            "default".into(),
            Priority::AUTOMATIC,
            Timestamp(0),
        );
        r.state = state;
        r.attempts = 1;
        r.run = Some(RunToken(1));
        r.finished_at = state.is_terminal().then_some(Timestamp(id * 1000));
        r
    }

    fn put_all(store: &MemoryStore, tasks: impl IntoIterator<Item = TaskRecord>) {
        let changes = tasks
            .into_iter()
            .map(|t| Change::Put(Arc::new(t)))
            .collect();
        block_on(TaskStore::write(store, changes)).unwrap();
    }

    fn ids(tasks: &[TaskRecord]) -> Vec<u64> {
        tasks.iter().map(|t| t.id.0).collect()
    }

    #[test]
    fn allocated_ids_grow_past_every_put_id() {
        let store = MemoryStore::new();
        assert_eq!(store.allocate_id(), TaskId(1));
        put_all(&store, [task(41, TaskState::Queued)]);
        assert_eq!(store.allocate_id(), TaskId(42));
    }

    #[test]
    fn report_applies_only_to_the_current_running_execution() {
        let store = MemoryStore::new();
        put_all(
            &store,
            [task(1, TaskState::Running), task(2, TaskState::Succeeded)],
        );
        let report = |id, run| Change::Report {
            id: TaskId(id),
            run: RunToken(run),
            stage: Some("fetch".into()),
            progress: Some(Progress { done: 1, total: 2 }),
        };
        block_on(TaskStore::write(
            &store,
            vec![report(1, 7), report(2, 1), report(9, 1)],
        ))
        .unwrap();
        let get = |id| {
            block_on(TaskStore::get(&store, TaskId(id)))
                .unwrap()
                .unwrap()
        };
        assert_eq!(get(1).stage, None);
        assert_eq!(get(2).stage, None);

        block_on(TaskStore::write(&store, vec![report(1, 1)])).unwrap();
        assert_eq!(get(1).stage.as_deref(), Some("fetch"));
        assert_eq!(get(1).progress, Some(Progress { done: 1, total: 2 }));
    }

    #[test]
    fn changes_in_one_write_apply_in_order() {
        let store = MemoryStore::new();
        let mut done = task(1, TaskState::Succeeded);
        done.result = Some(serde_json::json!(1));
        put_all(&store, [task(1, TaskState::Running), done.clone()]);
        assert_eq!(
            block_on(TaskStore::get(&store, TaskId(1))).unwrap(),
            Some(done)
        );
    }

    #[test]
    fn list_pages_each_category_newest_first_with_total() {
        let store = MemoryStore::new();
        put_all(
            &store,
            [
                task(1, TaskState::Succeeded),
                task(2, TaskState::Failed),
                task(3, TaskState::Merged),
                task(4, TaskState::Queued),
                task(5, TaskState::Succeeded),
                task(6, TaskState::Canceled),
                task(7, TaskState::Running),
            ],
        );
        let list = |c, limit, offset| {
            block_on(TaskStore::list(
                &store,
                c,
                TaskFilter::default(),
                limit,
                offset,
            ))
            .unwrap()
        };

        let finished = list(HistoryCategory::Finished, 2, 0);
        assert_eq!((ids(&finished.tasks), finished.total), (vec![5, 3], 3));
        let rest = list(HistoryCategory::Finished, 2, 2);
        assert_eq!((ids(&rest.tasks), rest.total), (vec![1], 3));
        let failed = list(HistoryCategory::Failed, 10, 0);
        assert_eq!((ids(&failed.tasks), failed.total), (vec![6, 2], 2));
        let pending = list(HistoryCategory::Pending, 10, 0);
        assert_eq!((ids(&pending.tasks), pending.total), (vec![7, 4], 2));
    }

    #[test]
    fn unfinished_returns_queued_and_running_in_id_order() {
        let store = MemoryStore::new();
        put_all(
            &store,
            [
                task(3, TaskState::Running),
                task(1, TaskState::Queued),
                task(2, TaskState::Failed),
            ],
        );
        assert_eq!(ids(&block_on(store.unfinished()).unwrap()), vec![1, 3]);
    }

    #[test]
    fn delete_removes_only_terminal_tasks() {
        let store = MemoryStore::new();
        put_all(
            &store,
            [task(1, TaskState::Running), task(2, TaskState::Failed)],
        );
        assert!(!block_on(store.delete(TaskId(1))).unwrap());
        assert!(block_on(store.delete(TaskId(2))).unwrap());
        assert!(!block_on(store.delete(TaskId(2))).unwrap());
        assert!(!block_on(store.delete(TaskId(99))).unwrap());
        assert!(block_on(TaskStore::get(&store, TaskId(1)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn prune_drops_old_tasks_and_keeps_newest_terminal_ones() {
        let store = MemoryStore::new();
        // finished_at of task n is n seconds after the epoch.
        put_all(
            &store,
            [
                task(1, TaskState::Succeeded),
                task(2, TaskState::Failed),
                task(3, TaskState::Running),
                task(4, TaskState::Succeeded),
                task(5, TaskState::Canceled),
                task(6, TaskState::Succeeded),
            ],
        );
        let by_age = Retention {
            max_age_s: Some(8),
            max_count: None,
        };
        // now = 10 s: tasks finished before 2 s go.
        assert_eq!(block_on(store.prune(by_age, Timestamp(10_000))).unwrap(), 1);
        let by_count = Retention {
            max_age_s: None,
            max_count: Some(2),
        };
        assert_eq!(
            block_on(store.prune(by_count, Timestamp(10_000))).unwrap(),
            2
        );
        assert_eq!(ids(&block_on(store.unfinished()).unwrap()), vec![3]);
        let left: Vec<u64> = [HistoryCategory::Finished, HistoryCategory::Failed]
            .into_iter()
            .flat_map(|c| {
                ids(
                    &block_on(TaskStore::list(&store, c, TaskFilter::default(), 10, 0))
                        .unwrap()
                        .tasks,
                )
            })
            .collect();
        assert_eq!(left, vec![6, 5]);
    }

    #[test]
    fn manifest_puts_replaces_and_removes_records_by_entity() {
        let store = MemoryStore::new();
        let record = |entity: &str, hash: &str| ArtifactRecord {
            entity: entity.parse().unwrap(),
            hash: hash.into(),
            size: 1,
            written_at: Timestamp(0),
            source_version: None,
            task: None,
            run: None,
        };
        block_on(Manifest::write(
            &store,
            vec![
                ManifestChange::Put(record("country:DE", "a")),
                ManifestChange::Put(record("asn:1", "b")),
                ManifestChange::Put(record("country:DE", "c")),
            ],
        ))
        .unwrap();
        let all = block_on(Manifest::artifacts(&store)).unwrap();
        let names: Vec<(&str, &str)> = all
            .iter()
            .map(|r| (r.entity.as_str(), r.hash.as_str()))
            .collect();
        assert_eq!(names, vec![("asn:1", "b"), ("country:DE", "c")]);

        let de: EntityName = "country:DE".parse().unwrap();
        block_on(Manifest::write(
            &store,
            vec![ManifestChange::Remove(de.clone())],
        ))
        .unwrap();
        assert_eq!(block_on(Manifest::artifact(&store, &de)).unwrap(), None);
    }
}
