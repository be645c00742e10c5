//! Bulk operations on the history: `POST /api/v1/tasks/retry` requests the
//! failed list (or the part of it a filter shows) again, `DELETE
//! /api/v1/tasks?status=failed|finished` removes it from the history.
//!
//! Both take the list's filter (`kind`, `trigger`, `target`, `since`) and
//! act on at most `limit` tasks (default 100, at most 1000), the newest
//! first, as `GET /api/v1/tasks` lists them: what a page shows is what the
//! button acts on. `matched` in the answer counts every task the filter
//! shows, so that a client sees when there is more than one call's worth.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{
    HistoryCategory, SubmitMany, TaskFilter, TaskPage, TaskSpec, TaskState, Trigger,
};
use serde::Deserialize;
use serde_json::json;

use super::auth::Operator;
use super::submit::BatchItem;
use super::tasks::{filter, invalid, number, MAX_LIMIT};
use super::{ApiError, ApiState};

/// Tasks acted on when `limit` is absent.
const DEFAULT_LIMIT: u64 = 100;

/// The query of both routes, as strings: each is validated by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkQuery {
    status: Option<String>,
    limit: Option<String>,
    kind: Option<String>,
    trigger: Option<String>,
    target: Option<String>,
    since: Option<String>,
}

impl BulkQuery {
    /// The category (a terminal one; `default` when absent), filter and
    /// limit asked for.
    fn scope(
        &self,
        default: Option<HistoryCategory>,
    ) -> Result<(HistoryCategory, TaskFilter, u64), ApiError> {
        let category = match (self.status.as_deref(), default) {
            (Some("failed"), _) => HistoryCategory::Failed,
            (Some("finished"), _) => HistoryCategory::Finished,
            (Some("pending"), _) => {
                return Err(invalid(
                    "status",
                    "pending tasks are canceled one by one (DELETE /api/v1/tasks/{id})".into(),
                ))
            }
            (Some(other), _) => {
                return Err(invalid(
                    "status",
                    format!("{other:?} is not one of failed, finished"),
                ))
            }
            (None, Some(category)) => category,
            (None, None) => {
                return Err(invalid("status", "is required: failed or finished".into()))
            }
        };
        let limit = number(self.limit.as_deref(), "limit", DEFAULT_LIMIT)?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
            ));
        }
        let filter = filter(&self.kind, &self.trigger, &self.target, &self.since)?;
        Ok((category, filter, limit))
    }

    async fn page(
        &self,
        state: &ApiState,
        default: Option<HistoryCategory>,
    ) -> Result<(HistoryCategory, TaskPage), ApiError> {
        let (category, filter, limit) = self.scope(default)?;
        Ok((
            category,
            state.store.list(category, filter, limit, 0).await?,
        ))
    }
}

/// Requests every failed or canceled task the filter shows again, as
/// `POST /api/v1/tasks/{id}/retry` does one: one batch to the supervisor,
/// answered per task (`retry_of` naming it) like a batch submit.
pub(super) async fn retry(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    query: web::Query<BulkQuery>,
) -> Result<HttpResponse, ApiError> {
    let (category, page) = query.page(&state, Some(HistoryCategory::Failed)).await?;
    if category != HistoryCategory::Failed {
        return Err(invalid(
            "status",
            "only failed or canceled tasks are retried: failed".into(),
        ));
    }
    let originals: Vec<_> = page
        .tasks
        .into_iter()
        .filter(|t| matches!(t.state, TaskState::Failed | TaskState::Canceled))
        .collect();
    let specs: Vec<TaskSpec> = originals
        .iter()
        .map(|t| {
            TaskSpec::new(t.kind.clone(), t.target.clone(), Trigger::Operator)
                .with_params(t.params.clone())
                .with_retry_of(t.id)
        })
        .collect();
    let replies = match specs.is_empty() {
        true => Vec::new(),
        false => state.supervisor.send(SubmitMany(specs)).await?,
    };
    if !replies.is_empty() && replies.iter().all(Result::is_err) {
        let first = replies.into_iter().find_map(Result::err);
        return Err(first.expect("every reply is a refusal").into());
    }
    let accepted = replies.iter().filter(|r| r.is_ok()).count();
    tracing::info!(caller = %caller.name, matched = page.total, accepted, "failed tasks retried");
    let tasks: Vec<serde_json::Value> = originals
        .iter()
        .zip(replies)
        .map(|(original, reply)| {
            let mut item = serde_json::to_value(BatchItem::from(reply)).unwrap_or_default();
            item["retry_of"] = json!(original.id);
            item
        })
        .collect();
    Ok(HttpResponse::Accepted().json(json!({ "matched": page.total, "tasks": tasks })))
}

/// Removes every task of the category (`status`, required) the filter
/// shows from the history; answers the ids removed. A task that is gone
/// meanwhile (pruned, another delete) is left out of `deleted`.
pub(super) async fn delete(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    query: web::Query<BulkQuery>,
) -> Result<HttpResponse, ApiError> {
    let (_, page) = query.page(&state, None).await?;
    // Handed over all at once, so that the store commits them together.
    let removals: Vec<_> = page
        .tasks
        .iter()
        .map(|t| (t.id, state.store.delete(t.id)))
        .collect();
    let mut deleted = Vec::new();
    for (id, removal) in removals {
        if removal.await? {
            deleted.push(id);
        }
    }
    tracing::info!(caller = %caller.name, matched = page.total, deleted = deleted.len(),
        "tasks removed from history");
    Ok(HttpResponse::Ok().json(json!({ "matched": page.total, "deleted": deleted })))
}
