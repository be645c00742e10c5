//! Configuration reload (SIGHUP and `POST /api/v1/reload`): re-reads the
//! file, and on success applies what can change at runtime: pool limits,
//! tokens, retention. On error the previous configuration stays in force.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use actix::Addr;
use futures::future::BoxFuture;
use groundcrew_actors::{SetCancelGrace, SetClusterLimit, SetLimit, Supervisor};

use crate::auth::{self, TokenSet};
use crate::config::{Config, ConfigError, Overrides};
use crate::entities::Feeds;
use crate::http::{Control, ReloadError};

/// Holds the configuration in force and re-reads it on demand.
#[derive(Debug)]
pub(super) struct Reloader {
    current: Mutex<Arc<Config>>,
    file: Option<PathBuf>,
    overrides: Overrides,
    supervisor: Addr<Supervisor>,
    tokens: Arc<RwLock<TokenSet>>,
    feeds: Arc<Feeds>,
    /// Reloads run one at a time so that two cannot interleave their
    /// limit changes.
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(super) fn new(
        config: Config,
        file: Option<PathBuf>,
        overrides: Overrides,
        supervisor: Addr<Supervisor>,
        tokens: Arc<RwLock<TokenSet>>,
        feeds: Arc<Feeds>,
    ) -> Self {
        Self {
            current: Mutex::new(Arc::new(config)),
            file,
            overrides,
            supervisor,
            tokens,
            feeds,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration in force.
    pub(super) fn current(&self) -> Arc<Config> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads and applies the configuration.
    pub(super) async fn reload_now(&self) -> Result<(), ReloadError> {
        let _serial = self.serial.lock().await;
        let mut next =
            Config::load(self.file.as_deref(), std::env::vars()).map_err(reload_error)?;
        next.apply_overrides(&self.overrides);
        next.validate_bind().map_err(reload_error)?;
        let old = self.current();
        for (what, changed) in [
            ("http.bind", old.http.bind != next.http.bind),
            ("data_dir", old.data_dir != next.data_dir),
            ("store", old.store_location() != next.store_location()),
            ("artifacts", old.artifacts != next.artifacts),
            // The kind registry is fixed when the supervisor starts.
            ("kinds", old.kinds != next.kinds),
        ] {
            if changed {
                tracing::warn!(
                    key = what,
                    "changed in the configuration file; takes effect at the next start"
                );
            }
        }
        // The token set is replaced exactly: a token removed from the file
        // is refused from now on. With none configured, the generated admin
        // token of the data directory is the only one, so a reload never
        // locks the operator out.
        let tokens = if next.tokens.is_empty() {
            let (secret, created) =
                auth::load_or_create_token(&next.data_dir).map_err(|e| ReloadError {
                    message: format!(
                        "cannot read or create admin token file {}: {e}",
                        auth::token_file(&next.data_dir).display()
                    ),
                    file: None,
                    line: None,
                    column: None,
                    key: Some("tokens".into()),
                })?;
            if created {
                tracing::info!(path = %auth::token_file(&next.data_dir).display(), "generated an admin token (role operate)");
            }
            TokenSet::generated(secret)
        } else {
            TokenSet::new(next.tokens.clone())
        };
        for (pool, settings) in &next.pools {
            let grace = SetCancelGrace {
                pool: pool.clone(),
                grace: settings.cancel_grace(),
            };
            // An unknown pool is reported by the limit below.
            let _ = self.supervisor.send(grace).await;
            let cluster_limit = SetClusterLimit {
                pool: pool.clone(),
                limit: settings.cluster_limit,
            };
            let _ = self.supervisor.send(cluster_limit).await;
            let applied = self
                .supervisor
                .send(SetLimit {
                    pool: pool.clone(),
                    limit: settings.limit,
                })
                .await;
            match applied {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(pool, error = %e, "pool limit not applied; new pools take effect at the next start")
                }
                Err(e) => {
                    return Err(ReloadError {
                        message: format!("supervisor unavailable: {e}"),
                        file: None,
                        line: None,
                        column: None,
                        key: None,
                    })
                }
            }
        }
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens;
        if next.feed_sources() != old.feed_sources() {
            // Changed or new feeds are read and their entities refreshed
            // (config_reload); a feed that cannot be read is logged and
            // keeps its previous content.
            match self.feeds.reconfigure(next.feed_sources()).await {
                Ok(tasks) => tracing::info!(tasks, "feeds reconfigured"),
                Err(e) => {
                    tracing::warn!(error = %crate::entities::error_chain(&e), "feeds reconfigured with errors")
                }
            }
        }
        tracing::info!("configuration reloaded");
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }
}

fn reload_error(e: ConfigError) -> ReloadError {
    let location = e.location();
    ReloadError {
        message: e.to_string(),
        file: location.as_ref().map(|(f, _, _)| f.display().to_string()),
        line: location.as_ref().map(|(_, l, _)| *l),
        column: location.as_ref().map(|(_, _, c)| *c),
        key: e.key().map(str::to_owned),
    }
}

/// The admin API's handle on reload.
#[derive(Debug)]
pub(super) struct ReloadControl(pub(super) Arc<Reloader>);

impl Control for ReloadControl {
    fn reload(&self) -> BoxFuture<'static, Result<(), ReloadError>> {
        let reloader = Arc::clone(&self.0);
        Box::pin(async move { reloader.reload_now().await })
    }
}
