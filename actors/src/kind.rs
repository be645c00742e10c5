//! Task kinds: the [`Task`] trait an embedder implements, the errors a task
//! returns, and the [`Registry`] that maps kind names to implementations and
//! their options (pool, attempts, backoff).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::context::TaskContext;

/// What one execution of a task returns: a JSON result, or why it failed.
pub type TaskResult = Result<serde_json::Value, TaskError>;

/// A kind of background work.
///
/// `run` is called once per execution on one of the supervisor's worker
/// threads; the returned future runs there until it completes. Long CPU-bound
/// stretches belong in `tokio::task::spawn_blocking` so that the worker
/// thread keeps serving other tasks' messages.
///
/// Any `Fn(TaskContext) -> impl Future<Output = TaskResult>` closure is a task:
///
/// ```
/// use groundcrew_actors::{Registry, TaskContext};
///
/// let mut registry = Registry::new();
/// registry.register("noop", |_ctx: TaskContext| async { Ok(serde_json::Value::Null) }).unwrap();
/// ```
pub trait Task: Send + Sync + 'static {
    /// Runs one execution.
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, TaskResult>;

    /// Checks a request's parameters before it is accepted, so that a bad
    /// request is refused at submit time instead of failing later.
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        let _ = params;
        Ok(())
    }
}

impl<F, Fut> Task for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, TaskResult> {
        Box::pin(self(ctx))
    }
}

/// Why an execution did not produce a result.
///
/// Any `std::error::Error` converts into a non-retryable failure, so task
/// code can use `?` on whatever it calls.
pub enum TaskError {
    /// The task saw its cancellation and stopped.
    Canceled,
    /// The execution failed.
    Failed {
        /// What went wrong, with its causes.
        message: String,
        /// Whether another attempt may succeed (the kind's retry policy
        /// decides whether one is made).
        retryable: bool,
    },
}

impl TaskError {
    /// A failure that another attempt would not fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskError::Failed {
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that another attempt may fix (a busy resource, a timeout).
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskError::Failed {
            message: message.into(),
            retryable: true,
        }
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        TaskError::fatal(message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Canceled => f.write_str("canceled"),
            TaskError::Failed { message, .. } => f.write_str(message),
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Canceled => f.write_str("Canceled"),
            TaskError::Failed { message, retryable } => f
                .debug_struct("Failed")
                .field("message", message)
                .field("retryable", retryable)
                .finish(),
        }
    }
}

/// The pool every kind runs in unless its options name another.
pub const DEFAULT_POOL: &str = "background";

/// How a kind is scheduled and retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindOptions {
    /// The worker pool its tasks run in.
    pub pool: String,
    /// Executions at most, retries and restarts after a crash included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles with each further one.
    pub backoff_base: Duration,
    /// Longest delay between attempts.
    pub backoff_max: Duration,
    /// How long one execution may run. Past it the execution is signaled
    /// as on a cancel and, after its pool's grace period, stopped hard; the
    /// attempt fails with `timed out after N s` and is retried while
    /// attempts remain. `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Default for KindOptions {
    fn default() -> Self {
        Self {
            pool: DEFAULT_POOL.to_owned(),
            max_attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            timeout: None,
        }
    }
}

impl KindOptions {
    /// The delay before attempt `next_attempt` (2 for the first retry):
    /// exponential from `backoff_base`, capped at `backoff_max`, with up to
    /// 25% jitter taken from `jitter` in `[0, 1)` so that retries of many
    /// tasks failing together do not arrive together.
    pub fn backoff(&self, next_attempt: u32, jitter: f64) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(30);
        let base = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        base.mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
            .min(self.backoff_max)
    }
}

/// A kind name that does not follow `[a-z][a-z0-9_-]{0,63}`, or is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// Bad name.
    #[error("invalid kind name {0:?}: must match [a-z][a-z0-9_-]* and be at most 64 bytes")]
    InvalidName(String),
    /// Registered twice.
    #[error("kind {0:?} is already registered")]
    Duplicate(String),
}

#[derive(Clone)]
pub(crate) struct Kind {
    pub(crate) task: Arc<dyn Task>,
    pub(crate) options: KindOptions,
}

/// The task kinds a supervisor can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Kind>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.kinds.iter().map(|(name, kind)| (name, &kind.options)))
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a kind with default options (pool `background`, 3 attempts).
    pub fn register(&mut self, name: &str, task: impl Task) -> Result<&mut Self, KindError> {
        self.register_with(name, task, KindOptions::default())
    }

    /// Registers a kind with its options.
    pub fn register_with(
        &mut self,
        name: &str,
        task: impl Task,
        options: KindOptions,
    ) -> Result<&mut Self, KindError> {
        let valid = name.len() <= 64
            && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(KindError::InvalidName(name.chars().take(64).collect()));
        }
        if self.kinds.contains_key(name) {
            return Err(KindError::Duplicate(name.to_owned()));
        }
        self.kinds.insert(
            name.to_owned(),
            Kind {
                task: Arc::new(task),
                options,
            },
        );
        Ok(self)
    }

    /// The registered kind names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The options of a kind.
    pub fn options(&self, name: &str) -> Option<&KindOptions> {
        self.kinds.get(name).map(|k| &k.options)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let o = KindOptions {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..KindOptions::default()
        };
        assert_eq!(o.backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(o.backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(o.backoff(4, 0.0), Duration::from_secs(4));
        assert_eq!(o.backoff(40, 0.0), Duration::from_secs(10));
        assert_eq!(o.backoff(2, 0.999), Duration::from_micros(1_249_750));
    }

    #[test]
    fn kind_names_are_validated_and_unique() {
        let mut r = Registry::new();
        let noop = |_ctx: TaskContext| async { Ok(serde_json::Value::Null) };
        r.register("feed-refresh", noop).unwrap();
        assert_eq!(
            r.register("feed-refresh", noop).unwrap_err(),
            KindError::Duplicate("feed-refresh".into())
        );
        assert!(matches!(
            r.register("Bad Kind", noop),
            Err(KindError::InvalidName(_))
        ));
        assert_eq!(r.names().collect::<Vec<_>>(), ["feed-refresh"]);
    }

    #[test]
    fn std_errors_become_fatal_failures_with_their_causes() {
        let io = std::io::Error::other("disk on fire");
        match TaskError::from(io) {
            TaskError::Failed { message, retryable } => {
                assert_eq!(message, "disk on fire");
                assert!(!retryable);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
