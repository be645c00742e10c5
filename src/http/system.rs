//! Routes about the daemon itself rather than its tasks: liveness, the
//! Prometheus scrape, configuration reload, what is in force (`system`) and
//! the OpenAPI document.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use prometheus::{Encoder, TextEncoder};
use serde_json::json;

use groundcrew_actors::StoreHealth;

use super::auth::{authorize, Operator, Reader};
use super::{ApiError, ApiState};
use crate::auth::Role;

/// The API's OpenAPI document, kept beside the code it describes; a test
/// checks that its paths and methods are exactly [`super::ROUTES`].
pub(super) const OPENAPI: &str = include_str!("openapi.json");

/// Health, with no auth, so that a load balancer or systemd watchdog needs
/// no secret: `200 {"status": "ok", "store": "ok"}` while the daemon can
/// do its work, `503` with `"status": "failing"` while the task store
/// cannot write (its last commit failed, or its file was deleted or
/// replaced). Why is logged and in the panel's `store`, not here.
pub(super) async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    let mut failing = state.store.writable().is_err();
    if let Ok(status) = state.supervisor.send(StoreHealth).await {
        failing |= !status.ok;
    }
    if failing {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "failing", "store": "failing" }))
    } else {
        HttpResponse::Ok().json(json!({ "status": "ok", "store": "ok" }))
    }
}

pub(super) async fn metrics(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    if state.metrics_require_token {
        authorize(&req, Role::Read)?;
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    encoder
        .encode(&state.metrics.gather(), &mut body)
        .map_err(|e| ApiError::internal("metrics encoding failed", &e))?;
    Ok(HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(body))
}

pub(super) async fn reload(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    tracing::info!(caller = %caller.name, "configuration reload requested");
    match state.control.reload().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "reloaded" }))),
        Err(e) => {
            tracing::warn!(caller = %caller.name, error = %e, file = ?e.file, line = ?e.line, "configuration reload refused");
            Err(ApiError::InvalidConfig(e))
        }
    }
}

pub(super) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(OPENAPI)
}

/// The daemon's version and the isolation its command kinds run under.
pub(super) async fn show(_: Reader, state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "kinds_isolation": state.control.kinds_isolation(),
    }))
}
