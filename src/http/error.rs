//! [`ApiError`]: every way an API request fails, its HTTP status, its
//! stable `code`, and the JSON body `{"error": {"code", "message", ...}}`.
//!
//! Handlers return `Result<_, ApiError>`; the actix-web extractor errors
//! (JSON body, path, query) are converted here too, so that a client never
//! sees actix-web's plain-text defaults.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use groundcrew_actors::{
    CancelError, EntityNameError, LimitError, StoreError, SubmitError, TaskId, TaskState,
};
use serde_json::{json, Map, Value};

use super::ReloadError;
use crate::auth::Role;

/// A failed API request. The `Display` text is the `message` of the body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON of the expected shape (`400 invalid_json`).
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The body is not `application/json` (`415 unsupported_media_type`).
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// The body is over the configured limit (`413 payload_too_large`).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A query or path parameter is invalid (`400 invalid_parameter`).
    #[error("invalid parameter {parameter:?}: {message}")]
    InvalidParameter {
        /// The parameter's name.
        parameter: String,
        /// What is wrong with it.
        message: String,
    },
    /// The request is well-formed JSON but asks for something impossible
    /// (`400 invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// A target is neither an entity name nor `all` (`400 invalid_target`).
    #[error(transparent)]
    InvalidTarget(#[from] EntityNameError),
    /// No task kind of that name is registered (`400 unknown_kind`).
    #[error("unknown task kind {0:?}")]
    UnknownKind(String),
    /// The kind refused the params (`400 invalid_params`).
    #[error("invalid params for kind {kind:?}: {message}")]
    InvalidParams {
        /// Kind.
        kind: String,
        /// The kind's reason.
        message: String,
    },
    /// A worker limit over the maximum (`400 limit_too_large`).
    #[error(transparent)]
    LimitTooLarge(LimitError),
    /// The new configuration was refused (`400 invalid_config`).
    #[error("invalid configuration: {0}")]
    InvalidConfig(ReloadError),
    /// No `Authorization: Bearer` header (`401 unauthorized`).
    #[error("missing bearer token")]
    MissingToken,
    /// A token that no configured token matches (`401 unauthorized`).
    #[error("invalid bearer token")]
    InvalidToken,
    /// The token's role is too low for the route (`403 forbidden`).
    #[error("this route needs a token with role {required}")]
    Forbidden {
        /// The role the route needs.
        required: Role,
    },
    /// No task with that id (`404 task_not_found`).
    #[error("no task with id {0}")]
    TaskNotFound(TaskId),
    /// No pool with that name (`404 pool_not_found`).
    #[error("no pool named {0:?}")]
    PoolNotFound(String),
    /// No feed with that name (`404 feed_not_found`).
    #[error("no feed named {0:?}")]
    FeedNotFound(String),
    /// No route for the path (`404 route_not_found`).
    #[error("no route for {path}")]
    RouteNotFound {
        /// The requested path.
        path: String,
    },
    /// The path exists with other methods (`405 method_not_allowed`).
    #[error("method not allowed; allowed: {}", join(allow))]
    MethodNotAllowed {
        /// The methods the path has.
        allow: Vec<Method>,
    },
    /// The request conflicts with the task's state (`409 conflict`).
    #[error("{0}")]
    Conflict(String),
    /// A cancel with `wait=true` whose task had not ended when the wait
    /// was over (`504 cancel_timeout`).
    #[error("task {id} is still {state} {waited_s} s after the cancel")]
    CancelTimeout {
        /// The task.
        id: TaskId,
        /// The state it is stuck in.
        state: TaskState,
        /// How long the request waited.
        waited_s: u64,
    },
    /// As many panel event streams are open as the daemon serves
    /// (`503 too_many_streams`).
    #[error("too many panel event streams are open; poll GET /api/v1/panel instead")]
    TooManyStreams,
    /// The supervisor is draining or gone (`503 shutting_down`).
    #[error("not accepting requests: shutting down")]
    ShuttingDown,
    /// The task store cannot write (or read) now; nothing was accepted
    /// (`503 store_unavailable`). The cause is logged and shown in the
    /// panel's `store`, not sent.
    #[error(
        "the task store is unavailable; nothing was accepted; see /healthz and the daemon's log"
    )]
    StoreUnavailable,
    /// Anything else; the details are logged, not sent (`500 internal`).
    #[error("internal error; see the daemon's log")]
    Internal,
}

fn join(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// Logs `cause` (which may name files or database details a client
    /// need not see) and answers a generic 500.
    pub(crate) fn internal(what: &str, cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, source = ?cause.source().map(ToString::to_string), "{what}");
        ApiError::Internal
    }

    /// A store error: `Closed` is shutdown, a backend failure (I/O, a
    /// deleted file) is `store_unavailable`, a refused change a bug (500).
    pub(crate) fn store(what: &str, e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::ShuttingDown,
            StoreError::Backend(cause) => {
                tracing::warn!(error = %cause, "{what}: task store unavailable");
                ApiError::StoreUnavailable
            }
            e @ StoreError::Conflict(_) => ApiError::internal(what, &e),
        }
    }

    /// The stable machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidTarget(_) => "invalid_target",
            ApiError::UnknownKind(_) => "unknown_kind",
            ApiError::InvalidParams { .. } => "invalid_params",
            ApiError::LimitTooLarge(_) => "limit_too_large",
            ApiError::InvalidConfig(_) => "invalid_config",
            ApiError::MissingToken | ApiError::InvalidToken => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::TaskNotFound(_) => "task_not_found",
            ApiError::PoolNotFound(_) => "pool_not_found",
            ApiError::FeedNotFound(_) => "feed_not_found",
            ApiError::RouteNotFound { .. } => "route_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::CancelTimeout { .. } => "cancel_timeout",
            ApiError::TooManyStreams => "too_many_streams",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// Fields beside `code` and `message` that let a client act on the
    /// error without parsing the message.
    fn details(&self, error: &mut Map<String, Value>) {
        match self {
            ApiError::InvalidParameter { parameter, .. } => {
                error.insert("parameter".into(), json!(parameter));
            }
            ApiError::InvalidTarget(e) => {
                error.insert("target".into(), json!(e.name));
            }
            ApiError::UnknownKind(kind) | ApiError::InvalidParams { kind, .. } => {
                error.insert("kind".into(), json!(kind));
            }
            ApiError::PayloadTooLarge { limit } => {
                error.insert("limit".into(), json!(limit));
            }
            ApiError::Forbidden { required } => {
                error.insert("required_role".into(), json!(required));
            }
            ApiError::TaskNotFound(id) => {
                error.insert("id".into(), json!(id));
            }
            ApiError::CancelTimeout { id, state, .. } => {
                error.insert("id".into(), json!(id));
                error.insert("state".into(), json!(state));
            }
            ApiError::PoolNotFound(pool) => {
                error.insert("pool".into(), json!(pool));
            }
            ApiError::FeedNotFound(feed) => {
                error.insert("feed".into(), json!(feed));
            }
            ApiError::InvalidConfig(r) => {
                error.insert("file".into(), json!(r.file));
                error.insert("line".into(), json!(r.line));
                error.insert("column".into(), json!(r.column));
                error.insert("key".into(), json!(r.key));
            }
            _ => {}
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidTarget(_)
            | ApiError::UnknownKind(_)
            | ApiError::InvalidParams { .. }
            | ApiError::LimitTooLarge(_)
            | ApiError::InvalidConfig(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MissingToken | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::TaskNotFound(_)
            | ApiError::PoolNotFound(_)
            | ApiError::FeedNotFound(_)
            | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::CancelTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::TooManyStreams | ApiError::ShuttingDown | ApiError::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        self.details(&mut error);
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::MissingToken | ApiError::InvalidToken => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(&join(allow)) {
                    response.insert_header((header::ALLOW, v));
                }
            }
            _ => {}
        }
        response.json(json!({ "error": error }))
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(e: JsonPayloadError) -> Self {
        match e {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) => ApiError::InvalidJson(e.to_string()),
            other => ApiError::InvalidJson(other.to_string()),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        let PathError::Deserialize(e) = e else {
            return ApiError::InvalidRequest(e.to_string());
        };
        ApiError::InvalidParameter {
            parameter: "path".into(),
            message: e.to_string(),
        }
    }
}

impl From<QueryPayloadError> for ApiError {
    fn from(e: QueryPayloadError) -> Self {
        // serde_urlencoded names unknown fields but not the field of a bad
        // value; handlers take strings and validate each parameter by name.
        ApiError::InvalidParameter {
            parameter: "query".into(),
            message: e.to_string(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::UnknownKind(kind) => ApiError::UnknownKind(kind),
            SubmitError::InvalidParams { kind, message } => {
                ApiError::InvalidParams { kind, message }
            }
            SubmitError::ShuttingDown => ApiError::ShuttingDown,
            SubmitError::Store(e) => ApiError::store("task request not stored", e),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound(id) => ApiError::TaskNotFound(id),
            CancelError::AlreadyEnded { id, state } => {
                ApiError::Conflict(format!("task {id} already ended as {state}"))
            }
            CancelError::Store(e) => ApiError::store("cancellation not stored", e),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::UnknownPool(pool) => ApiError::PoolNotFound(pool),
            e @ LimitError::TooLarge(_) => ApiError::LimitTooLarge(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::store("task store failed", e)
    }
}

impl From<actix::MailboxError> for ApiError {
    /// The supervisor's mailbox is closed only once it has stopped.
    fn from(_: actix::MailboxError) -> Self {
        ApiError::ShuttingDown
    }
}

impl From<crate::entities::FeedsError> for ApiError {
    fn from(e: crate::entities::FeedsError) -> Self {
        use crate::entities::FeedsError;
        match e {
            FeedsError::UnknownFeed(name) => ApiError::FeedNotFound(name),
            FeedsError::Stopped => ApiError::ShuttingDown,
            // The file is the server's, not the client's: a conflict with
            // the state of the feed, named so that an operator can fix it.
            read @ FeedsError::Read { .. } => {
                ApiError::Conflict(crate::entities::error_chain(&read))
            }
            nothing @ FeedsError::NothingRefused(_) => ApiError::Conflict(nothing.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    #[actix_web::test]
    async fn reload_errors_carry_their_position_in_the_body() {
        let e = ApiError::InvalidConfig(ReloadError {
            message: "expected an integer".into(),
            file: Some("groundcrew.toml".into()),
            line: Some(3),
            column: Some(14),
            key: Some("pools.background".into()),
        });
        let response = e.error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value =
            serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "invalid_config");
        assert_eq!(body["error"]["line"], 3);
        assert_eq!(body["error"]["key"], "pools.background");
    }

    /// One of each variant; the `match` has no wildcard, so a new variant
    /// does not compile until it is listed here, and then its code must be
    /// in the document.
    fn every_variant() -> Vec<ApiError> {
        let all = vec![
            ApiError::InvalidJson(String::new()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::InvalidParameter {
                parameter: String::new(),
                message: String::new(),
            },
            ApiError::InvalidRequest(String::new()),
            ApiError::InvalidTarget(groundcrew_actors::EntityName::new("../x").unwrap_err()),
            ApiError::UnknownKind(String::new()),
            ApiError::InvalidParams {
                kind: String::new(),
                message: String::new(),
            },
            ApiError::LimitTooLarge(LimitError::TooLarge(1)),
            ApiError::InvalidConfig(ReloadError {
                message: String::new(),
                file: None,
                line: None,
                column: None,
                key: None,
            }),
            ApiError::MissingToken,
            ApiError::InvalidToken,
            ApiError::Forbidden {
                required: Role::Operate,
            },
            ApiError::TaskNotFound(TaskId(1)),
            ApiError::PoolNotFound(String::new()),
            ApiError::FeedNotFound(String::new()),
            ApiError::RouteNotFound {
                path: String::new(),
            },
            ApiError::MethodNotAllowed { allow: Vec::new() },
            ApiError::Conflict(String::new()),
            ApiError::CancelTimeout {
                id: TaskId(1),
                state: TaskState::Canceling,
                waited_s: 1,
            },
            ApiError::TooManyStreams,
            ApiError::ShuttingDown,
            ApiError::StoreUnavailable,
            ApiError::Internal,
        ];
        for e in &all {
            match e {
                ApiError::InvalidJson(_)
                | ApiError::UnsupportedMediaType
                | ApiError::PayloadTooLarge { .. }
                | ApiError::InvalidParameter { .. }
                | ApiError::InvalidRequest(_)
                | ApiError::InvalidTarget(_)
                | ApiError::UnknownKind(_)
                | ApiError::InvalidParams { .. }
                | ApiError::LimitTooLarge(_)
                | ApiError::InvalidConfig(_)
                | ApiError::MissingToken
                | ApiError::InvalidToken
                | ApiError::Forbidden { .. }
                | ApiError::TaskNotFound(_)
                | ApiError::PoolNotFound(_)
                | ApiError::FeedNotFound(_)
                | ApiError::RouteNotFound { .. }
                | ApiError::MethodNotAllowed { .. }
                | ApiError::Conflict(_)
                | ApiError::CancelTimeout { .. }
                | ApiError::TooManyStreams
                | ApiError::ShuttingDown
                | ApiError::StoreUnavailable
                | ApiError::Internal => {}
            }
        }
        all
    }

    #[test]
    fn the_documents_error_codes_are_exactly_the_codes_sent() {
        let doc: Value = serde_json::from_str(super::super::system::OPENAPI).unwrap();
        let documented: std::collections::BTreeSet<&str> = doc["components"]["schemas"]["Error"]
            ["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let sent: std::collections::BTreeSet<&str> =
            every_variant().iter().map(ApiError::code).collect();
        assert_eq!(documented, sent);
        assert!(sent.contains("store_unavailable") && sent.contains("feed_not_found"));
    }

    #[test]
    fn unauthorized_answers_ask_for_a_bearer_token() {
        let response = ApiError::MissingToken.error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
    }
}
