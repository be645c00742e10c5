//! The built-in `test` kind: counts rounds of a fixed length, reporting
//! progress after each, so that operators can check a pool end to end; on
//! request it also publishes a self-describing artifact, to check the
//! entity writer the same way.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::context::{decode_params, TaskContext};
use crate::entity::Target;
use crate::kind::{Task, TaskError, TaskResult};

/// Params of the `test` kind: `{"times": N, "round_ms": M}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestParams {
    #[serde(default = "default_times")]
    times: u64,
    #[serde(default = "default_round_ms")]
    round_ms: u64,
    /// Publish an artifact of this many bytes for the target entity at the end.
    #[serde(default)]
    artifact_bytes: Option<u64>,
}

fn default_times() -> u64 {
    1
}

fn default_round_ms() -> u64 {
    1000
}

const MAX_TIMES: u64 = 1_000_000;
const MAX_ROUND_MS: u64 = 3_600_000;
const MAX_ARTIFACT_BYTES: u64 = 64 << 20;

/// A test artifact: a header naming its length, filler, and a trailer, so
/// that a torn file (one missing its end, or with a wrong length) is
/// recognizable with [`check_test_artifact`].
pub fn test_artifact(header: &str, bytes: u64) -> Vec<u8> {
    let head = format!("# groundcrew test artifact bytes={bytes} {header}\n");
    let tail = b"# end\n";
    let fill = (bytes as usize).saturating_sub(head.len() + tail.len());
    let mut out = Vec::with_capacity(head.len() + fill + tail.len());
    out.extend_from_slice(head.as_bytes());
    out.extend((0..fill).map(|i| if i % 64 == 63 { b'\n' } else { b'.' }));
    out.extend_from_slice(tail);
    out
}

/// Whether `content` is a complete artifact made by [`test_artifact`].
pub fn check_test_artifact(content: &[u8]) -> Result<(), String> {
    let first = content.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = std::str::from_utf8(first).map_err(|_| "header is not UTF-8".to_owned())?;
    let bytes: u64 = first
        .strip_prefix("# groundcrew test artifact bytes=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("not a test artifact header: {first:?}"))?;
    // Header line, its newline, and the trailer: the floor on the length.
    let expected = bytes.max(first.len() as u64 + 1 + 6);
    if !content.ends_with(b"# end\n") {
        return Err(format!("torn: no trailer ({} bytes)", content.len()));
    }
    if content.len() as u64 != expected {
        return Err(format!(
            "torn: {} bytes, header says {expected}",
            content.len()
        ));
    }
    Ok(())
}

/// Counts `times` rounds of `round_ms` milliseconds (default 1000),
/// reporting progress after every round and stopping early when canceled.
/// With `artifact_bytes`, it then publishes a [`test_artifact`] of that
/// size for its entity. Succeeds with `{"rounds": times}`.
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
        if p.artifact_bytes.is_some_and(|b| b > MAX_ARTIFACT_BYTES) {
            return Err(format!(
                "artifact_bytes must be at most {MAX_ARTIFACT_BYTES}"
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
            if let (Some(bytes), Target::Entity(entity)) = (p.artifact_bytes, ctx.target()) {
                ctx.stage("publishing");
                let header = format!("{entity} task={} run={}", ctx.id(), ctx.run().0);
                ctx.publish(entity.clone(), test_artifact(&header, bytes), None)
                    .await?;
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
        assert!(TestKind
            .validate(&json!({"artifact_bytes": MAX_ARTIFACT_BYTES + 1}))
            .is_err());
    }

    #[test]
    fn test_artifacts_are_recognizably_complete_or_torn() {
        let a = test_artifact("country:DE task=1 run=1", 4096);
        assert_eq!(a.len(), 4096);
        check_test_artifact(&a).unwrap();
        assert!(check_test_artifact(&a[..2000])
            .unwrap_err()
            .contains("torn"));
        let mut short = a[..100].to_vec();
        short.extend_from_slice(b"# end\n");
        assert!(check_test_artifact(&short).unwrap_err().contains("torn"));
        assert!(check_test_artifact(b"hello").is_err());
        // Smaller than its own header: still complete, and recognized so.
        check_test_artifact(&test_artifact("asn:1", 3)).unwrap();
    }
}
