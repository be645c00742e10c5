//! Failing and panicking tasks: isolation, messages, retries.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use groundcrew_actors::{KindOptions, Registry, TaskContext, TaskError, TaskState};

#[actix_rt::test]
async fn a_panicking_task_fails_with_its_message_and_others_keep_running() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    registry
        .register("boom", |ctx: TaskContext| async move {
            ctx.stage("about to panic");
            if ctx.target().to_string() == "asn:1" {
                panic!("feed for {} is garbage", ctx.target());
            }
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    registry
        .register(
            "sync-boom",
            |_ctx: TaskContext| -> futures::future::Ready<groundcrew_actors::TaskResult> {
                panic!("before any future")
            },
        )
        .unwrap();
    let (sup, store) = start(registry, 4).await;
    let survivor = submit(&sup, "refresh", "asn:9").await;
    wait_panel(&sup, "survivor running", |p| p.running.len() == 1).await;
    let bad = submit(&sup, "boom", "asn:1").await;
    let worse = submit(&sup, "sync-boom", "asn:1").await;
    let r = wait_ended(&store, bad.id).await;
    assert_eq!(r.state, TaskState::Failed);
    assert_eq!(
        r.error.as_deref(),
        Some("task panicked: feed for asn:1 is garbage")
    );
    let r = wait_ended(&store, worse.id).await;
    assert_eq!(r.error.as_deref(), Some("task panicked: before any future"));
    // The supervisor still answers and the other task still completes.
    let fine = submit(&sup, "boom", "asn:2").await;
    assert_eq!(
        wait_ended(&store, fine.id).await.state,
        TaskState::Succeeded
    );
    gate.open(1);
    assert_eq!(
        wait_ended(&store, survivor.id).await.state,
        TaskState::Succeeded
    );
}

#[actix_rt::test]
async fn retryable_failures_are_retried_with_backoff_and_every_error_is_kept() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::new();
    let c = calls.clone();
    registry
        .register_with(
            "flaky",
            move |ctx: TaskContext| {
                let c = c.clone();
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(ctx.attempt(), n);
                    if n < 3 {
                        Err(TaskError::retryable(format!("busy on attempt {n}")))
                    } else {
                        Ok(serde_json::json!(n))
                    }
                }
            },
            KindOptions {
                max_attempts: 3,
                backoff_base: Duration::from_millis(20),
                ..KindOptions::default()
            },
        )
        .unwrap();
    registry
        .register("fatal", |_ctx: TaskContext| async {
            Err(TaskError::fatal("bad input"))
        })
        .unwrap();
    let (sup, store) = start(registry, 2).await;
    let t = submit(&sup, "flaky", "asn:1").await;
    let f = submit(&sup, "fatal", "asn:1").await;
    let r = wait_ended(&store, t.id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Succeeded, 3));
    assert_eq!(
        r.errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["busy on attempt 1", "busy on attempt 2"]
    );
    let r = wait_ended(&store, f.id).await;
    assert_eq!(
        (r.state, r.attempts, r.error.as_deref()),
        (TaskState::Failed, 1, Some("bad input"))
    );
}

#[actix_rt::test]
async fn unknown_kinds_and_bad_params_are_refused_at_submit() {
    let mut registry = Registry::new();
    registry
        .register("test", groundcrew_actors::TestKind)
        .unwrap();
    let (sup, _store) = start(registry, 1).await;
    let err = sup
        .send(groundcrew_actors::Submit(spec("nope", "asn:1")))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown task kind \"nope\"");
    let bad = spec("test", "asn:1").with_params(serde_json::json!({"times": -1}));
    let err = sup
        .send(groundcrew_actors::Submit(bad))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid params for kind \"test\""),
        "{err}"
    );
    assert_eq!(panel(&sup).await.pending_total, 0);
}
