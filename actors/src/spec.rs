//! What a task request is made of: ids, triggers, priorities and the spec.
//!
//! These are plain values shared by the supervisor, the store and the
//! daemon's API; their serde form is the JSON the API speaks.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::entity::Target;

/// Identifies one task: a request and every execution of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Identifies one execution (claim) of a task: its fencing token.
///
/// Every message a running task sends carries its run token, so that a
/// write from an execution that no longer holds the task's claim can be
/// told apart and refused (see [`RunToken::after`]). Tokens of one task
/// only grow, whatever happens to its attempts count.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunToken(pub u64);

impl fmt::Display for RunToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a task was requested.
///
/// Serialized as a snake_case string; any other string is a [`Trigger::Custom`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// Repairs at daemon start.
    Startup,
    /// A feed the artifacts derive from changed.
    FeedUpdate,
    /// A feed went from unhealthy to healthy.
    HealthTransition,
    /// Repairs after the configuration was reloaded.
    ConfigReload,
    /// An operator asked for it (panel, CLI).
    Operator,
    /// A program asked for it through the API.
    Api,
    /// Anything else an embedder names.
    Custom(String),
}

impl Trigger {
    /// The trigger's name as it appears in the API, logs and metrics.
    pub fn as_str(&self) -> &str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FeedUpdate => "feed_update",
            Trigger::HealthTransition => "health_transition",
            Trigger::ConfigReload => "config_reload",
            Trigger::Operator => "operator",
            Trigger::Api => "api",
            Trigger::Custom(s) => s,
        }
    }

    /// Parses a trigger name; unknown names become [`Trigger::Custom`].
    pub fn parse(s: &str) -> Self {
        match s {
            "startup" => Trigger::Startup,
            "feed_update" => Trigger::FeedUpdate,
            "health_transition" => Trigger::HealthTransition,
            "config_reload" => Trigger::ConfigReload,
            "operator" => Trigger::Operator,
            "api" => Trigger::Api,
            other => Trigger::Custom(other.to_owned()),
        }
    }

    /// The label used in metrics: custom triggers share one value so that
    /// embedders cannot grow a label without bound.
    pub fn metric_label(&self) -> &str {
        match self {
            Trigger::Custom(_) => "custom",
            other => other.as_str(),
        }
    }

    /// The priority a request with this trigger gets when it names none:
    /// people waiting on a result go ahead of automatic refreshes.
    pub fn default_priority(&self) -> Priority {
        match self {
            Trigger::Operator | Trigger::Api => Priority::INTERACTIVE,
            _ => Priority::AUTOMATIC,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 64 {
            return Err(serde::de::Error::custom(format!(
                "invalid trigger {s:?}: must be 1 to 64 bytes"
            )));
        }
        Ok(Trigger::parse(&s))
    }
}

/// Queue order within a pool: higher first, then first come first served.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub i16);

impl Priority {
    /// Automatic refreshes and repairs.
    pub const AUTOMATIC: Priority = Priority(0);
    /// Requests somebody is waiting on.
    pub const INTERACTIVE: Priority = Priority(10);
}

/// A request for work: which kind, on what, why, and with which parameters.
///
/// ```
/// use groundcrew_actors::{TaskSpec, Trigger};
///
/// let spec = TaskSpec::new("test", "country:DE".parse().unwrap(), Trigger::Operator)
///     .with_params(serde_json::json!({"times": 3}));
/// assert_eq!(spec.effective_priority().0, 10);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Registered kind name.
    pub kind: String,
    /// Entity or `all`.
    pub target: Target,
    /// Why it was requested.
    pub trigger: Trigger,
    /// Kind-specific parameters.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Queue priority; the trigger's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The failed or canceled task this request runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<TaskId>,
}

impl TaskSpec {
    /// A request with no parameters and the trigger's default priority.
    pub fn new(kind: impl Into<String>, target: Target, trigger: Trigger) -> Self {
        Self {
            kind: kind.into(),
            target,
            trigger,
            params: serde_json::Value::Null,
            priority: None,
            retry_of: None,
        }
    }

    /// Sets the parameters.
    pub fn with_params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Marks the request as a retry of the task `of`.
    pub fn with_retry_of(mut self, of: TaskId) -> Self {
        self.retry_of = Some(of);
        self
    }

    /// Sets an explicit priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The priority used for queue order.
    pub fn effective_priority(&self) -> Priority {
        self.priority
            .unwrap_or_else(|| self.trigger.default_priority())
    }
}

/// Where a task is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker (or behind a running task of the same key).
    Queued,
    /// An execution is under way.
    Running,
    /// A cancel reached the running execution; the task becomes `canceled`
    /// once the execution has really ended (on its own, or stopped hard
    /// after the pool's cancel grace).
    Canceling,
    /// The last execution returned a result.
    Succeeded,
    /// The last execution failed or panicked and no attempt is left.
    Failed,
    /// Canceled by an operator before or while running.
    Canceled,
    /// Its requests were merged into another task (see `merged_into`), for
    /// example a full rebuild that absorbed a pending per-entity refresh.
    Merged,
}

impl TaskState {
    /// Whether the task will not change any more.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            TaskState::Queued | TaskState::Running | TaskState::Canceling
        )
    }

    /// The state's name as used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Canceling => "canceling",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Merged => "merged",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_round_trip_and_unknown_names_become_custom() {
        for name in [
            "startup",
            "feed_update",
            "health_transition",
            "config_reload",
            "operator",
            "api",
        ] {
            let t: Trigger = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert!(!matches!(t, Trigger::Custom(_)), "{name}");
            assert_eq!(serde_json::to_value(&t).unwrap(), serde_json::json!(name));
        }
        let t: Trigger = serde_json::from_value(serde_json::json!("cron")).unwrap();
        assert_eq!(t, Trigger::Custom("cron".into()));
        assert_eq!(t.metric_label(), "custom");
        assert!(serde_json::from_value::<Trigger>(serde_json::json!("")).is_err());
    }

    #[test]
    fn operator_requests_outrank_automatic_ones() {
        assert!(Trigger::Operator.default_priority() > Trigger::FeedUpdate.default_priority());
    }
}
