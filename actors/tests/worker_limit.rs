//! The worker limit is never exceeded, whatever mix of submits, cancels and
//! limit changes arrives (property test against the real actors).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use groundcrew_actors::{Cancel, Registry, SetLimit, Submit, TaskContext, TaskError, TaskState};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Submit { target: u8, ms: u64 },
    Cancel(usize),
    SetLimit(usize),
    Sleep(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..6u8, 0..4u64).prop_map(|(target, ms)| Op::Submit { target, ms }),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0..5usize).prop_map(Op::SetLimit),
        2 => (0..4u64).prop_map(Op::Sleep),
    ]
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    actix_rt::System::new().block_on(async move {
        let running = Arc::new(AtomicUsize::new(0));
        let max_running = Arc::new(AtomicUsize::new(0));
        let mut registry = Registry::new();
        let (r, m) = (running.clone(), max_running.clone());
        registry
            .register("work", move |ctx: TaskContext| {
                let (r, m) = (r.clone(), m.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    let ms = ctx.params()["ms"].as_u64().unwrap_or(0);
                    let out = tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(serde_json::Value::Null),
                        () = ctx.canceled() => Err(TaskError::Canceled),
                    };
                    r.fetch_sub(1, Ordering::SeqCst);
                    out
                }
            })
            .unwrap();
        let (sup, store) = start(registry, 2).await;
        let mut limit = 2usize;
        let mut max_limit = 2usize;
        // While a lowered limit is below the running count, that count may
        // only fall.
        let mut over_cap: Option<usize> = None;
        let mut ids = BTreeSet::new();
        for op in ops {
            match op {
                Op::Submit { target, ms } => {
                    let s = spec("work", &format!("asn:{target}")).with_params(serde_json::json!({"ms": ms}));
                    ids.insert(sup.send(Submit(s)).await.unwrap().unwrap().id);
                }
                Op::Cancel(i) => {
                    if !ids.is_empty() {
                        let id = *ids.iter().nth(i % ids.len()).unwrap();
                        let _ = sup.send(Cancel::new(id)).await.unwrap();
                    }
                }
                Op::SetLimit(l) => {
                    sup.send(SetLimit { pool: "background".into(), limit: l }).await.unwrap().unwrap();
                    limit = l;
                    max_limit = max_limit.max(l);
                    over_cap = None;
                }
                Op::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
            let p = panel(&sup).await;
            let pool = &p.pools[0];
            prop_assert_eq!(pool.limit, limit);
            prop_assert_eq!(pool.active, p.running.len());
            if pool.active > pool.limit {
                let cap = over_cap.unwrap_or(pool.active);
                prop_assert!(pool.active <= cap, "admitted above a lowered limit: {} running, limit {}", pool.active, pool.limit);
                over_cap = Some(pool.active);
            } else {
                over_cap = None;
            }
            prop_assert!(max_running.load(Ordering::SeqCst) <= max_limit);
        }
        sup.send(SetLimit { pool: "background".into(), limit: 3 }).await.unwrap().unwrap();
        wait_panel(&sup, "idle", |p| p.running.is_empty() && p.pending_total == 0).await;
        for id in ids {
            let r = wait_ended(&store, id).await;
            prop_assert!(
                matches!(r.state, TaskState::Succeeded | TaskState::Canceled),
                "task {} ended {:?}", id, r.state
            );
        }
        prop_assert!(max_running.load(Ordering::SeqCst) <= max_limit.max(3));
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn worker_limit_is_never_exceeded(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(ops)?;
    }
}

#[actix_rt::test]
async fn raising_the_limit_admits_waiting_work_at_once_and_lowering_stops_nothing() {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    let (sup, store) = start(registry, 1).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(submit(&sup, "refresh", &format!("asn:{i}")).await.id);
    }
    wait_panel(&sup, "one running", |p| {
        p.running.len() == 1 && p.pending_total == 3
    })
    .await;
    sup.send(SetLimit {
        pool: "background".into(),
        limit: 3,
    })
    .await
    .unwrap()
    .unwrap();
    wait_panel(&sup, "three at the gate", |p| {
        p.running.len() == 3 && p.running.iter().all(|t| t.stage.is_some())
    })
    .await;
    sup.send(SetLimit {
        pool: "background".into(),
        limit: 1,
    })
    .await
    .unwrap()
    .unwrap();
    let p = panel(&sup).await;
    assert_eq!(
        (p.workers.active, p.workers.limit),
        (3, 1),
        "lowering stops no running task"
    );
    gate.open(3);
    // After three finish, only one more may start under the new limit.
    wait_panel(&sup, "last one running", |p| {
        p.running.len() == 1 && p.pending_total == 0
    })
    .await;
    gate.open(1);
    for id in ids {
        assert_eq!(wait_ended(&store, id).await.state, TaskState::Succeeded);
    }
    assert_eq!(gate.max_running.load(Ordering::SeqCst), 3);
    let err = sup
        .send(SetLimit {
            pool: "nope".into(),
            limit: 1,
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown pool \"nope\"");
}
