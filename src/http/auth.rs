//! Bearer-token extractors: [`Reader`] for GET routes, [`Operator`] for
//! everything that changes state.
//!
//! The extractors come first in each handler's arguments, so that a request
//! without a valid token is refused before its body is read or parsed.
//!
//! # Tokens in the query string
//! A browser's `EventSource` cannot send headers, so the panel event stream
//! alone also accepts `?token=` through [`authorize_header_or_query`]. No
//! other route does: a URL ends up in histories and proxy logs far more
//! often than a header, and only a long-lived stream is worth that risk.

use std::future::{ready, Ready};
use std::sync::PoisonError;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, ApiState};
use crate::auth::{Role, Secret};

/// Who made a request: the name of the token presented, for logs, and
/// its role.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) role: Role,
}

/// A caller holding at least [`Role::Read`]. Reads are not logged, so the
/// caller's name is not kept.
#[derive(Debug)]
pub(crate) struct Reader;

/// A caller holding [`Role::Operate`].
#[derive(Debug)]
pub(crate) struct Operator(pub(crate) Caller);

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(req, Role::Read).map(|_| Reader))
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(req, Role::Operate).map(Operator))
    }
}

/// Checks the request's bearer token against the state's token set.
pub(crate) fn authorize(req: &HttpRequest, required: Role) -> Result<Caller, ApiError> {
    check(req, bearer(req)?, required)
}

/// Like [`authorize`], but without an `Authorization` header the token may
/// come as the `token` query parameter. For the event stream only; see the
/// module docs.
/// Returns the token presented too, so that a long-lived response can
/// check it again later.
pub(crate) fn authorize_header_or_query(
    req: &HttpRequest,
    required: Role,
) -> Result<(Caller, Secret), ApiError> {
    let presented = if req.headers().contains_key(header::AUTHORIZATION) {
        bearer(req)?.to_owned()
    } else {
        // Parsed leniently: other parameters are ignored, and a malformed
        // query is the same as a missing token (its text is never echoed).
        let query = web::Query::<TokenQuery>::from_query(req.query_string())
            .map_err(|_| ApiError::MissingToken)?;
        match query.token.as_deref().map(str::trim) {
            None | Some("") => return Err(ApiError::MissingToken),
            Some(t) => t.to_owned(),
        }
    };
    let caller = check(req, &presented, required)?;
    Ok((caller, Secret::new(presented)))
}

/// Whether `presented` still grants `required` in the tokens in force:
/// a reload may have removed it since the request was authorized.
pub(crate) fn still_grants(state: &ApiState, presented: &Secret, required: Role) -> bool {
    let tokens = state.tokens.read().unwrap_or_else(PoisonError::into_inner);
    tokens
        .authorize(presented.expose())
        .is_some_and(|t| t.role >= required)
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Checks a presented token against the state's token set.
fn check(req: &HttpRequest, presented: &str, required: Role) -> Result<Caller, ApiError> {
    let state = req.app_data::<web::Data<ApiState>>().ok_or_else(|| {
        tracing::error!("ApiState missing: mount the API with http::configure");
        ApiError::Internal
    })?;
    // A poisoned lock only means a writer panicked mid-swap of a whole
    // `TokenSet`; the value behind it is still a complete set.
    let tokens = state.tokens.read().unwrap_or_else(PoisonError::into_inner);
    let token = tokens.authorize(presented).ok_or(ApiError::InvalidToken)?;
    if token.role < required {
        return Err(ApiError::Forbidden { required });
    }
    Ok(Caller {
        name: token.name.clone(),
        role: token.role,
    })
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1).
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?
        .to_str()
        .map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidToken);
    }
    match token.trim() {
        "" => Err(ApiError::MissingToken),
        t => Ok(t),
    }
}
