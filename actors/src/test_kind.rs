//! The built-in `test` kind: counts rounds of a fixed length, reporting
//! progress after each, so that operators can check a pool end to end.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::context::{decode_params, TaskContext};
use crate::kind::{Task, TaskError, TaskResult};

/// Params of the `test` kind: `{"times": N, "round_ms": M}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestParams {
    #[serde(default = "default_times")]
    times: u64,
    #[serde(default = "default_round_ms")]
    round_ms: u64,
}

fn default_times() -> u64 {
    1
}

fn default_round_ms() -> u64 {
    1000
}

const MAX_TIMES: u64 = 1_000_000;
const MAX_ROUND_MS: u64 = 3_600_000;

/// Counts `times` rounds of `round_ms` milliseconds (default 1000),
/// reporting progress after every round and stopping early when canceled.
/// Succeeds with `{"rounds": times}`.
///
/// ```
/// use groundcrew_actors::{Registry, TestKind};
///
/// let mut registry = Registry::new();
/// registry.register("test", TestKind).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TestKind;

impl TestKind {
    fn parse(params: &serde_json::Value) -> Result<TestParams, String> {
        let p: TestParams = decode_params(params)?;
        if !(1..=MAX_TIMES).contains(&p.times) {
            return Err(format!(
                "times must be between 1 and {MAX_TIMES}, got {}",
                p.times
            ));
        }
        if p.round_ms > MAX_ROUND_MS {
            return Err(format!(
                "round_ms must be at most {MAX_ROUND_MS}, got {}",
                p.round_ms
            ));
        }
        Ok(p)
    }
}

impl Task for TestKind {
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        Self::parse(params).map(drop)
    }

    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, TaskResult> {
        Box::pin(async move {
            let p = Self::parse(ctx.params()).map_err(TaskError::fatal)?;
            ctx.stage("counting");
            ctx.progress(0, p.times);
            for round in 1..=p.times {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(p.round_ms)) => {}
                    () = ctx.canceled() => return Err(TaskError::Canceled),
                }
                ctx.progress(round, p.times);
            }
            Ok(serde_json::json!({ "rounds": p.times }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_default_to_one_round_of_a_second_and_are_bounded() {
        let p = TestKind::parse(&serde_json::Value::Null).unwrap();
        assert_eq!((p.times, p.round_ms), (1, 1000));
        assert!(TestKind
            .validate(&json!({"times": 0}))
            .unwrap_err()
            .contains("times must be"));
        assert!(TestKind
            .validate(&json!({"times": "x"}))
            .unwrap_err()
            .contains("invalid params"));
        assert!(TestKind
            .validate(&json!({"rounds": 3}))
            .unwrap_err()
            .contains("unknown field"));
        assert!(TestKind
            .validate(&json!({"round_ms": MAX_ROUND_MS + 1}))
            .is_err());
    }
}
