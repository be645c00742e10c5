//! `GET /api/v1/panel/events`: the live [`Panel`] as server-sent events, for
//! the web page and anything else that would rather be told than poll.
//!
//! # Protocol
//! The stream opens with `retry: 2000` and an `event: panel` whose `data`
//! is the panel JSON (the same document as `GET /api/v1/panel`, pending
//! list capped at 200 tasks). After that, an `event: panel` is sent
//! whenever the panel changes, and a `: keep-alive` comment after
//! [`KEEP_ALIVE`] without any, so that proxies and idle timeouts leave the
//! connection open.
//!
//! # Authentication
//! Read role. `EventSource` cannot send headers, so the token may also come
//! as `?token=`; see [`super::auth::authorize_header_or_query`].
//!
//! # Cost
//! Every stream shares one snapshot (see `panel_feed.rs`): the supervisor
//! builds one panel per [`POLL`] however many streams are open, and each
//! change is encoded once. At most 256 streams are open at once; beyond,
//! `503 too_many_streams`.
//!
//! # End
//! The stream ends when its token is no longer in force (a reload removed
//! it; checked on every poll), when the daemon begins shutting down or the
//! supervisor is gone; a reconnecting client then gets `503 shutting_down`, so that the
//! HTTP server's graceful stop is never held open by a browser tab.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures::{stream, StreamExt};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::auth::{authorize_header_or_query, still_grants};
use super::panel_feed::{SubscribeError, Subscription, POLL};
use super::{ApiError, ApiState};
use crate::auth::{Role, Secret};

/// Longest silence before a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Reconnection delay suggested to the client, in milliseconds.
const RETRY_MS: u64 = 2000;

pub(super) async fn stream(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (_, token) = authorize_header_or_query(&req, Role::Read)?;
    if state.control.stopping() {
        return Err(ApiError::ShuttingDown);
    }
    // The first snapshot is there before answering, so that a supervisor
    // that is gone shows as a status code rather than an empty stream.
    let mut subscription = match state.panel_feed.subscribe(&state.supervisor).await {
        Ok(s) => s,
        Err(SubscribeError::Full) => return Err(ApiError::TooManyStreams),
        Err(SubscribeError::Gone) => return Err(ApiError::ShuttingDown),
    };
    let first: Arc<str> = subscription.panel.borrow_and_update().clone();
    let head = Bytes::from(format!("retry: {RETRY_MS}\n{}", event(&first)));
    let mut tick = interval_at(Instant::now() + POLL, POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        state,
        token,
        subscription,
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
    /// The token the stream was opened with, checked again on every tick.
    token: Secret,
    /// The shared panel; dropping it closes this stream's place.
    subscription: Subscription,
    last_write: Instant,
    /// Re-checks the token and the keep-alive between changes.
    tick: Interval,
}

impl Feed {
    /// Waits for the next chunk worth sending: a changed panel or a
    /// keep-alive. `None` ends the stream.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            let changed = tokio::select! {
                changed = self.subscription.panel.changed() => Some(changed),
                _ = self.tick.tick() => None,
            };
            // A reload that removed the token ends its stream: revoking a
            // token must not leave a panel feed open to its holder.
            if self.state.control.stopping() || !still_grants(&self.state, &self.token, Role::Read)
            {
                return None;
            }
            match changed {
                // The poller ended: the supervisor is gone.
                Some(Err(_)) => return None,
                Some(Ok(())) => {
                    let panel = self.subscription.panel.borrow_and_update().clone();
                    self.last_write = Instant::now();
                    return Some((Ok(Bytes::from(event(&panel))), self));
                }
                None if self.last_write.elapsed() >= KEEP_ALIVE => {
                    self.last_write = Instant::now();
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
                None => {}
            }
        }
    }
}

fn event(panel_json: &str) -> String {
    format!("event: panel\ndata: {panel_json}\n\n")
}
