//! The admin HTTP API: a JSON face on the supervisor and the task store,
//! mounted into the daemon's actix-web `App` with [`configure`].
//!
//! Every route lives in one table, [`ROUTES`], which [`configure`] mounts and
//! the tests compare against the OpenAPI document served at
//! `/api/v1/openapi.json`, so the document cannot drift from the code.
//!
//! # Errors
//! Every failure is JSON, `{"error": {"code": "...", "message": "..."}}`,
//! sometimes with more fields (`parameter`, `target`, `line`, ...). The
//! extractor error handlers are replaced so that actix-web's plain-text
//! defaults never reach a client; see [`ApiError`] for the codes.
//!
//! # Authentication
//! `Authorization: Bearer <token>`, checked against [`ApiState::tokens`]:
//! GET routes need [`Role::Read`], every other route [`Role::Operate`].
//! `/healthz` and the OpenAPI document need none; `/metrics` needs a read
//! token only when [`ApiState::metrics_require_token`] is set. The panel
//! event stream alone also takes the token as `?token=`, since a browser's
//! `EventSource` cannot send headers. Mutating requests are logged with the
//! token's name, never its value; no request URL is logged.
//!
//! [`Role::Read`]: crate::auth::Role::Read
//! [`Role::Operate`]: crate::auth::Role::Operate

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use actix::Addr;
use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use futures::future::BoxFuture;
use groundcrew_actors::{Supervisor, TaskLog, TaskStore};
use serde::Serialize;

use crate::auth::TokenSet;
use crate::entities::Feeds;

mod auth;
mod bulk;
mod error;
mod events;
mod feeds;
mod json;
mod panel;
mod panel_feed;
mod pools;
mod rebuild;
mod stats;
mod submit;
mod system;
mod task_log;
mod tasks;
mod whoami;

pub use panel_feed::PanelFeed;

pub use error::ApiError;

/// What the handlers share: the runtime, the store, metrics, tokens and the
/// daemon's hooks.
pub struct ApiState {
    /// The runtime's supervisor.
    pub supervisor: Addr<Supervisor>,
    /// The task history the supervisor journals to.
    pub store: Arc<dyn TaskStore>,
    /// The tasks' log lines (the same store, as a rule).
    pub task_log: Arc<dyn TaskLog>,
    /// What `/metrics` exposes.
    pub metrics: prometheus::Registry,
    /// Accepted tokens; behind a lock so that a config reload can swap them.
    pub tokens: Arc<RwLock<TokenSet>>,
    /// Whether `/metrics` needs a read token.
    pub metrics_require_token: bool,
    /// The daemon's own operations (config reload).
    pub control: Arc<dyn Control>,
    /// Kind used by `POST /api/v1/rebuild` when the body names none.
    pub rebuild_kind: String,
    /// The feeds and their entities' artifacts.
    pub feeds: Arc<Feeds>,
    /// The panel snapshot every event stream shares.
    pub panel_feed: PanelFeed,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are left out on purpose: their names are harmless but the
        // set is the one place secrets live.
        f.debug_struct("ApiState")
            .field("metrics_require_token", &self.metrics_require_token)
            .field("rebuild_kind", &self.rebuild_kind)
            .finish_non_exhaustive()
    }
}

/// Operations the daemon performs on the API's behalf.
pub trait Control: Send + Sync + 'static {
    /// Re-reads the configuration and applies it; on error nothing changes.
    fn reload(&self) -> BoxFuture<'static, Result<(), ReloadError>>;

    /// Whether the daemon has begun shutting down. Long-lived responses
    /// (the panel event stream) end once it has, so that they do not hold
    /// the HTTP server's graceful stop open until its timeout.
    fn stopping(&self) -> bool {
        false
    }

    /// How command kinds are isolated (`cgroup` or `subreaper`), for
    /// `GET /api/v1/system`; `None` where no daemon set it up.
    fn kinds_isolation(&self) -> Option<&'static str> {
        None
    }
}

/// Why a configuration reload was refused. Serialized into the `400`
/// answer of `POST /api/v1/reload`, beside `code` and `message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ReloadError {
    /// What is wrong.
    pub message: String,
    /// The file that holds the error.
    pub file: Option<String>,
    /// 1-based line in `file`.
    pub line: Option<usize>,
    /// 1-based column in `line`.
    pub column: Option<usize>,
    /// The offending key, dotted (`pools.background`).
    pub key: Option<String>,
}

/// One route of the API: method, path (actix syntax, which is also the
/// OpenAPI path syntax) and how to attach its handler.
#[derive(Clone)]
pub struct ApiRoute {
    /// HTTP method.
    pub method: Method,
    /// Full path, e.g. `/api/v1/tasks/{id}`.
    pub path: &'static str,
    mount: fn(actix_web::Route) -> actix_web::Route,
}

impl fmt::Debug for ApiRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

const fn route(
    method: Method,
    path: &'static str,
    mount: fn(actix_web::Route) -> actix_web::Route,
) -> ApiRoute {
    ApiRoute {
        method,
        path,
        mount,
    }
}

/// Every route [`configure`] mounts.
pub const ROUTES: &[ApiRoute] = &[
    route(Method::GET, "/healthz", |r| r.to(system::healthz)),
    route(Method::GET, "/metrics", |r| r.to(system::metrics)),
    route(Method::GET, "/api/v1/openapi.json", |r| {
        r.to(system::openapi)
    }),
    route(Method::POST, "/api/v1/reload", |r| r.to(system::reload)),
    route(Method::GET, "/api/v1/panel", |r| r.to(panel::show)),
    route(Method::GET, "/api/v1/panel/events", |r| {
        r.to(events::stream)
    }),
    route(Method::GET, "/api/v1/whoami", |r| r.to(whoami::show)),
    route(Method::GET, "/api/v1/system", |r| r.to(system::show)),
    route(Method::GET, "/api/v1/stats", |r| r.to(stats::show)),
    route(Method::GET, "/api/v1/tasks", |r| r.to(tasks::list)),
    route(Method::POST, "/api/v1/tasks", |r| r.to(submit::submit)),
    route(Method::DELETE, "/api/v1/tasks", |r| r.to(bulk::delete)),
    route(Method::POST, "/api/v1/tasks/retry", |r| r.to(bulk::retry)),
    route(Method::GET, "/api/v1/tasks/{id}", |r| r.to(tasks::show)),
    route(Method::DELETE, "/api/v1/tasks/{id}", |r| {
        r.to(tasks::delete)
    }),
    route(Method::POST, "/api/v1/tasks/{id}/retry", |r| {
        r.to(submit::retry)
    }),
    route(Method::GET, "/api/v1/tasks/{id}/log", |r| {
        r.to(task_log::show)
    }),
    route(Method::POST, "/api/v1/rebuild", |r| r.to(rebuild::rebuild)),
    route(Method::PUT, "/api/v1/pools/{pool}/limit", |r| {
        r.to(pools::set_limit)
    }),
    route(Method::GET, "/api/v1/feeds", |r| r.to(feeds::list)),
    route(Method::POST, "/api/v1/feeds/{name}/updated", |r| {
        r.to(feeds::updated)
    }),
    route(Method::POST, "/api/v1/feeds/{name}/accept", |r| {
        r.to(feeds::accept)
    }),
    route(Method::POST, "/api/v1/feeds/{name}/health", |r| {
        r.to(feeds::health)
    }),
    route(Method::GET, "/api/v1/entities", |r| r.to(feeds::entities)),
    route(Method::POST, "/api/v1/entities/rebuild", |r| {
        r.to(feeds::rebuild)
    }),
];

/// Mounts every route of [`ROUTES`] with its shared state, JSON bodies
/// limited to `max_body_bytes`.
///
/// Unknown paths under `/api` answer a JSON `404`, and a known path with
/// another method a JSON `405`. Routes the daemon adds itself outside `/api`
/// (a web page) are unaffected; routes it adds under `/api` must be
/// registered before this call, since the `/api` fallback comes last.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<ApiState>, max_body_bytes: usize) {
    cfg.app_data(state);
    // The extractor configs go on the API's own resources, not the whole
    // app, so that routes the daemon adds keep their own limits and errors.
    let json = web::JsonConfig::default()
        .limit(max_body_bytes)
        .error_handler(|e, _| ApiError::from(e).into());
    let path = web::PathConfig::default().error_handler(|e, _| ApiError::from(e).into());
    let query = web::QueryConfig::default().error_handler(|e, _| ApiError::from(e).into());

    // One resource per path, so that a wrong method finds the path and
    // answers 405 instead of falling through to 404.
    let mut by_path: BTreeMap<&str, Vec<&ApiRoute>> = BTreeMap::new();
    for r in ROUTES {
        by_path.entry(r.path).or_default().push(r);
    }
    for (pattern, routes) in by_path {
        let allow: Vec<Method> = routes.iter().map(|r| r.method.clone()).collect();
        let mut resource =
            web::resource(pattern)
                .app_data(json.clone())
                .app_data(path.clone())
                .app_data(query.clone())
                .default_service(web::to(move || {
                    let allow = allow.clone();
                    async move {
                        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allow })
                    }
                }));
        for r in routes {
            resource = resource.route((r.mount)(web::route().method(r.method.clone())));
        }
        cfg.service(resource);
    }
    cfg.service(web::scope("/api").default_service(web::to(route_not_found)));
}

async fn route_not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound {
        path: req.path().to_owned(),
    })
}
