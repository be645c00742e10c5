//! Feeds and the entity integrity surface:
//! - `GET /api/v1/feeds`: each feed's version, lines, bad lines and health;
//! - `POST /api/v1/feeds/{name}/updated`: re-read a feed now (`feed_update`);
//! - `POST /api/v1/feeds/{name}/accept`: put a reading the feed's guard
//!   refused in force (`operator`);
//! - `POST /api/v1/feeds/{name}/health`: `{"healthy": bool}`; a transition
//!   to healthy refreshes the feed's entities (`health_transition`);
//! - `GET /api/v1/entities?status=&limit=&offset=`: artifacts and their state;
//! - `POST /api/v1/entities/rebuild`: rebuild entities by state or by name
//!   in one call (trigger `operator`).

use std::collections::BTreeSet;

use actix_web::{web, HttpResponse};
use groundcrew_actors::{EntityName, Trigger};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Operator, Reader};
use super::json::non_null;
use super::{ApiError, ApiState};
use crate::entities::{EntityReport, EntityState};

/// Most entities one listing returns.
const MAX_PAGE: usize = 10_000;

pub(super) async fn list(_: Reader, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "feeds": state.feeds.statuses() })))
}

pub(super) async fn updated(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let update = state.feeds.update(&name, Trigger::FeedUpdate).await?;
    tracing::info!(caller = %caller.name, feed = %name, "feed update requested");
    Ok(HttpResponse::Accepted().json(update))
}

pub(super) async fn accept(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let update = state.feeds.accept(&name).await?;
    tracing::warn!(caller = %caller.name, feed = %name, "refused feed reading accepted");
    Ok(HttpResponse::Accepted().json(update))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthBody {
    healthy: bool,
}

pub(super) async fn health(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    name: web::Path<String>,
    body: web::Json<HealthBody>,
) -> Result<HttpResponse, ApiError> {
    let tasks = state.feeds.set_health(&name, body.healthy).await?;
    tracing::info!(caller = %caller.name, feed = %name, healthy = body.healthy, tasks, "feed health set");
    Ok(HttpResponse::Ok()
        .json(json!({"feed": name.into_inner(), "healthy": body.healthy, "tasks": tasks})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntityQuery {
    status: Option<String>,
    limit: Option<usize>,
    offset: Option<u64>,
}

fn parse_states(raw: &str) -> Result<BTreeSet<EntityState>, ApiError> {
    raw.split(',')
        .map(|s| {
            EntityState::parse(s.trim()).ok_or_else(|| ApiError::InvalidParameter {
                parameter: "status".into(),
                message: format!(
                    "unknown state {s:?}; expected ok, missing, stale, corrupt or orphaned"
                ),
            })
        })
        .collect()
}

async fn integrity(state: &ApiState) -> Result<Vec<EntityReport>, ApiError> {
    state
        .feeds
        .integrity()
        .await
        .map_err(|e| ApiError::internal("integrity check failed", &e))
}

pub(super) async fn entities(
    _: Reader,
    state: web::Data<ApiState>,
    query: web::Query<EntityQuery>,
) -> Result<HttpResponse, ApiError> {
    let states = query.status.as_deref().map(parse_states).transpose()?;
    let limit = query.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::InvalidParameter {
            parameter: "limit".into(),
            message: format!("must be between 1 and {MAX_PAGE}, got {limit}"),
        });
    }
    let offset = query.offset.unwrap_or(0);
    if offset > super::tasks::MAX_ID {
        return Err(ApiError::InvalidParameter {
            parameter: "offset".into(),
            message: format!("must be at most {}, got {offset}", super::tasks::MAX_ID),
        });
    }
    let reports = integrity(&state).await?;
    let mut counts: std::collections::BTreeMap<EntityState, usize> = Default::default();
    for r in &reports {
        *counts.entry(r.state).or_default() += 1;
    }
    let selected: Vec<&EntityReport> = reports
        .iter()
        .filter(|r| states.as_ref().is_none_or(|s| s.contains(&r.state)))
        .collect();
    let total = selected.len();
    let page: Vec<&EntityReport> = selected
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"entities": page, "total": total, "counts": counts})))
}

/// `{"status": ["missing", "stale"]}` or `{"entities": ["country:DE"]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RebuildBody {
    #[serde(default, deserialize_with = "non_null")]
    status: Option<Vec<String>>,
    #[serde(default, deserialize_with = "non_null")]
    entities: Option<Vec<String>>,
}

pub(super) async fn rebuild(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    body: web::Json<RebuildBody>,
) -> Result<HttpResponse, ApiError> {
    let entities: BTreeSet<EntityName> = match (&body.status, &body.entities) {
        (Some(states), None) => {
            let wanted = parse_states(&states.join(","))?;
            integrity(&state)
                .await?
                .into_iter()
                .filter(|r| wanted.contains(&r.state))
                .map(|r| r.entity)
                .collect()
        }
        (None, Some(names)) if !names.is_empty() && names.len() <= MAX_PAGE => names
            .iter()
            .map(|n| n.parse::<EntityName>())
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::InvalidRequest(format!(
                "give either \"status\" or 1 to {MAX_PAGE} \"entities\""
            )))
        }
    };
    let count = entities.len();
    let tasks = state.feeds.refresh(entities, Trigger::Operator).await?;
    tracing::info!(caller = %caller.name, entities = count, tasks, "entities rebuild requested");
    Ok(HttpResponse::Accepted().json(json!({"entities": count, "tasks": tasks})))
}
