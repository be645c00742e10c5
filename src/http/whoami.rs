//! `GET /api/v1/whoami`: the name and role of the token presented, so that
//! a client (the web page) can hide what the token may not do.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::authorize;
use super::ApiError;
use crate::auth::Role;

pub(super) async fn show(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, Role::Read)?;
    Ok(HttpResponse::Ok().json(json!({ "name": caller.name, "role": caller.role })))
}
