//! Start-up, the signal loop and shutdown of the daemon.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::Addr;
use actix_web::{App, HttpServer};
use futures::future::BoxFuture;
use groundcrew_actors::{
    ArtifactSink, Drain, EntityWriter, FsSink, KindOptions, Manifest, Metrics, Registry,
    SharedQueue, Supervisor, TaskLog, TaskStore, TestKind, Timestamp, Trigger,
};
use tokio::signal::unix::{signal, SignalKind};

use crate::auth::{self, TokenSet};
use crate::config::{Config, Overrides, StoreLocation};
use crate::entities::{watch_feeds, ArtifactKind, Feeds, ARTIFACT_KIND};
use crate::http::{self, ApiState, Control, ReloadError};
use crate::kinds::{CommandKind, Isolation, IsolationError, TEST_KIND};
use crate::store::{PostgresStore, SqliteStore};
use crate::task_log::{Captured, Shipper};

use super::reload::{ReloadControl, Reloader};

/// The daemon could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory the daemon writes to refused a test write (read-only
    /// file system, full disk, permissions).
    #[error("cannot write to {path}")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::OpenError),
    /// The PostgreSQL store could not be opened.
    #[error(transparent)]
    Postgres(#[from] crate::store::PostgresOpenError),
    /// This node could not join the cluster on PostgreSQL (another daemon
    /// has its name).
    #[error(transparent)]
    Cluster(#[from] crate::store::ClusterError),
    /// The admin token file could not be read or created.
    #[error("cannot read or create admin token file {path}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The artifact directory could not be opened.
    #[error("cannot open artifact directory")]
    Artifacts(#[source] groundcrew_actors::SinkError),
    /// The supervisor did not start.
    #[error("cannot start the supervisor")]
    Supervisor(#[source] groundcrew_actors::StartError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error("cannot register metrics")]
    Metrics(#[source] prometheus::Error),
    /// Command kinds cannot be isolated as configured.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// Waiting for signals or serving failed.
    #[error("i/o error while serving")]
    Io(#[source] std::io::Error),
}

/// The task kinds the daemon runs: the built-in ones and the configured
/// command kinds. The registry is fixed here, so a reloaded `kinds` key
/// takes effect at the next start.
fn kinds(feeds: &Arc<Feeds>, config: &Config, isolation: &Isolation) -> Registry {
    let mut registry = Registry::new();
    let builtin = |timeout| KindOptions {
        timeout,
        ..KindOptions::default()
    };
    let limits = &config.builtin_kinds;
    registry
        .register_with(
            ARTIFACT_KIND,
            ArtifactKind::new(Arc::clone(feeds)),
            builtin(limits.artifact.timeout()),
        )
        .expect("built-in kind names are valid");
    registry
        .register_with(TEST_KIND, TestKind, builtin(limits.test.timeout()))
        .expect("built-in kind names are valid");
    for kind in &config.kinds {
        let options = KindOptions {
            pool: kind.pool.clone(),
            max_attempts: kind.max_attempts,
            timeout: Some(Duration::from_secs(kind.timeout_s)),
            ..KindOptions::default()
        };
        registry
            .register_with(
                &kind.name,
                CommandKind::new(kind, &config.data_dir, isolation.clone()),
                options,
            )
            .expect("configuration validation refuses invalid and taken kind names");
    }
    registry
}

/// Tokens the API accepts: the configured ones, or else the generated admin
/// token from the data directory.
fn tokens(config: &Config) -> Result<TokenSet, ServeError> {
    if !config.tokens.is_empty() {
        return Ok(TokenSet::new(config.tokens.clone()));
    }
    let (secret, created) =
        auth::load_or_create_token(&config.data_dir).map_err(|source| ServeError::TokenFile {
            path: auth::token_file(&config.data_dir),
            source,
        })?;
    let path = auth::token_file(&config.data_dir);
    if created {
        tracing::info!(path = %path.display(), "generated an admin token (role operate)");
    }
    println!("admin token: {}", path.display());
    Ok(TokenSet::generated(secret))
}

/// Runs the daemon until SIGTERM or SIGINT, then drains and returns.
pub(crate) async fn serve(
    config: Config,
    config_file: Option<PathBuf>,
    overrides: Overrides,
    captured: Captured,
) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // A data directory that cannot be written fails here, with its path,
    // rather than answering every request with an error later.
    crate::store::check_writable(&config.data_dir).map_err(|source| ServeError::NotWritable {
        path: config.data_dir.clone(),
        source,
    })?;
    let (store, manifest, task_log, shared, postgres) = open_store(&config)?;
    let tokens = Arc::new(RwLock::new(tokens(&config)?));
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).map_err(ServeError::Metrics)?;
    registry
        .register(Box::new(captured.dropped.clone()))
        .map_err(ServeError::Metrics)?;
    let shipper = Shipper::start(captured.lines, task_log.clone(), captured.dropped);
    let artifacts_dir = config.artifacts_dir();
    std::fs::create_dir_all(&artifacts_dir).map_err(|source| ServeError::DataDir {
        path: artifacts_dir.clone(),
        source,
    })?;
    crate::store::check_writable(&artifacts_dir).map_err(|source| ServeError::NotWritable {
        path: artifacts_dir.clone(),
        source,
    })?;
    let mut sink = FsSink::open(&artifacts_dir).map_err(ServeError::Artifacts)?;
    if let Some(ext) = &config.artifacts.extension {
        sink = sink.with_extension(ext);
    }
    let sink = Arc::new(sink);
    // `artifacts.sink: postgres` is validated to come with a PostgreSQL store.
    let publish_to: Arc<dyn ArtifactSink> = match (config.artifacts.sink, &postgres) {
        (crate::config::ArtifactSinkKind::Postgres, Some(pg)) => pg.clone(),
        _ => sink.clone(),
    };
    let writer = EntityWriter::start(publish_to, manifest.clone(), metrics.clone());
    // Feeds are read before the supervisor starts: a recovered artifact
    // task must see the feeds' content, not an empty catalog.
    let mut feeds = Feeds::new(config.feed_sources(), manifest, sink);
    if let (crate::config::ArtifactSinkKind::Postgres, Some(pg)) = (config.artifacts.sink, postgres)
    {
        feeds = feeds.stored_in(pg);
    }
    let feeds = Arc::new(feeds);
    feeds
        .register_metrics(&registry)
        .map_err(ServeError::Metrics)?;
    // The artifact files are read (to hash them for the start-up check)
    // while the feeds are: neither needs the other.
    futures::join!(feeds.load_all(), feeds.prehash());
    let isolation = Isolation::start(config.kinds_isolation, &config.data_dir)?;
    let mut builder = Supervisor::builder()
        .registry(kinds(&feeds, &config, &isolation))
        .store(store.clone())
        .writer(writer)
        .metrics(metrics);
    if let Some(shared) = shared {
        builder = builder.shared_queue(shared);
    }
    for (name, pool) in &config.pools {
        builder = builder
            .pool(name, pool.limit)
            .cancel_grace(name, pool.cancel_grace());
        if let Some(limit) = pool.cluster_limit {
            builder = builder.cluster_limit(name, limit);
        }
    }
    let supervisor = builder.start().await.map_err(ServeError::Supervisor)?;
    feeds.attach(supervisor.clone());

    let reloader = Arc::new(Reloader::new(
        config.clone(),
        config_file,
        overrides,
        supervisor.clone(),
        tokens.clone(),
        feeds.clone(),
    ));
    let stopping = Arc::new(AtomicBool::new(false));
    let state = actix_web::web::Data::new(ApiState {
        supervisor: supervisor.clone(),
        store: store.clone(),
        task_log,
        metrics: registry,
        tokens,
        metrics_require_token: config.http.metrics_require_token,
        control: Arc::new(DaemonControl {
            reload: ReloadControl(reloader.clone()),
            stopping: stopping.clone(),
            isolation: isolation.name(),
        }),
        rebuild_kind: ARTIFACT_KIND.into(),
        feeds: feeds.clone(),
        panel_feed: Default::default(),
    });
    let max_body = config.http.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .configure(crate::web::configure)
            .configure(|c| http::configure(c, state.clone(), max_body))
    })
    .disable_signals()
    .workers(2)
    .bind(config.http.bind)
    .map_err(|source| ServeError::Bind {
        addr: config.http.bind,
        source,
    })?;
    for addr in server.addrs() {
        println!("groundcrew listening on http://{addr}");
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "listening");
    }
    let server = server.run();
    let handle = server.handle();
    let http = actix_web::rt::spawn(server);
    let pruning = actix_web::rt::spawn(prune_forever(store.clone(), reloader.clone()));
    let watching = actix_web::rt::spawn(watch_feeds(
        feeds.clone(),
        Duration::from_millis(config.feed_poll_ms),
    ));
    // Start-up repair runs beside the listener: operators can watch it.
    let repairing = actix_web::rt::spawn({
        let feeds = feeds.clone();
        async move {
            if let Err(e) = feeds.repair(Trigger::Startup).await {
                tracing::error!(error = %e, "start-up repair failed");
            }
        }
    });

    wait_for_shutdown(&reloader).await?;
    stopping.store(true, Ordering::SeqCst);
    let shutdown = reloader.current().shutdown.clone();
    tracing::info!(
        drain_timeout_s = shutdown.drain_timeout_s,
        "shutting down: draining running tasks"
    );
    let report = drain(
        &supervisor,
        shutdown.drain_timeout_s,
        shutdown.cancel_grace_s,
    )
    .await;
    tracing::info!(
        completed = report.completed,
        requeued = report.requeued,
        abandoned = report.abandoned,
        "drained"
    );
    pruning.abort();
    watching.abort();
    repairing.abort();
    handle.stop(true).await;
    let _ = http.await;
    shipper.stop().await;
    isolation.shutdown();
    Ok(())
}

/// The API's hooks into the daemon: reload, and whether shutdown began.
struct DaemonControl {
    reload: ReloadControl,
    /// Set once SIGTERM/SIGINT arrived, before draining.
    stopping: Arc<AtomicBool>,
    /// The isolation of command kinds in force.
    isolation: &'static str,
}

impl Control for DaemonControl {
    fn reload(&self) -> BoxFuture<'static, Result<(), ReloadError>> {
        self.reload.reload()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn kinds_isolation(&self) -> Option<&'static str> {
        Some(self.isolation)
    }
}

async fn drain(
    supervisor: &Addr<Supervisor>,
    timeout_s: u64,
    grace_s: u64,
) -> groundcrew_actors::DrainReport {
    let drain = Drain {
        timeout: Duration::from_secs(timeout_s),
        grace: Duration::from_secs(grace_s),
    };
    supervisor.send(drain).await.unwrap_or_default()
}

/// Serves SIGHUP as reload until SIGTERM or SIGINT arrives.
async fn wait_for_shutdown(reloader: &Reloader) -> Result<(), ServeError> {
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Io)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Io)?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Err(e) = reloader.reload_now().await {
                    tracing::error!(error = %e.message, "reload on SIGHUP failed; keeping the previous configuration");
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

/// The task journal, the manifest and the task log (one object behind
/// all three), and on PostgreSQL the shared queue of the cluster.
type Stores = (
    Arc<dyn TaskStore>,
    Arc<dyn Manifest>,
    Arc<dyn TaskLog>,
    Option<Arc<dyn SharedQueue>>,
    Option<Arc<PostgresStore>>,
);

/// Opens the configured store. On PostgreSQL the daemon joins the cluster
/// of nodes on the database under its `node` name (a second daemon with
/// the same name refuses to start).
fn open_store(config: &Config) -> Result<Stores, ServeError> {
    match config.store_location() {
        StoreLocation::Sqlite(path) => {
            let store = Arc::new(SqliteStore::open(path)?);
            Ok((store.clone(), store.clone(), store, None, None))
        }
        StoreLocation::Postgres(url) => {
            let store = Arc::new(PostgresStore::open(url.expose())?);
            let node = config.node.clone().unwrap_or_else(host_name);
            let lease = Duration::from_secs_f64(config.lease_s);
            let queue: Arc<dyn SharedQueue> = Arc::new(store.join_cluster(&node, lease)?);
            Ok((
                store.clone(),
                store.clone(),
                store.clone(),
                Some(queue),
                Some(store),
            ))
        }
    }
}

/// The host's name as a node name (`groundcrew` if it has none that fits).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| crate::store::valid_node_name(h))
        .unwrap_or_else(|| "groundcrew".to_owned())
}

/// Removes finished history beyond the retention limits, on the configured
/// interval (re-read after every round so that a reload takes effect).
async fn prune_forever(store: Arc<dyn TaskStore>, reloader: Arc<Reloader>) {
    loop {
        let config = reloader.current();
        tokio::time::sleep(Duration::from_secs(config.retention.prune_interval_s)).await;
        match store.prune(config.retention(), Timestamp::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned task history"),
            Err(e) => tracing::warn!(error = %e, "pruning task history failed"),
        }
    }
}
