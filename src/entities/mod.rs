//! Entity artifacts from feeds: the [`Catalog`] of what each artifact
//! should contain, the [`Feeds`] service that reads feeds and queues
//! artifact tasks with the trigger that caused them, the `artifact` task
//! kind that publishes through the entity writer, the integrity check, and
//! the watcher that notices feed files changing.

mod catalog;
mod feeds;
mod file_hashes;
mod guard;
mod integrity;
mod kind;
mod watch;

pub use catalog::{Catalog, Expected, FeedStatus};
pub use feeds::{error_chain, FeedOrigin, FeedSource, FeedUpdate, Feeds, FeedsError};
pub use file_hashes::FileHashes;
pub use guard::{FeedGuard, Refusal};
pub use integrity::{check, EntityReport, EntityState};
pub use kind::{ArtifactKind, IN_FLIGHT as ARTIFACT_IN_FLIGHT};
pub use watch::watch_feeds;

/// The kind name of artifact tasks.
pub const ARTIFACT_KIND: &str = "artifact";
