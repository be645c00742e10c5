//! `PUT /api/v1/pools/{pool}/limit`: changes a pool's worker limit at
//! runtime. Raising it admits waiting work at once; lowering it never stops
//! a running task.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{PanelSnapshot, SetLimit};
use serde::Deserialize;

use super::auth::Operator;
use super::{ApiError, ApiState};

/// The body: the new limit; 0 pauses the pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitBody {
    limit: usize,
}

/// Answers the pool's status after the change, read back from the panel so
/// that `active` and `pending` reflect any work the new limit admitted.
pub(super) async fn set_limit(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    pool: web::Path<String>,
    body: web::Json<LimitBody>,
) -> Result<HttpResponse, ApiError> {
    let pool = pool.into_inner();
    let limit = body.limit;
    state
        .supervisor
        .send(SetLimit {
            pool: pool.clone(),
            limit,
        })
        .await??;
    tracing::info!(caller = %caller.name, pool = %pool, limit, "worker limit set");
    let panel = state
        .supervisor
        .send(PanelSnapshot { pending_limit: 0 })
        .await?;
    let status = panel
        .pools
        .into_iter()
        .find(|p| p.name == pool)
        .ok_or(ApiError::PoolNotFound(pool))?;
    Ok(HttpResponse::Ok().json(status))
}
