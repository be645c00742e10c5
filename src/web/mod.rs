//! The operator web page: one HTML page, its script and its stylesheet,
//! embedded in the binary so that the daemon serves them with no files on
//! disk and no fetches from elsewhere (these hosts often have no internet).
//!
//! The page needs no token to load; it asks for one and calls the admin API
//! with it (see [`crate::http`]). Every asset carries
//! `Content-Security-Policy: default-src 'self'` (plus no framing), so the
//! page may run only its own script and style: no inline code, nothing from
//! another origin. `Cache-Control: no-cache` makes a browser revalidate, so
//! that a daemon upgrade never pairs an old script with a new API.

use actix_web::http::header;
use actix_web::{guard, web, HttpResponse};

/// The policy on every asset. `frame-ancestors` is not covered by
/// `default-src`, so clickjacking is refused separately.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Every asset: path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    // One script from several files, each a part of the page built on
    // app.js's helpers: a task's own page, the failed list's bulk actions.
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        concat!(
            include_str!("assets/app.js"),
            include_str!("assets/task.js"),
            include_str!("assets/bulk.js"),
        ),
    ),
    (
        "/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/charts.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    // Served so that a browser's automatic favicon request finds one
    // instead of logging a 404 on every load.
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

/// Mounts the page's assets (`/`, `/app.js`, `/charts.js`, `/style.css`,
/// `/favicon.svg`) for GET and HEAD. Call it before
/// [`crate::http::configure`], whose `/api` fallback must come last.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for &(path, content_type, body) in ASSETS {
        cfg.route(
            path,
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(move || asset(content_type, body)),
        );
    }
}

async fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}
