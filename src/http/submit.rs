//! `POST /api/v1/tasks`: one request, or many as a JSON array, which go to
//! the supervisor as one [`SubmitMany`]: one mailbox message and one
//! durable batch.
//!
//! `POST /api/v1/tasks/{id}/retry` requests a failed or canceled task again.
//!
//! A malformed item refuses the whole call (400, naming its index), so that
//! nothing of a request the client got wrong is accepted. Refusals of the
//! supervisor (an unknown kind, invalid params) are answered per item; when
//! every item is refused, the call fails with the first refusal (e.g. 503
//! while the store cannot write).

use std::fmt;

use actix_web::{web, HttpResponse};
use groundcrew_actors::{
    Priority, Submit, SubmitError, SubmitMany, SubmitReply, Target, TaskSpec, TaskState, Trigger,
};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Operator;
use super::{ApiError, ApiState};

/// Most requests one call may carry.
pub(super) const MAX_BATCH: usize = 10_000;

/// One request of `POST /api/v1/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody {
    kind: String,
    target: String,
    #[serde(default)]
    params: serde_json::Value,
    #[serde(default = "api_trigger")]
    trigger: Trigger,
    priority: Option<Priority>,
}

fn api_trigger() -> Trigger {
    Trigger::Api
}

impl SubmitBody {
    fn spec(self) -> Result<TaskSpec, ApiError> {
        let target = Target::parse(&self.target)?;
        let mut spec = TaskSpec::new(self.kind, target, self.trigger).with_params(self.params);
        spec.priority = self.priority;
        Ok(spec)
    }
}

/// The body: one request (an object) or many (an array).
#[derive(Debug)]
pub(super) enum SubmitBatch {
    One(SubmitBody),
    Many(Vec<SubmitBody>),
}

impl<'de> Deserialize<'de> for SubmitBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BatchVisitor)
    }
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = SubmitBatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task request object, or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        SubmitBody::deserialize(de::value::MapAccessDeserializer::new(map)).map(SubmitBatch::One)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(SubmitBatch::Many)
    }
}

/// What one request of a batch (here or in a rebuild) became: its reply,
/// or its refusal as the `error` object an error body carries.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum BatchItem {
    Accepted(SubmitReply),
    Refused { error: serde_json::Value },
}

impl From<Result<SubmitReply, SubmitError>> for BatchItem {
    fn from(reply: Result<SubmitReply, SubmitError>) -> Self {
        match reply {
            Ok(reply) => BatchItem::Accepted(reply),
            Err(e) => {
                let e = ApiError::from(e);
                BatchItem::Refused {
                    error: json!({ "code": e.code(), "message": e.to_string() }),
                }
            }
        }
    }
}

pub(super) async fn submit(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    body: web::Json<SubmitBatch>,
) -> Result<HttpResponse, ApiError> {
    let items = match body.into_inner() {
        SubmitBatch::One(body) => return submit_one(&caller.name, &state, body).await,
        SubmitBatch::Many(items) => items,
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "a batch holds 1 to {MAX_BATCH} requests, got {}",
            items.len()
        )));
    }
    let specs = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            item.spec()
                .map_err(|e| ApiError::InvalidRequest(format!("request [{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = specs.len();
    let mut replies = state.supervisor.send(SubmitMany(specs)).await?;
    if replies.iter().all(Result::is_err) {
        return Err(replies.swap_remove(0).expect_err("all refused").into());
    }
    let accepted = replies.iter().filter(|r| r.is_ok()).count();
    tracing::info!(caller = %caller.name, requests = count, accepted, "tasks submitted");
    let tasks: Vec<BatchItem> = replies.into_iter().map(BatchItem::from).collect();
    Ok(HttpResponse::Accepted().json(json!({ "tasks": tasks })))
}

/// Requests a failed or canceled task again: a new request with its kind,
/// target and params, trigger `operator`, `retry_of` naming it. Coalescing
/// applies: it may merge into a pending task of the same target.
pub(super) async fn retry(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::tasks::task_id(&id)?;
    let record = state
        .store
        .get(id)
        .await?
        .ok_or(ApiError::TaskNotFound(id))?;
    if !matches!(record.state, TaskState::Failed | TaskState::Canceled) {
        return Err(ApiError::Conflict(format!(
            "task {id} is {}; only failed or canceled tasks are retried",
            record.state
        )));
    }
    let spec = TaskSpec::new(record.kind, record.target, Trigger::Operator)
        .with_params(record.params)
        .with_retry_of(id);
    let reply: SubmitReply = state.supervisor.send(Submit(spec)).await??;
    tracing::info!(caller = %caller.name, retry_of = id.0, task = reply.id.0,
        outcome = ?reply.outcome, "task retried");
    Ok(HttpResponse::Accepted().json(reply))
}

async fn submit_one(
    caller: &str,
    state: &ApiState,
    body: SubmitBody,
) -> Result<HttpResponse, ApiError> {
    let spec = body.spec()?;
    let reply: SubmitReply = state.supervisor.send(Submit(spec.clone())).await??;
    tracing::info!(caller, kind = %spec.kind, target = %spec.target,
        task = reply.id.0, outcome = ?reply.outcome, "task submitted");
    Ok(HttpResponse::Accepted().json(reply))
}
