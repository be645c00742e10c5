//! Issue 16: the fencing-token rules, as a property of the real actors.
//!
//! For random interleavings of claims (submits), cancels with and without a
//! hard stop, reclaims (a retryable failure runs the task again), publishes
//! from any execution ever started (current or long gone), and completions,
//! the entity writer accepts exactly the writes of the execution that holds
//! its task's claim, and the manifest only ever names such executions.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use groundcrew_actors::{
    Cancel, EntityName, EntityWriter, FsSink, KindOptions, Manifest, MemoryStore, Metrics,
    PublishError, Registry, RunToken, Supervisor, TaskContext, TaskError, TaskId, TaskState,
    TaskStore,
};
use proptest::prelude::*;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
enum Op {
    /// A new task (its own entity, so nothing coalesces).
    Submit,
    /// A publish from the i-th execution ever started.
    Publish(usize),
    /// The i-th execution returns success.
    Complete(usize),
    /// The i-th execution fails retryably: the task is claimed again.
    Fail(usize),
    /// Cancel the i-th task, stopping it hard at once.
    CancelHard(usize),
    /// Cancel the i-th task with a long grace: its execution keeps the
    /// claim until it ends.
    CancelSoft(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Submit),
        6 => any::<usize>().prop_map(Op::Publish),
        1 => any::<usize>().prop_map(Op::Complete),
        2 => any::<usize>().prop_map(Op::Fail),
        1 => any::<usize>().prop_map(Op::CancelHard),
        1 => any::<usize>().prop_map(Op::CancelSoft),
    ]
}

/// What the test may do with one execution: publish through its context
/// (even after it ended), and tell its future how to end.
struct Handle {
    ctx: TaskContext,
    end: mpsc::UnboundedSender<Result<serde_json::Value, TaskError>>,
}

type Handles = Arc<Mutex<HashMap<(TaskId, RunToken), Arc<Handle>>>>;

/// A kind whose executions wait, ignoring cancellation, until the test
/// ends them.
fn puppet(
    handles: Handles,
) -> impl Fn(TaskContext) -> futures::future::BoxFuture<'static, groundcrew_actors::TaskResult> {
    move |ctx: TaskContext| {
        let (end, mut ended) = mpsc::unbounded_channel();
        let handle = Arc::new(Handle {
            ctx: ctx.clone(),
            end,
        });
        handles
            .lock()
            .unwrap()
            .insert((ctx.id(), ctx.run()), handle);
        Box::pin(async move {
            match ended.recv().await {
                Some(outcome) => outcome,
                None => std::future::pending().await,
            }
        })
    }
}

/// Waits until nothing is in flight and the store has caught up with the
/// supervisor: no task waits in retry backoff, every running execution has
/// registered its handle, none stopped hard is still ending, and the store
/// shows exactly the running ones running (with their attempts: here the
/// run token is the attempt).
async fn settle(
    sup: &actix::Addr<Supervisor>,
    store: &MemoryStore,
    handles: &Handles,
    tasks: &[TaskId],
    soft: &[TaskId],
) {
    for _ in 0..2000 {
        let p = panel(sup).await;
        let mut settled = p.pending_total == 0;
        for &id in tasks {
            let r = store.get(id).await.unwrap().unwrap();
            let stored_running = matches!(r.state, TaskState::Running | TaskState::Canceling);
            match p.running.iter().find(|t| t.id == id) {
                Some(t) => {
                    let run = RunToken(u64::from(t.attempts));
                    let registered = handles.lock().unwrap().contains_key(&(id, run));
                    let stopping = t.state == TaskState::Canceling && !soft.contains(&id);
                    settled &= registered && !stopping && r.state == t.state && r.run == Some(run);
                }
                None => settled &= !stored_running,
            }
        }
        if settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("did not settle: {:#?}", panel(sup).await);
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    actix_rt::System::new().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Arc::new(MemoryStore::new());
        let metrics = Metrics::unregistered().unwrap();
        let sink = Arc::new(FsSink::open(dir.path()).unwrap());
        let writer = EntityWriter::start(sink, manifest.clone(), metrics.clone());
        let handles: Handles = Arc::default();
        let mut registry = Registry::new();
        let options = KindOptions {
            max_attempts: 1000,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            ..KindOptions::default()
        };
        registry
            .register_with("puppet", puppet(handles.clone()), options)
            .unwrap();
        let store = MemoryStore::new();
        let sup = Supervisor::builder()
            .registry(registry)
            .store(Arc::new(store.clone()))
            .writer(writer)
            .metrics(metrics)
            .pool("background", 64)
            .start()
            .await
            .unwrap();

        let mut tasks: Vec<TaskId> = Vec::new();
        let mut soft: Vec<TaskId> = Vec::new();
        // Every execution in the order it was first seen, and every
        // accepted write with the execution it came from.
        let mut runs: Vec<(TaskId, RunToken)> = Vec::new();
        let mut accepted: HashMap<EntityName, (TaskId, RunToken)> = HashMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            if std::env::var_os("FENCING_TRACE").is_some() {
                eprintln!("step {step}: {op:?} runs={runs:?}");
            }
            settle(&sup, &store, &handles, &tasks, &soft).await;
            {
                let known = handles.lock().unwrap();
                let mut new: Vec<_> = known
                    .keys()
                    .filter(|k| !runs.contains(k))
                    .copied()
                    .collect();
                new.sort();
                runs.extend(new);
            }
            let handle = |i: usize| -> Option<((TaskId, RunToken), Arc<Handle>)> {
                let key = *runs.get(i % runs.len().max(1))?;
                Some((key, handles.lock().unwrap()[&key].clone()))
            };
            match op {
                Op::Submit => {
                    let target = format!("asn:{}", tasks.len());
                    tasks.push(submit(&sup, "puppet", &target).await.id);
                }
                Op::Publish(i) => {
                    let Some(((task, run), h)) = handle(i) else {
                        continue;
                    };
                    let r = store.get(task).await.unwrap().unwrap();
                    let holds = r.run == Some(run)
                        && matches!(r.state, TaskState::Running | TaskState::Canceling);
                    let entity: EntityName = format!("asn:{}", task.0).parse().unwrap();
                    let result = h
                        .ctx
                        .publish(entity.clone(), format!("step {step}\n"), None)
                        .await;
                    match result {
                        Ok(_) => {
                            prop_assert!(
                                holds,
                                "accepted a write of stale run {run} of task {task}: {r:?}"
                            );
                            accepted.insert(entity, (task, run));
                        }
                        Err(PublishError::StaleRun {
                            task: t,
                            stale,
                            current,
                            ..
                        }) => {
                            prop_assert!(
                                !holds,
                                "refused the write of current run {run} of task {task}: {r:?}, current {current:?}"
                            );
                            prop_assert_eq!((t, stale), (task, run));
                            let live = matches!(r.state, TaskState::Running | TaskState::Canceling);
                            prop_assert_eq!(current, r.run.filter(|_| live));
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                Op::Complete(i) | Op::Fail(i) => {
                    let Some(((task, run), h)) = handle(i) else { continue };
                    let outcome = match op {
                        Op::Complete(_) => Ok(serde_json::Value::Null),
                        _ => Err(TaskError::retryable("again")),
                    };
                    // An execution stopped hard is gone: nothing hears it.
                    if h.end.send(outcome).is_ok() {
                        // Its end reaches the supervisor asynchronously.
                        wait_panel(&sup, "the execution's end", |p| {
                            !p.running
                                .iter()
                                .any(|t| t.id == task && u64::from(t.attempts) == run.0)
                        })
                        .await;
                    }
                }
                Op::CancelHard(i) | Op::CancelSoft(i) => {
                    let Some(&task) = tasks.get(i % tasks.len().max(1)) else {
                        continue;
                    };
                    let grace = match op {
                        Op::CancelHard(_) => Duration::ZERO,
                        _ => Duration::from_secs(3600),
                    };
                    if sup
                        .send(Cancel::new(task).with_grace(grace))
                        .await
                        .unwrap()
                        .is_ok()
                        && grace > Duration::ZERO
                    {
                        soft.push(task);
                    } else {
                        soft.retain(|t| *t != task);
                    }
                }
            }
        }
        settle(&sup, &store, &handles, &tasks, &soft).await;
        // The manifest names, for each entity, the last accepted write.
        for (entity, (task, run)) in accepted {
            let record = manifest.artifact(&entity).await.unwrap().unwrap();
            prop_assert_eq!((record.task, record.run), (Some(task), Some(run)));
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn only_the_execution_holding_the_claim_can_write(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(ops)?;
    }
}
