//! `GET /api/v1/stats?window=1h|24h`: the supervisor's recent task history
//! ([`Stats`]) for the page's charts, as is: ends per bucket (one minute
//! for `1h`, the default; fifteen minutes for `24h`) with queue wait and
//! run time percentiles, for all tasks and per kind and pool. Kept in
//! memory only: it starts empty with the daemon.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{Stats, StatsSnapshot, StatsWindow};
use serde::Deserialize;

use super::auth::Reader;
use super::{ApiError, ApiState};

/// The query of `GET /api/v1/stats`, as a string so that a bad value's
/// error names the parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    window: Option<String>,
}

pub(super) async fn show(
    _: Reader,
    state: web::Data<ApiState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = match query.window.as_deref() {
        None => StatsWindow::Hour,
        Some(raw) => StatsWindow::parse(raw).ok_or_else(|| ApiError::InvalidParameter {
            parameter: "window".to_owned(),
            message: format!("{raw:?} is not one of 1h, 24h"),
        })?,
    };
    let stats: Stats = state.supervisor.send(StatsSnapshot { window }).await?;
    Ok(HttpResponse::Ok().json(stats))
}
