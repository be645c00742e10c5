//! The store's own runtime thread, its connection pool, and the backoff
//! between attempts to reach a server that is away.
//!
//! # Why a runtime of its own
//! The traits hand back `'static` futures that the caller polls wherever it
//! runs: on an actix arbiter (a single-threaded runtime), in a test's
//! runtime, or blocked on from plain code. tokio-postgres connections are
//! tasks that must keep running between those polls, so the pool lives on
//! one current-thread tokio runtime on a thread the store owns
//! ([`Driver`]); every operation is spawned there and its result comes back
//! through a oneshot channel. Dropping the driver stops the thread, and with
//! it every connection.
//!
//! # Reconnecting
//! The pool ([`pool`]) hands out an idle connection or opens a new one;
//! a connection the server closed (a restart, a dropped network) is noticed
//! on its next use and replaced. [`Backoff`] spaces out the attempts while
//! the server stays away (100 ms doubling to 5 s), so a dead server is not
//! hammered; meanwhile writes fail at once with the last error.
//!
//! # Secrets
//! The URL usually carries a password. It is parsed once into a
//! [`tokio_postgres::Config`] and never printed; logs and errors name the
//! server by [`describe`] (user, host, port, database).

use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use groundcrew_actors::StoreError;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

/// Connections kept open at most: the writer's, and the readers'.
const POOL_SIZE: usize = 8;
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before TCP keepalive probes start.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// How long an operation waits for a free connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The thread the store's connections run on.
#[derive(Debug)]
pub(super) struct Driver {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Driver {
    /// Starts the runtime thread.
    pub(super) fn start() -> std::io::Result<Driver> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("groundcrew-postgres".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Driver {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the store's runtime; the future resolves with its
    /// output, or [`StoreError::Closed`] if the runtime stopped first.
    pub(super) fn spawn<T, F>(&self, work: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed) })
    }

    /// Runs `work` on the store's runtime and blocks the calling thread
    /// until it is done (`None`: the runtime stopped). For plain code and
    /// for callers inside another runtime, which must not block on a
    /// future of ours directly.
    pub(super) fn wait<T, F>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv().ok()
    }

    /// The runtime, for spawning background work that answers no one.
    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("postgres store runtime panicked");
            }
        }
    }
}

/// How long a session may sit idle inside a transaction before the server
/// ends it (milliseconds).
const IDLE_IN_TRANSACTION_MS: u64 = 5000;

/// Parses the URL; the error never repeats it.
pub(super) fn parse(url: &str) -> Result<Config, tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // A connection to a server that vanished without closing it (a cut
    // network) is noticed in about a minute, not after TCP's two hours:
    // the node lock lives on such a connection.
    if config.get_keepalives_idle() > KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
    }
    if config.get_application_name().is_none() {
        config.application_name("groundcrew");
    }
    // A node frozen (SIGSTOP, a paused VM) inside a transaction would hold
    // its row and advisory locks, and so stop every other node's claims,
    // until it wakes: the server ends such a session instead. Our
    // transactions never wait on the client between statements.
    let options = config.get_options().unwrap_or_default().to_owned();
    if !options.contains("idle_in_transaction_session_timeout") {
        config.options(
            format!("{options} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}")
                .trim(),
        );
    }
    Ok(config)
}

/// The server as logs may name it: `user@host:port/database`, no password.
pub(super) fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// The store's connection pool. Connections use no TLS (a `sslmode=require`
/// URL fails to connect, saying so).
pub(super) fn pool(config: Config) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection the server closed says so without a round trip.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(WAIT_TIMEOUT))
        .build()
}

/// Spaces out attempts to reach the server after a connection failure.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// No attempt before this; `None` while connections work.
    until: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// Whether it is too early to try again.
    pub(super) fn waiting(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }

    /// A connection failed: wait longer before the next attempt.
    pub(super) fn failed(&mut self) {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        self.until = Some(Instant::now() + self.delay);
    }

    /// Whether the last attempt failed (and no attempt succeeded since).
    pub(super) fn failing(&self) -> bool {
        self.until.is_some()
    }

    /// How long until the next attempt may be made.
    pub(super) fn remaining(&self) -> Duration {
        self.until.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    /// The current delay between attempts.
    pub(super) fn delay(&self) -> Duration {
        self.delay
    }

    /// A connection worked: the next failure starts from the first delay.
    pub(super) fn succeeded(&mut self) {
        self.until = None;
        self.delay = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_carry_the_password() {
        let config = parse("postgres://gc:hunter2@db.internal:6432/jobs").unwrap();
        let shown = describe(&config);
        assert_eq!(shown, "postgres://gc@db.internal:6432/jobs");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn backoff_doubles_up_to_its_limit_and_resets() {
        let mut b = Backoff::default();
        assert!(!b.waiting());
        b.failed();
        assert_eq!(b.delay, Backoff::FIRST);
        assert!(b.waiting());
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.delay, Backoff::MAX);
        b.succeeded();
        assert!(!b.waiting());
        b.failed();
        assert_eq!(b.delay, Backoff::FIRST);
    }
}
