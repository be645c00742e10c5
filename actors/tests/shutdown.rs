//! Draining for shutdown: no admission, running work finishes or is queued
//! again, nothing accepted is lost.

mod common;

use std::time::Duration;

use common::*;
use groundcrew_actors::{
    Drain, DrainReport, Registry, Submit, SubmitError, TaskContext, TaskError, TaskState, TaskStore,
};

#[actix_rt::test]
async fn drain_lets_running_work_finish_and_keeps_queued_work_queued() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 1).await;
    let running = submit(&sup, "refresh", "asn:1").await;
    let queued = submit(&sup, "refresh", "asn:2").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let drain = sup.send(Drain {
        timeout: Duration::from_secs(10),
        grace: Duration::from_secs(1),
    });
    let opener = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Refused while draining, before the running task is let go.
        let refused = sup.send(Submit(spec("refresh", "asn:3"))).await.unwrap();
        assert!(matches!(refused, Err(SubmitError::ShuttingDown)));
        gate.open(2);
    };
    let (report, ()) = tokio::join!(drain, opener);
    assert_eq!(
        report.unwrap(),
        DrainReport {
            completed: 1,
            requeued: 0,
            abandoned: 0
        }
    );
    assert_eq!(
        store.get(running.id).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );
    // The queued task was not admitted while draining; it stays queued.
    let q = store.get(queued.id).await.unwrap().unwrap();
    assert_eq!((q.state, q.attempts), (TaskState::Queued, 0));
}

#[actix_rt::test]
async fn drain_cancels_work_past_the_deadline_and_queues_it_again() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 2).await;
    let a = submit(&sup, "refresh", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let follow_up = submit(&sup, "refresh", "asn:1").await;
    let report = sup
        .send(Drain {
            timeout: Duration::from_millis(50),
            grace: Duration::from_secs(5),
        })
        .await
        .unwrap();
    assert_eq!(
        report,
        DrainReport {
            completed: 0,
            requeued: 1,
            abandoned: 0
        }
    );
    let r = store.get(a.id).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.attempts, r.error),
        (TaskState::Queued, 0, None),
        "the interrupted attempt is not counted"
    );
    // One queued task per key, as recovery would leave it: the follow-up's
    // request is merged into the requeued task.
    let f = store.get(follow_up.id).await.unwrap().unwrap();
    assert_eq!((f.state, f.merged_into), (TaskState::Merged, Some(a.id)));
    assert_eq!(store.get(a.id).await.unwrap().unwrap().merged, 1);
    assert_eq!(store.unfinished().await.unwrap().len(), 1);
}

/// Issue 16: an execution that ignores its cancellation is stopped hard at
/// the end of the grace period (its future dropped) and queued again.
#[actix_rt::test]
async fn drain_stops_hard_work_that_ignores_cancellation() {
    let mut registry = Registry::new();
    registry
        .register("stubborn", |_ctx: groundcrew_actors::TaskContext| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "stubborn", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let report = sup
        .send(Drain {
            timeout: Duration::from_millis(20),
            grace: Duration::from_millis(50),
        })
        .await
        .unwrap();
    assert_eq!(
        report,
        DrainReport {
            completed: 0,
            requeued: 1,
            abandoned: 0
        }
    );
    let r = store.get(t.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.attempts), (TaskState::Queued, 0));
}

/// A future that blocks its thread cannot be dropped: the drain gives up on
/// it after the grace period, and it stays running in the store for the
/// next start's recovery to queue again.
#[actix_rt::test]
async fn drain_abandons_work_that_blocks_its_thread() {
    let mut registry = Registry::new();
    registry
        .register("blocking", |_ctx: groundcrew_actors::TaskContext| async {
            std::thread::sleep(Duration::from_secs(3));
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    let (sup, store) = start(registry, 1).await;
    let t = submit(&sup, "blocking", "asn:1").await;
    wait_panel(&sup, "running", |p| p.running.len() == 1).await;
    let report = sup
        .send(Drain {
            timeout: Duration::from_millis(20),
            grace: Duration::from_millis(50),
        })
        .await
        .unwrap();
    assert_eq!(
        report,
        DrainReport {
            completed: 0,
            requeued: 0,
            abandoned: 1
        }
    );
    assert_eq!(
        store.get(t.id).await.unwrap().unwrap().state,
        TaskState::Running
    );
}

/// Issue 15, item 8: a task interrupted by the drain is queued again for
/// the next start whatever error it returns, fatal or retryable.
#[actix_rt::test]
async fn drain_queues_interrupted_work_again_whatever_error_it_returns() {
    let mut registry = Registry::new();
    for (name, retryable) in [("flaky", true), ("fatal", false)] {
        registry
            .register(name, move |ctx: TaskContext| async move {
                ctx.canceled().await;
                let message = "stopped halfway";
                Err(if retryable {
                    TaskError::retryable(message)
                } else {
                    TaskError::fatal(message)
                })
            })
            .unwrap();
    }
    let (sup, store) = start(registry, 2).await;
    let a = submit(&sup, "flaky", "asn:1").await;
    let b = submit(&sup, "fatal", "asn:1").await;
    wait_panel(&sup, "both running", |p| p.running.len() == 2).await;
    let report = sup
        .send(Drain {
            timeout: Duration::from_millis(50),
            grace: Duration::from_secs(10),
        })
        .await
        .unwrap();
    assert_eq!(
        report,
        DrainReport {
            completed: 0,
            requeued: 2,
            abandoned: 0
        }
    );
    for id in [a.id, b.id] {
        let r = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (r.state, r.attempts, r.error),
            (TaskState::Queued, 0, None),
            "task {id}"
        );
    }
}
