//! Shared fixtures for the supervisor tests: a kind whose executions wait
//! at a gate the test opens, and helpers to wait for a panel condition.
#![allow(dead_code, unreachable_pub)]

pub mod counting_sink;
pub mod failing_store;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use groundcrew_actors::{
    MemoryStore, Panel, PanelSnapshot, Registry, Submit, SubmitReply, Supervisor, TaskContext,
    TaskError, TaskId, TaskRecord, TaskSpec, TaskStore, Trigger,
};
use tokio::sync::Semaphore;

/// A kind whose executions each take one permit from a gate before they
/// finish, counting how many run at once.
#[derive(Clone)]
pub struct Gate {
    pub permits: Arc<Semaphore>,
    pub running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
    pub started: Arc<AtomicUsize>,
}

impl Gate {
    pub fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            running: Arc::default(),
            max_running: Arc::default(),
            started: Arc::default(),
        }
    }

    /// Lets `n` executions finish.
    pub fn open(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Registers the gate as kind `name`.
    pub fn register(&self, registry: &mut Registry, name: &str) {
        let gate = self.clone();
        registry
            .register(name, move |ctx: TaskContext| {
                let gate = gate.clone();
                async move {
                    let now = gate.running.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.max_running.fetch_max(now, Ordering::SeqCst);
                    gate.started.fetch_add(1, Ordering::SeqCst);
                    ctx.stage("waiting at the gate");
                    let outcome = tokio::select! {
                        permit = gate.permits.acquire() => {
                            permit.expect("gate open").forget();
                            Ok(serde_json::json!({"target": ctx.target().to_string()}))
                        }
                        () = ctx.canceled() => Err(TaskError::Canceled),
                    };
                    gate.running.fetch_sub(1, Ordering::SeqCst);
                    outcome
                }
            })
            .unwrap();
    }
}

pub fn spec(kind: &str, target: &str) -> TaskSpec {
    TaskSpec::new(kind, target.parse().unwrap(), Trigger::FeedUpdate)
}

pub async fn submit(sup: &Addr<Supervisor>, kind: &str, target: &str) -> SubmitReply {
    sup.send(Submit(spec(kind, target))).await.unwrap().unwrap()
}

pub async fn panel(sup: &Addr<Supervisor>) -> Panel {
    sup.send(PanelSnapshot::default()).await.unwrap()
}

/// Polls the panel until `cond` holds; panics after 10 s.
pub async fn wait_panel(
    sup: &Addr<Supervisor>,
    what: &str,
    cond: impl Fn(&Panel) -> bool,
) -> Panel {
    for _ in 0..2000 {
        let p = panel(sup).await;
        if cond(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}: {:#?}", panel(sup).await);
}

/// Polls the store until the task is terminal; panics after 10 s.
pub async fn wait_ended(store: &MemoryStore, id: TaskId) -> TaskRecord {
    for _ in 0..2000 {
        if let Some(r) = store.get(id).await.unwrap() {
            if r.state.is_terminal() {
                return r;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("task {id} did not end: {:?}", store.get(id).await.unwrap());
}

/// A supervisor with the given kinds, pool `background` at `limit`.
pub async fn start(registry: Registry, limit: usize) -> (Addr<Supervisor>, MemoryStore) {
    start_on(registry, limit, MemoryStore::new()).await
}

/// Like [`start`], on `store`.
pub async fn start_on<S: TaskStore + Clone>(
    registry: Registry,
    limit: usize,
    store: S,
) -> (Addr<Supervisor>, S) {
    let sup = Supervisor::builder()
        .registry(registry)
        .store(Arc::new(store.clone()))
        .pool("background", limit)
        .start()
        .await
        .unwrap();
    (sup, store)
}
