//! groundcrew: the standalone daemon around the `groundcrew-actors` runtime.
//!
//! The actor runtime keeps live state in memory and journals every change to
//! a store it is given; this crate supplies the durable one,
//! [`store::SqliteStore`], which implements both
//! [`groundcrew_actors::TaskStore`] and [`groundcrew_actors::Manifest`] on a
//! single SQLite file with group commit.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod auth;
pub mod cli;
pub mod config;
mod daemon;
pub mod entities;
pub mod feed;
pub mod http;
pub mod kinds;
mod logging;
pub mod store;
mod task_log;
pub mod web;
