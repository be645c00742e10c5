//! The supervisor files every task end in its stats recorder: succeeded,
//! failed and canceled (pending or running), per kind and pool, with queue
//! wait and run time; merged requests and retried attempts are not ends.

mod common;

use std::time::Duration;

use common::*;
use groundcrew_actors::{
    Cancel, Registry, StatsSnapshot, StatsWindow, TaskContext, TaskError, TaskState, TaskStore,
};

#[actix_rt::test]
async fn every_task_end_is_counted_once_by_kind_with_its_times() {
    let gate = Gate::new();
    let mut kinds = Registry::new();
    gate.register(&mut kinds, "gate");
    kinds
        .register("slow", |_: TaskContext| async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok(serde_json::json!({}))
        })
        .unwrap()
        .register("broken", |_: TaskContext| async {
            Err(TaskError::fatal("broken on purpose"))
        })
        .unwrap();
    let (sup, store) = start(kinds, 1).await;

    // One worker: the gate task runs, the others queue behind it.
    let held = submit(&sup, "gate", "asn:1").await.id;
    wait_panel(&sup, "gate running", |p| p.running.len() == 1).await;
    let slow = submit(&sup, "slow", "asn:2").await.id;
    let broken = submit(&sup, "broken", "asn:3").await.id;
    let never = submit(&sup, "gate", "asn:4").await.id;
    submit(&sup, "slow", "asn:2").await; // merged: not an end
    sup.send(Cancel::new(never)).await.unwrap().unwrap();
    gate.open(1);
    for id in [held, slow, broken, never] {
        wait_ended(&store, id).await;
    }

    let stats = sup
        .send(StatsSnapshot {
            window: StatsWindow::Hour,
        })
        .await
        .unwrap();
    let sum = |kind: Option<&str>, f: fn(&groundcrew_actors::StatsBucket) -> u64| -> u64 {
        let buckets = match kind {
            None => &stats.total,
            Some(k) => {
                &stats
                    .series
                    .iter()
                    .find(|s| s.kind == k)
                    .unwrap_or_else(|| panic!("no series {k}: {stats:#?}"))
                    .buckets
            }
        };
        buckets.iter().map(f).sum()
    };
    assert_eq!(sum(None, |b| b.succeeded), 2);
    assert_eq!(sum(None, |b| b.failed), 1);
    assert_eq!(sum(None, |b| b.canceled), 1);
    assert_eq!(sum(Some("slow"), |b| b.succeeded), 1);
    assert_eq!(sum(Some("broken"), |b| b.failed), 1);
    assert_eq!(sum(Some("gate"), |b| b.succeeded + b.canceled), 2);
    assert!(stats.series.iter().all(|s| s.pool == "background"));

    // The slow task waited behind the gate and ran 40 ms or more; the
    // canceled one never ran, so three ends have times.
    let times: Vec<_> = stats.total.iter().filter_map(|b| b.duration).collect();
    assert_eq!(times.iter().map(|p| p.count).sum::<u64>(), 3);
    let slow_bucket = stats
        .series
        .iter()
        .find(|s| s.kind == "slow")
        .unwrap()
        .buckets
        .iter()
        .find(|b| b.succeeded == 1)
        .unwrap();
    let run = slow_bucket.duration.unwrap();
    assert!(run.p50 >= 0.04, "slow ran {} s", run.p50);
    assert!(slow_bucket.queue_wait.is_some());
    assert_eq!(
        store.get(never).await.unwrap().unwrap().state,
        TaskState::Canceled
    );

    let day = sup
        .send(StatsSnapshot {
            window: StatsWindow::Day,
        })
        .await
        .unwrap();
    assert_eq!(day.total.iter().map(|b| b.succeeded).sum::<u64>(), 2);
}
