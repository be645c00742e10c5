//! `/api/v1/tasks`: task history from the store, and `DELETE`, which
//! cancels a task or removes an ended one (submitting is in `submit.rs`).
//!
//! A task's JSON is its [`TaskRecord`] plus `name` (`"<kind> <target>"`),
//! the same name the panel shows. Ids are JSON numbers everywhere.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use groundcrew_actors::{
    AwaitRunEnd, Cancel, CancelError, CancelReply, HistoryCategory, TaskFilter, TaskId, TaskRecord,
    Timestamp, Trigger,
};
use serde::{Deserialize, Serialize};

use super::auth::{Operator, Reader};
use super::{ApiError, ApiState};

/// Tasks listed when `limit` is absent.
const DEFAULT_LIMIT: u64 = 50;
/// Most tasks one page may list.
pub(super) const MAX_LIMIT: u64 = 1000;
/// Largest task id and offset: stores keep them as signed 64-bit integers,
/// so anything beyond is refused as a bad parameter rather than failing
/// in the store.
pub(super) const MAX_ID: u64 = i64::MAX as u64;

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct TaskView {
    #[serde(flatten)]
    record: TaskRecord,
    name: String,
}

impl From<TaskRecord> for TaskView {
    fn from(record: TaskRecord) -> Self {
        let name = format!("{} {}", record.kind, record.target);
        Self { record, name }
    }
}

/// The query of `GET /api/v1/tasks`, as strings: each is validated by name
/// so that a bad value's error names its parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    kind: Option<String>,
    trigger: Option<String>,
    target: Option<String>,
    since: Option<String>,
}

impl ListQuery {
    /// The filter the query asks for; an empty value is refused rather
    /// than read as "any".
    fn filter(&self) -> Result<TaskFilter, ApiError> {
        filter(&self.kind, &self.trigger, &self.target, &self.since)
    }
}

/// The filter of the `kind`, `trigger`, `target` and `since` parameters;
/// an empty value is refused rather than read as "any".
pub(super) fn filter(
    kind: &Option<String>,
    trigger: &Option<String>,
    target: &Option<String>,
    since: &Option<String>,
) -> Result<TaskFilter, ApiError> {
    let given = |name: &str, v: &Option<String>| -> Result<Option<String>, ApiError> {
        match v.as_deref() {
            Some("") => Err(invalid(name, "must not be empty".to_owned())),
            other => Ok(other.map(str::to_owned)),
        }
    };
    let since = match given("since", since)? {
        None => None,
        Some(raw) => Some(
            serde_json::from_value::<Timestamp>(serde_json::Value::String(raw.clone())).map_err(
                |_| {
                    invalid(
                        "since",
                        format!("{raw:?} is not an RFC 3339 time such as 2026-12-03T10:00:00Z"),
                    )
                },
            )?,
        ),
    };
    Ok(TaskFilter {
        kind: given("kind", kind)?,
        trigger: given("trigger", trigger)?.map(|t| Trigger::parse(&t)),
        target_prefix: given("target", target)?,
        since,
    })
}

#[derive(Debug, Serialize)]
struct ListReply {
    tasks: Vec<TaskView>,
    total: u64,
}

pub(super) async fn list(
    _: Reader,
    state: web::Data<ApiState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let category = match query.status.as_deref() {
        None | Some("pending") => HistoryCategory::Pending,
        Some("failed") => HistoryCategory::Failed,
        Some("finished") => HistoryCategory::Finished,
        Some(other) => {
            return Err(invalid(
                "status",
                format!("{other:?} is not one of pending, failed, finished"),
            ))
        }
    };
    let limit = number(query.limit.as_deref(), "limit", DEFAULT_LIMIT)?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let offset = number(query.offset.as_deref(), "offset", 0)?;
    if offset > MAX_ID {
        return Err(invalid(
            "offset",
            format!("must be at most {MAX_ID}, got {offset}"),
        ));
    }
    let filter = query.filter()?;
    let page = state.store.list(category, filter, limit, offset).await?;
    Ok(HttpResponse::Ok().json(ListReply {
        tasks: page.tasks.into_iter().map(TaskView::from).collect(),
        total: page.total,
    }))
}

pub(super) fn invalid(parameter: &str, message: String) -> ApiError {
    ApiError::InvalidParameter {
        parameter: parameter.to_owned(),
        message,
    }
}

pub(super) fn number(value: Option<&str>, parameter: &str, default: u64) -> Result<u64, ApiError> {
    value.map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| invalid(parameter, format!("{v:?} is not a non-negative integer")))
    })
}

/// A task id from the path; not a number is a 400, not a 404, so that a
/// client bug is told apart from a task that is gone.
pub(super) fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    match raw.parse::<u64>() {
        Ok(id) if id <= MAX_ID => Ok(TaskId(id)),
        _ => Err(invalid(
            "id",
            format!("{raw:?} is not a task id (an integer from 0 to {MAX_ID})"),
        )),
    }
}

pub(super) async fn show(
    _: Reader,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    let record = state
        .store
        .get(id)
        .await?
        .ok_or(ApiError::TaskNotFound(id))?;
    Ok(HttpResponse::Ok().json(TaskView::from(record)))
}

/// Longest grace period a cancel may ask for: a day.
const MAX_GRACE_S: u64 = 86_400;
/// How much longer than the grace period `wait=true` waits for a stopped
/// execution to report its end.
const WAIT_BEYOND_GRACE: Duration = Duration::from_secs(5);
/// How often `wait=true` reads the store for the end of a task that runs
/// on another node.
const STORE_POLL: Duration = Duration::from_millis(100);

/// The query of `DELETE /api/v1/tasks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelQuery {
    grace_s: Option<String>,
    wait: Option<String>,
}

impl CancelQuery {
    fn grace(&self) -> Result<Option<Duration>, ApiError> {
        let Some(raw) = self.grace_s.as_deref() else {
            return Ok(None);
        };
        let grace = number(Some(raw), "grace_s", 0)?;
        if grace > MAX_GRACE_S {
            return Err(invalid(
                "grace_s",
                format!("must be at most {MAX_GRACE_S}, got {grace}"),
            ));
        }
        Ok(Some(Duration::from_secs(grace)))
    }

    fn wait(&self) -> Result<bool, ApiError> {
        match self.wait.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(invalid("wait", format!("{other:?} is not true or false"))),
        }
    }
}

/// Cancels a pending task (202 with the supervisor's answer) or removes an
/// ended one from the history (204). A running task is `canceling` until
/// its execution has ended; `grace_s` overrides its pool's grace period
/// before the hard stop, and `wait=true` answers (200) only once it has
/// ended, or 504 `cancel_timeout` after the grace period and 5 s more.
///
/// The supervisor is asked first because it, not the store, knows which
/// tasks are live: asking the store first would race with a task that ends
/// between the two calls.
pub(super) async fn delete(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<CancelQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    let (grace, wait) = (query.grace()?, query.wait()?);
    let mut cancel = Cancel::new(id);
    if let Some(grace) = grace {
        cancel = cancel.with_grace(grace);
    }
    match state.supervisor.send(cancel).await? {
        Ok(reply) => {
            tracing::info!(caller = %caller.name, task = id.0, state = %reply.state,
                grace_s = reply.grace_s, "task cancel requested");
            if !wait {
                return Ok(HttpResponse::Accepted().json(reply));
            }
            let reply = await_end(&state, reply).await?;
            Ok(HttpResponse::Ok().json(reply))
        }
        Err(CancelError::AlreadyEnded { .. }) => {
            if state.store.delete(id).await? {
                tracing::info!(caller = %caller.name, task = id.0, "task removed from history");
                return Ok(HttpResponse::NoContent().finish());
            }
            // Gone meanwhile (another DELETE, pruning), or the store still
            // shows a state the supervisor has moved past.
            match state.store.get(id).await? {
                None => Err(ApiError::TaskNotFound(id)),
                Some(r) => Err(ApiError::Conflict(format!(
                    "task {id} is {} in the store and cannot be removed yet",
                    r.state
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits until a canceled task's execution has ended: the reply with its
/// final state, or `CancelTimeout` naming the state it is stuck in.
async fn await_end(state: &ApiState, mut reply: CancelReply) -> Result<CancelReply, ApiError> {
    if reply.state.is_terminal() {
        return Ok(reply);
    }
    let id = reply.id;
    let limit = Duration::from_secs_f64(reply.grace_s.unwrap_or(0.0)) + WAIT_BEYOND_GRACE;
    let deadline = tokio::time::Instant::now() + limit;
    let ended = tokio::time::timeout(limit, state.supervisor.send(AwaitRunEnd(id))).await;
    let ended = match ended {
        Ok(ended) => ended?,
        Err(_) => None,
    };
    reply.state = match ended {
        Some(s) => s,
        // Not running here (any more): the store has its state. A task
        // running on another node ends there: its end reaches the store
        // once that node has stopped it.
        None => loop {
            let stored = state
                .store
                .get(id)
                .await?
                .ok_or(ApiError::TaskNotFound(id))?
                .state;
            if stored.is_terminal() || tokio::time::Instant::now() >= deadline {
                break stored;
            }
            tokio::time::sleep(STORE_POLL).await;
        },
    };
    if !reply.state.is_terminal() {
        return Err(ApiError::CancelTimeout {
            id,
            state: reply.state,
            waited_s: limit.as_secs(),
        });
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_must_be_numbers() {
        assert_eq!(task_id("42").unwrap(), TaskId(42));
        let e = task_id("abc").unwrap_err();
        assert_eq!(e.code(), "invalid_parameter");
        assert!(e.to_string().contains("\"abc\""));
        assert!(task_id("-1").is_err());
        assert_eq!(task_id("9223372036854775807").unwrap(), TaskId(MAX_ID));
        assert_eq!(
            task_id("9223372036854775808").unwrap_err().code(),
            "invalid_parameter"
        );
    }
}
