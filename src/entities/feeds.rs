//! [`Feeds`]: the daemon's feeds and what follows from them. It reads feed
//! files into the [`Catalog`], turns what changed into artifact tasks with
//! the right trigger (`feed_update`, `health_transition`, `startup`,
//! `config_reload`), and runs the integrity check.

use crate::entities::guard::{FeedGuard, Refusal};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use actix::Addr;
use groundcrew_actors::{EntityName, FsSink, Manifest, Rebuild, Supervisor, Trigger};
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::Serialize;

use super::catalog::{Catalog, Expected, FeedStatus};
use super::file_hashes::FileHashes;
use super::integrity::{self, EntityReport};
use super::ARTIFACT_KIND;
use crate::feed::{feed_version, parse, FeedFormat, SAMPLE_FEED};

/// Where a feed's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedOrigin {
    /// A file, re-read when it changes.
    File(PathBuf),
    /// The sample feed compiled into the binary.
    Builtin,
}

/// One configured feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedSource {
    /// Its name in the API and in artifact versions.
    pub name: String,
    /// Where it is read from.
    pub origin: FeedOrigin,
    /// Its format.
    pub format: FeedFormat,
    /// What a reading must keep to, to replace the content in force.
    pub guard: FeedGuard,
}

impl FeedSource {
    /// The sample feed the daemon uses when none is configured.
    pub fn sample() -> Self {
        FeedSource {
            name: "sample".into(),
            origin: FeedOrigin::Builtin,
            format: FeedFormat::Ip2asn,
            guard: FeedGuard::default(),
        }
    }
}

/// A feed could not be read or does not exist.
#[derive(Debug, thiserror::Error)]
pub enum FeedsError {
    /// No feed of that name is configured.
    #[error("unknown feed {0:?}")]
    UnknownFeed(String),
    /// Reading the file failed; the previous content stays in force.
    #[error("cannot read feed {name:?} from {path}")]
    Read {
        /// Feed.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The supervisor is gone (shutting down).
    #[error("the supervisor is not running")]
    Stopped,
    /// An accept for a feed whose last reading was not refused.
    #[error("feed {0:?} has no refused reading to accept")]
    NothingRefused(String),
}

/// What became of one reading.
enum Reading {
    /// In force: what changed, and its bad lines.
    InForce(crate::feed::FeedDiff, u64),
    /// Refused by the feed's guard; the previous content stays.
    Refused(Refusal),
}

/// What reading a feed changed and what was queued for it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FeedUpdate {
    /// Feed name.
    pub feed: String,
    /// Entities whose artifact content changed or that are new.
    pub changed: usize,
    /// Entities no longer in any feed.
    pub removed: usize,
    /// Lines that could not be read.
    pub bad_line_count: u64,
    /// Tasks queued (or merged into queued ones) for the change.
    pub tasks: usize,
    /// Whether refreshes were held back because the feed is unhealthy.
    pub held: bool,
    /// Why the reading was refused (the previous content stays in force
    /// until an operator accepts it), if it was.
    pub refused: Option<String>,
}

/// The daemon's feeds, their expected artifacts, and the tasks they cause.
pub struct Feeds {
    catalog: RwLock<Catalog>,
    sources: Mutex<Vec<FeedSource>>,
    /// Per unhealthy feed, every entity its held-back changes touched
    /// (changed, added or removed), merged across updates: applied whole
    /// when the feed turns healthy.
    held: Mutex<BTreeMap<String, BTreeSet<EntityName>>>,
    supervisor: OnceLock<Addr<Supervisor>>,
    manifest: Arc<dyn Manifest>,
    sink: Arc<FsSink>,
    /// Where artifacts live instead of `sink` with `artifacts.sink:
    /// postgres`: the integrity check hashes the stored content there.
    stored: Option<Arc<crate::store::PostgresStore>>,
    /// Artifact hashes by file identity, so that a check reads only the
    /// files that changed.
    hashes: Arc<FileHashes>,
    /// `groundcrew_feed_readings_refused_total{feed,reason}`.
    refused: IntCounterVec,
    /// `groundcrew_feed_healthy{feed}`: 1, or 0 while marked unhealthy or
    /// its last reading refused.
    healthy: IntGaugeVec,
}

impl std::fmt::Debug for Feeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeds")
            .field("sources", &self.sources())
            .finish_non_exhaustive()
    }
}

impl Feeds {
    /// Feeds read from `sources`; nothing is read until [`Feeds::load_all`].
    pub fn new(sources: Vec<FeedSource>, manifest: Arc<dyn Manifest>, sink: Arc<FsSink>) -> Self {
        Self {
            catalog: RwLock::default(),
            sources: Mutex::new(sources),
            held: Mutex::default(),
            supervisor: OnceLock::new(),
            manifest,
            sink,
            stored: None,
            hashes: Arc::default(),
            refused: IntCounterVec::new(
                Opts::new(
                    "groundcrew_feed_readings_refused_total",
                    "Feed readings refused by the feed's guard (bad lines, dropped entities).",
                ),
                &["feed", "reason"],
            )
            .expect("valid metric"),
            healthy: IntGaugeVec::new(
                Opts::new(
                    "groundcrew_feed_healthy",
                    "Whether the feed is healthy (1): not marked unhealthy, last reading not refused.",
                ),
                &["feed"],
            )
            .expect("valid metric"),
        }
    }

    /// Registers the feeds' metrics with `registry`.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.healthy.clone()))
    }

    /// Sets `groundcrew_feed_healthy` of one feed from its status.
    fn note_health(&self, name: &str) {
        let healthy = self
            .read()
            .statuses()
            .into_iter()
            .find(|s| s.name == name)
            .is_none_or(|s| s.healthy);
        self.healthy
            .with_label_values(&[name])
            .set(i64::from(healthy));
    }

    /// Connects the supervisor that runs the artifact tasks.
    pub fn attach(&self, supervisor: Addr<Supervisor>) {
        let _ = self.supervisor.set(supervisor);
    }

    /// The expected artifact of an entity.
    pub fn expected(&self, entity: &EntityName) -> Option<Arc<Expected>> {
        self.read().expected(entity)
    }

    /// The expected content of an entity with the version of all feeds it
    /// was read with, both from one snapshot of the catalog: a version read
    /// apart from the content could name an older or newer reading.
    pub fn current(&self, entity: &EntityName) -> (Option<Vec<u8>>, String) {
        let catalog = self.read();
        (catalog.render(entity), catalog.version())
    }

    /// Every expected artifact.
    pub fn all(&self) -> Vec<(EntityName, Arc<Expected>)> {
        self.read().all()
    }

    /// The version of all feeds together.
    pub fn version(&self) -> String {
        self.read().version()
    }

    /// Status of every feed.
    pub fn statuses(&self) -> Vec<FeedStatus> {
        self.read().statuses()
    }

    /// Whether every configured feed has been read at least once. Until
    /// then an entity missing from the catalog may just be in the feed not
    /// yet read, so no artifact is removed.
    pub fn complete(&self) -> bool {
        let sources = self.sources();
        let catalog = self.read();
        sources.iter().all(|s| catalog.is_loaded(&s.name))
    }

    /// The manifest artifacts are recorded in.
    pub fn manifest(&self) -> &Arc<dyn Manifest> {
        &self.manifest
    }

    /// Reads every configured feed, queueing nothing: for start-up, before
    /// the integrity check decides what needs repair.
    pub async fn load_all(&self) {
        let names: Vec<String> = self.sources().iter().map(|s| s.name.clone()).collect();
        for name in names {
            if let Err(e) = self.read_feed(&name, false).await {
                tracing::error!(feed = %name, error = %error_chain(&e), "feed not loaded");
            }
        }
    }

    /// Re-reads one feed and queues refreshes for the entities whose
    /// artifact changed, with `trigger`.
    pub async fn update(&self, name: &str, trigger: Trigger) -> Result<FeedUpdate, FeedsError> {
        self.apply_reading(name, trigger, false).await
    }

    /// Reads a feed whose last reading was refused by its guard and puts it
    /// in force anyway, as an operator decided; refreshes what it changes.
    pub async fn accept(&self, name: &str) -> Result<FeedUpdate, FeedsError> {
        if !self.read().has_feed(name) {
            return Err(FeedsError::UnknownFeed(name.to_owned()));
        }
        if self.read().refusal(name).is_none() {
            return Err(FeedsError::NothingRefused(name.to_owned()));
        }
        tracing::warn!(feed = name, "refused feed reading accepted by an operator");
        self.apply_reading(name, Trigger::Operator, true).await
    }

    async fn apply_reading(
        &self,
        name: &str,
        trigger: Trigger,
        accept: bool,
    ) -> Result<FeedUpdate, FeedsError> {
        let (diff, bad_line_count) = match self.read_feed(name, accept).await? {
            Reading::InForce(diff, bad) => (diff, bad),
            Reading::Refused(refusal) => {
                return Ok(FeedUpdate {
                    feed: name.to_owned(),
                    refused: Some(refusal.to_string()),
                    ..FeedUpdate::default()
                })
            }
        };
        let healthy = self.read().is_healthy(name);
        let entities: BTreeSet<EntityName> =
            diff.changed.iter().chain(&diff.removed).cloned().collect();
        let mut update = FeedUpdate {
            feed: name.to_owned(),
            changed: diff.changed.len(),
            removed: diff.removed.len(),
            bad_line_count,
            tasks: 0,
            held: !healthy && !entities.is_empty(),
            refused: None,
        };
        if healthy {
            update.tasks = self.refresh(entities, trigger).await?;
        } else {
            self.held_back()
                .entry(name.to_owned())
                .or_default()
                .extend(entities);
        }
        tracing::info!(
            feed = name,
            changed = update.changed,
            removed = update.removed,
            tasks = update.tasks,
            held = update.held,
            "feed read"
        );
        Ok(update)
    }

    /// Marks a feed healthy or unhealthy. An unhealthy→healthy transition
    /// refreshes the feed's entities and every entity its held-back changes
    /// touched, removals included; returns the tasks queued.
    pub async fn set_health(&self, name: &str, healthy: bool) -> Result<usize, FeedsError> {
        let previous = self
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set_health(name, healthy)
            .ok_or_else(|| FeedsError::UnknownFeed(name.to_owned()))?;
        tracing::info!(feed = name, previous, healthy, "feed health");
        self.note_health(name);
        if previous || !healthy {
            return Ok(0);
        }
        let mut entities: BTreeSet<EntityName> =
            self.read().entities_of(name).into_iter().collect();
        entities.extend(self.held_back().remove(name).unwrap_or_default());
        self.refresh(entities, Trigger::HealthTransition).await
    }

    /// Replaces the configured feeds (configuration reload): dropped feeds'
    /// entities and changed or new feeds are refreshed with `config_reload`.
    pub async fn reconfigure(&self, sources: Vec<FeedSource>) -> Result<usize, FeedsError> {
        let old = std::mem::replace(
            &mut *self.sources.lock().unwrap_or_else(|e| e.into_inner()),
            sources.clone(),
        );
        let mut tasks = 0;
        for gone in old
            .iter()
            .filter(|o| !sources.iter().any(|s| s.name == o.name))
        {
            let held = self.held_back().remove(&gone.name).unwrap_or_default();
            let diff = self
                .catalog
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&gone.name);
            tasks += self
                .refresh(
                    diff.changed
                        .into_iter()
                        .chain(diff.removed)
                        .chain(held)
                        .collect(),
                    Trigger::ConfigReload,
                )
                .await?;
        }
        for source in sources.iter().filter(|s| !old.contains(s)) {
            match self.update(&source.name, Trigger::ConfigReload).await {
                Ok(update) => tasks += update.tasks,
                Err(FeedsError::Stopped) => return Err(FeedsError::Stopped),
                Err(e) => {
                    tracing::warn!(feed = %source.name, error = %error_chain(&e), "feed not read after reload")
                }
            }
        }
        Ok(tasks)
    }

    /// Checks artifacts in `store` (`artifacts.sink: postgres`) instead of
    /// the files of the sink.
    pub fn stored_in(mut self, store: Arc<crate::store::PostgresStore>) -> Self {
        self.stored = Some(store);
        self
    }

    /// Checks every artifact against the feeds, the manifest and the disk
    /// (reading only the files that changed since the last check).
    pub async fn integrity(&self) -> Result<Vec<EntityReport>, groundcrew_actors::StoreError> {
        let expected = self.all();
        let records = self.manifest.artifacts().await?;
        if let Some(store) = &self.stored {
            let stored = store.artifact_hashes().await?;
            return Ok(integrity::check_hashes(expected, records, |e| {
                stored.get(e.as_str()).cloned().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no stored artifact")
                })
            }));
        }
        let sink = Arc::clone(&self.sink);
        let hashes = Arc::clone(&self.hashes);
        let reports = tokio::task::spawn_blocking(move || {
            integrity::check(
                expected,
                records,
                |e| sink.artifact_path(e).unwrap_or_default(),
                &hashes,
            )
        })
        .await
        .expect("integrity check does not panic");
        Ok(reports)
    }

    /// Hashes every artifact file the manifest records, as the first check
    /// would (a full read: see [`FileHashes`]), without the feeds: started
    /// beside [`Feeds::load_all`] at start-up, so that reading the files
    /// and reading the feeds overlap, and the start-up check that follows
    /// only finds the files unchanged.
    pub async fn prehash(&self) {
        if self.stored.is_some() {
            return;
        }
        let records = match self.manifest.artifacts().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the manifest to hash artifacts");
                return;
            }
        };
        let sink = Arc::clone(&self.sink);
        let hashes = Arc::clone(&self.hashes);
        let read = tokio::task::spawn_blocking(move || {
            let mut pass = hashes.pass();
            for record in &records {
                if let Ok(path) = sink.artifact_path(&record.entity) {
                    // A file that cannot be read is the check's to report.
                    let _ = pass.hash(&path);
                }
            }
        });
        if read.await.is_err() {
            tracing::warn!("hashing artifacts at start-up did not finish");
        }
    }

    /// Runs the integrity check and queues a repair for every entity that
    /// needs one, with `trigger`; returns the tasks queued.
    pub async fn repair(&self, trigger: Trigger) -> Result<usize, FeedsError> {
        let reports = match self.integrity().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "integrity check could not read the manifest");
                return Ok(0);
            }
        };
        let due: BTreeSet<EntityName> = reports
            .iter()
            .filter(|r| r.state.needs_repair())
            .map(|r| r.entity.clone())
            .collect();
        tracing::info!(checked = reports.len(), repairs = due.len(), trigger = %trigger, "integrity check");
        self.refresh(due, trigger).await
    }

    /// Queues artifact tasks for `entities`: one per entity, or a single
    /// full rebuild when there are many ([`Rebuild`]'s rule: cheaper to
    /// queue, and the writer skips unchanged artifacts anyway).
    pub async fn refresh(
        &self,
        entities: BTreeSet<EntityName>,
        trigger: Trigger,
    ) -> Result<usize, FeedsError> {
        let supervisor = self.supervisor.get().ok_or(FeedsError::Stopped)?;
        if entities.is_empty() {
            return Ok(0);
        }
        let rebuild = Rebuild {
            trigger,
            ..Rebuild::new(ARTIFACT_KIND, entities.into_iter().collect())
        };
        let replies = supervisor
            .send(rebuild)
            .await
            .map_err(|_| FeedsError::Stopped)?;
        let mut queued = 0;
        for (target, reply) in replies {
            match reply {
                Ok(_) => queued += 1,
                Err(e) => tracing::warn!(%target, error = %e, "artifact task not queued"),
            }
        }
        Ok(queued)
    }

    /// Reads a feed into the catalog unless its guard refuses the reading
    /// (`accept` overrides the guard); returns what changed.
    async fn read_feed(&self, name: &str, accept: bool) -> Result<Reading, FeedsError> {
        let reading = self.read_feed_unnoted(name, accept).await;
        self.note_health(name);
        reading
    }

    async fn read_feed_unnoted(&self, name: &str, accept: bool) -> Result<Reading, FeedsError> {
        let source = self
            .sources()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| FeedsError::UnknownFeed(name.to_owned()))?;
        let guard = source.guard;
        let read = tokio::task::spawn_blocking(move || read_source(&source))
            .await
            .expect("feed reading does not panic");
        let (parsed, version) = match read {
            Ok(r) => r,
            Err(e) => {
                self.catalog
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .record_error(name, error_chain(&e));
                return Err(e);
            }
        };
        if parsed.bad_line_count > 0 {
            let first = parsed
                .bad_lines
                .first()
                .map(|b| format!("line {}: {}", b.line, b.reason))
                .unwrap_or_default();
            tracing::warn!(feed = name, bad_lines = parsed.bad_line_count, first = %first, "feed has lines that could not be read");
        }
        let bad = parsed.bad_line_count;
        // An empty first reading is checked against what is published: the
        // manifest is only read then (rare), outside the catalog's lock.
        let first = !self.read().is_loaded(name);
        let published = if first && parsed.ranges_by_entity.is_empty() {
            self.manifest
                .artifacts()
                .await
                .map(|a| a.len())
                .unwrap_or(0)
        } else {
            0
        };
        let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        let in_force = catalog.entities_of(name).into_iter().collect();
        let verdict = if first {
            guard.check_first(&parsed, published)
        } else {
            guard.check(&parsed, &in_force)
        };
        if let (false, Err(refusal)) = (accept, verdict) {
            tracing::error!(feed = name, reason = %refusal, "feed reading refused; the previous content stays in force");
            self.refused
                .with_label_values(&[name, refusal.reason()])
                .inc();
            catalog.record_refusal(name, refusal.to_string());
            return Ok(Reading::Refused(refusal));
        }
        let diff = catalog.replace(name, parsed, version);
        Ok(Reading::InForce(diff, bad))
    }

    fn held_back(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<EntityName>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sources(&self) -> Vec<FeedSource> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configured feeds.
    pub fn configured(&self) -> Vec<FeedSource> {
        self.sources()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads and parses one feed (blocking).
fn read_source(source: &FeedSource) -> Result<(crate::feed::ParsedFeed, String), FeedsError> {
    let bytes = match &source.origin {
        FeedOrigin::Builtin => SAMPLE_FEED.as_bytes().to_vec(),
        FeedOrigin::File(path) => std::fs::read(path).map_err(|e| FeedsError::Read {
            name: source.name.clone(),
            path: path.clone(),
            source: e,
        })?,
    };
    let version = feed_version(&bytes);
    let parsed = parse(source.format, bytes.as_slice()).map_err(|e| FeedsError::Read {
        name: source.name.clone(),
        path: match &source.origin {
            FeedOrigin::File(p) => p.clone(),
            FeedOrigin::Builtin => PathBuf::from("<builtin sample>"),
        },
        source: std::io::Error::other(e),
    })?;
    Ok((parsed, version))
}

/// An error with its causes, for logs and API messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
