//! The operator web page as the real daemon serves it: the embedded assets
//! with their content types and security headers, and the panel event
//! stream the page listens to. The page's behaviour in a browser is tested
//! by `web-tests/` (headless Chromium).

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::Daemon;

/// GET without a token; status, content type, CSP and cache headers, body.
fn get(daemon: &Daemon, path: &str) -> (u16, String, String, String, String) {
    let resp = Daemon::agent()
        .get(format!("{}{path}", daemon.base))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, content_type, csp, cache) = (
        resp.status().as_u16(),
        header("content-type"),
        header("content-security-policy"),
        header("cache-control"),
    );
    let body = resp.into_body().read_to_string().unwrap();
    (status, content_type, csp, cache, body)
}

#[test]
fn page_assets_are_served_without_a_token_with_types_and_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    for (path, content_type, marker) in [
        ("/", "text/html; charset=utf-8", "<script src=\"/app.js\""),
        ("/app.js", "text/javascript; charset=utf-8", "EventSource"),
        (
            "/charts.js",
            "text/javascript; charset=utf-8",
            "/api/v1/stats",
        ),
        ("/style.css", "text/css; charset=utf-8", ".state-broken"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let (status, ct, csp, cache, body) = get(&daemon, path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(ct, content_type, "{path}");
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp:?}");
        assert_eq!(cache, "no-cache", "{path}");
        assert!(body.contains(marker), "{path} lacks {marker:?}");
    }
}

/// The policy forbids inline code, so the page must have none.
#[test]
fn page_has_no_inline_script_or_style() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let (_, _, _, _, html) = get(&daemon, "/");
    assert_eq!(html.matches("<script").count(), 2, "two external scripts");
    assert!(!html.contains("<style"), "no style element");
    assert!(!html.contains("style="), "no style attribute");
    let handler = html.split(" on").skip(1).find(|rest| {
        let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    });
    assert!(handler.is_none(), "inline event handler: on{handler:?}");
}

#[test]
fn panel_event_stream_sends_a_panel_within_a_second_with_a_query_token() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let started = Instant::now();
    let resp = Daemon::agent()
        .get(format!(
            "{}/api/v1/panel/events?token={}",
            daemon.base, daemon.token
        ))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let mut event = None;
    while let Some(line) = lines.next() {
        if line.unwrap() == "event: panel" {
            event = lines.next().map(Result::unwrap);
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "first event after {:?}",
        started.elapsed()
    );
    let data = event.expect("an event: panel");
    let panel: serde_json::Value =
        serde_json::from_str(data.strip_prefix("data: ").expect("a data line")).unwrap();
    assert_eq!(panel["state"], "idle");
}
