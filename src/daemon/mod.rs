//! The `groundcrew serve` daemon: opens the store, starts the entity
//! writer, the supervisor and the admin API, prunes history on a timer,
//! reloads its configuration on SIGHUP, and drains on SIGTERM/SIGINT.
//!
//! ```text
//!  config ─▶ SqliteStore or PostgresStore ─┬─▶ EntityWriter ─▶ FsSink (<data>/artifacts)
//!                                          └─▶ Supervisor (kinds: test, …)
//!                                                   ▲
//!  admin API (actix-web) ───────────────────────────┘   signals: HUP → reload, TERM/INT → drain
//! ```

mod reload;
mod run;

pub(crate) use run::serve;
