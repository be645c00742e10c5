//! A task store that fails its writes on demand, around a `MemoryStore`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::{self, BoxFuture, FutureExt};
use groundcrew_actors::{
    Change, Durable, HistoryCategory, MemoryStore, Retention, StoreError, TaskFilter, TaskId,
    TaskPage, TaskRecord, TaskStore, Timestamp,
};

/// Writes fail, changing nothing, while `fail` is set.
#[derive(Clone, Default)]
pub struct FailingStore {
    pub inner: MemoryStore,
    pub fail: Arc<AtomicBool>,
    /// Writes refused so far.
    pub refused: Arc<AtomicUsize>,
    /// Writes taken so far.
    pub written: Arc<AtomicUsize>,
}

impl FailingStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_failing(&self, failing: bool) {
        self.fail.store(failing, Ordering::SeqCst);
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    #[allow(dead_code)]
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

impl TaskStore for FailingStore {
    fn allocate_id(&self) -> TaskId {
        self.inner.allocate_id()
    }

    fn write(&self, changes: Vec<Change>) -> Durable {
        if self.fail.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return future::ready(Err(StoreError::Backend("disk full (injected)".into()))).boxed();
        }
        self.written.fetch_add(1, Ordering::SeqCst);
        TaskStore::write(&self.inner, changes)
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        self.inner.unfinished()
    }

    fn get(&self, id: TaskId) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        TaskStore::get(&self.inner, id)
    }

    fn list(
        &self,
        category: HistoryCategory,
        filter: TaskFilter,
        limit: u64,
        offset: u64,
    ) -> BoxFuture<'static, Result<TaskPage, StoreError>> {
        TaskStore::list(&self.inner, category, filter, limit, offset)
    }

    fn delete(&self, id: TaskId) -> BoxFuture<'static, Result<bool, StoreError>> {
        self.inner.delete(id)
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        self.inner.prune(retention, now)
    }
}
