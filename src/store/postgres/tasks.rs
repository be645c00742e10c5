//! [`TaskStore`] on PostgreSQL: writes through the writer task, reads on
//! pooled connections.

use futures::future::BoxFuture;
use groundcrew_actors::{
    Change, Durable, HistoryCategory, Retention, StoreError, TaskFilter, TaskId, TaskPage,
    TaskRecord, TaskStore, Timestamp,
};

use tokio_postgres::types::ToSql;

use super::rows::{self, RowError};
use super::writer::Op;
use super::PostgresStore;
use crate::store::state::category_name;

impl TaskStore for PostgresStore {
    fn allocate_id(&self) -> TaskId {
        TaskId(self.ids.allocate())
    }

    fn write(&self, changes: Vec<Change>) -> Durable {
        self.durable(Op::Tasks(changes))
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        self.read("unfinished tasks", |client| async move {
            let sql = format!(
                "SELECT {} FROM groundcrew.tasks WHERE category = 'pending' ORDER BY id",
                rows::TASK_COLUMNS
            );
            let statement = client.prepare_cached(&sql).await?;
            let found = client.query(&statement, &[]).await?;
            found.iter().map(rows::task_from_row).collect()
        })
    }

    fn get(&self, id: TaskId) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        self.read("task lookup", move |client| async move {
            let Ok(id) = i64::try_from(id.0) else {
                return Ok(None);
            };
            let sql = format!(
                "SELECT {} FROM groundcrew.tasks WHERE id = $1",
                rows::TASK_COLUMNS
            );
            let statement = client.prepare_cached(&sql).await?;
            let found = client.query_opt(&statement, &[&id]).await?;
            found.as_ref().map(rows::task_from_row).transpose()
        })
    }

    fn list(
        &self,
        category: HistoryCategory,
        filter: TaskFilter,
        limit: u64,
        offset: u64,
    ) -> BoxFuture<'static, Result<TaskPage, StoreError>> {
        self.read("history page", move |client| async move {
            let name = category_name(category);
            let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            // The same filter as `TaskFilter::matches`; an absent field
            // (NULL) passes.
            let filtered = "category = $1 AND ($2::text IS NULL OR kind = $2) \
                AND ($3::text IS NULL OR triggers @> jsonb_build_array($3::text)) \
                AND ($4::text IS NULL OR starts_with(target, $4)) \
                AND ($5::timestamptz IS NULL OR created_at >= $5)";
            let count = client
                .prepare_cached(&format!(
                    "SELECT count(*) FROM groundcrew.tasks WHERE {filtered}"
                ))
                .await?;
            let sql = format!(
                "SELECT {} FROM groundcrew.tasks WHERE {filtered}
                 ORDER BY id DESC LIMIT $6 OFFSET $7",
                rows::TASK_COLUMNS
            );
            let page = client.prepare_cached(&sql).await?;
            // Both go out at once: one round trip.
            let (limit, offset) = (clamp(limit), clamp(offset));
            let trigger = filter.trigger.as_ref().map(|t| t.as_str().to_owned());
            let since = filter.since.map(rows::time);
            let (kind, prefix) = (&filter.kind, &filter.target_prefix);
            let (count_params, page_params): (&[&(dyn ToSql + Sync)], &[&(dyn ToSql + Sync)]) = (
                &[&name, kind, &trigger, prefix, &since],
                &[&name, kind, &trigger, prefix, &since, &limit, &offset],
            );
            let (total, found) = futures::try_join!(
                client.query_one(&count, count_params),
                client.query(&page, page_params),
            )?;
            let tasks = found
                .iter()
                .map(rows::task_from_row)
                .collect::<Result<_, RowError>>()?;
            let total: i64 = total.try_get(0)?;
            Ok(TaskPage {
                tasks,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
    }

    fn delete(&self, id: TaskId) -> BoxFuture<'static, Result<bool, StoreError>> {
        let done = self.submit(Op::Delete(id));
        Box::pin(async move { Ok(done.await? > 0) })
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        self.submit(Op::Prune(retention, now))
    }

    fn writable(&self) -> Result<(), StoreError> {
        if let Some(refusal) = self.node.refusal() {
            return Err(StoreError::Backend(refusal));
        }
        match self.health.last_error() {
            Some(e) => Err(StoreError::Backend(e)),
            None => Ok(()),
        }
    }
}
