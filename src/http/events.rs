//! `GET /api/v1/panel/events`: the live [`Panel`] as server-sent events, for
//! the web page and anything else that would rather be told than poll.
//!
//! # Protocol
//! The stream opens with `retry: 2000` and an `event: panel` whose `data`
//! is the panel JSON (the same document as `GET /api/v1/panel`, pending
//! list capped at [`PENDING_LIMIT`]). After that, an `event: panel` is sent
//! whenever the panel changes, and a `: keep-alive` comment after
//! [`KEEP_ALIVE`] without any, so that proxies and idle timeouts leave the
//! connection open.
//!
//! # Authentication
//! Read role. `EventSource` cannot send headers, so the token may also come
//! as `?token=`; see [`super::auth::authorize_header_or_query`].
//!
//! # Cost
//! Each open stream asks the supervisor for a snapshot every [`POLL`] and
//! compares its JSON with the last one sent. A handful of operator pages
//! is cheap; this is not meant for hundreds of subscribers.
//!
//! # End
//! The stream ends when its token is no longer in force (a reload removed
//! it; checked on every poll), when the daemon begins shutting down or the
//! supervisor is gone; a reconnecting client then gets `503 shutting_down`, so that the
//! HTTP server's graceful stop is never held open by a browser tab.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures::{stream, StreamExt};
use groundcrew_actors::PanelSnapshot;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::auth::{authorize_header_or_query, still_grants};
use super::{ApiError, ApiState};
use crate::auth::{Role, Secret};

/// How often each stream looks at the panel.
const POLL: Duration = Duration::from_millis(250);
/// Longest silence before a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Reconnection delay suggested to the client, in milliseconds.
const RETRY_MS: u64 = 2000;
/// Most pending tasks listed per event; `pending_total` counts them all.
const PENDING_LIMIT: usize = 200;

pub(super) async fn stream(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (_, token) = authorize_header_or_query(&req, Role::Read)?;
    if state.control.stopping() {
        return Err(ApiError::ShuttingDown);
    }
    // The first snapshot is taken before answering, so that a supervisor
    // that is gone shows as a status code rather than an empty stream.
    let first = snapshot(&state).await?;
    let head = Bytes::from(format!("retry: {RETRY_MS}\n{}", event(&first)));
    let mut tick = interval_at(Instant::now() + POLL, POLL);
    // A slow client must not cause a burst of snapshots to catch up.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        state,
        token,
        last: first,
        last_write: Instant::now(),
        tick,
    };
    let body = stream::once(async { Ok::<_, Infallible>(head) })
        .chain(stream::unfold(feed, |feed| feed.next()));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// One stream's state between chunks.
struct Feed {
    state: web::Data<ApiState>,
    /// The token the stream was opened with, checked again on every poll.
    token: Secret,
    /// The panel JSON last sent.
    last: String,
    last_write: Instant,
    tick: Interval,
}

impl Feed {
    /// Waits for the next chunk worth sending: a changed panel or a
    /// keep-alive. `None` ends the stream.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            self.tick.tick().await;
            // A reload that removed the token ends its stream: revoking a
            // token must not leave a panel feed open to its holder.
            if self.state.control.stopping() || !still_grants(&self.state, &self.token, Role::Read)
            {
                return None;
            }
            let panel = snapshot(&self.state).await.ok()?;
            if panel != self.last {
                let chunk = Bytes::from(event(&panel));
                self.last = panel;
                self.last_write = Instant::now();
                return Some((Ok(chunk), self));
            }
            if self.last_write.elapsed() >= KEEP_ALIVE {
                self.last_write = Instant::now();
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
            }
        }
    }
}

/// The panel as compact JSON: one line, as an SSE `data` field needs.
async fn snapshot(state: &ApiState) -> Result<String, ApiError> {
    let panel = state
        .supervisor
        .send(PanelSnapshot {
            pending_limit: PENDING_LIMIT,
        })
        .await?;
    serde_json::to_string(&panel).map_err(|e| ApiError::internal("panel encoding failed", &e))
}

fn event(panel_json: &str) -> String {
    format!("event: panel\ndata: {panel_json}\n\n")
}
