//! The durable-store workload both store benches run: each task is two
//! durable writes, as the runtime makes them (the insert when it is queued
//! and the put of its terminal state), from many writers at once, as many
//! task actors would.

use std::sync::Arc;

use groundcrew_actors::{
    Change, Priority, TaskId, TaskRecord, TaskSpec, TaskState, TaskStore, Timestamp, Trigger,
};

/// Concurrent writers, like task actors reporting at once.
pub const WRITERS: u64 = 256;

/// A no-op task with a target of its own (`bench:t<id>`) in `state`, as
/// the runtime would have written it.
pub fn record(id: TaskId, state: TaskState) -> TaskRecord {
    // One target per task: coalescing would otherwise refuse a second
    // queued task of the key.
    let target = format!("bench:t{}", id.0).parse().unwrap();
    let mut r = TaskRecord::new_queued(
        id,
        TaskSpec::new("noop", target, Trigger::Api),
        "default".into(),
        Priority::AUTOMATIC,
        Timestamp::now(),
    );
    r.state = state;
    r.attempts = 1;
    r.result = Some(serde_json::Value::Null);
    r.finished_at = state.is_terminal().then(Timestamp::now);
    r
}

/// Queues and finishes `tasks` tasks from [`WRITERS`] concurrent writers,
/// awaiting each write's durability.
pub async fn drain<S: TaskStore>(store: Arc<S>, tasks: u64) {
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            let count = tasks / WRITERS + u64::from(w < tasks % WRITERS);
            tokio::spawn(async move {
                for _ in 0..count {
                    let id = store.allocate_id();
                    for state in [TaskState::Queued, TaskState::Succeeded] {
                        let change = Change::Put(Arc::new(record(id, state)));
                        TaskStore::write(&*store, vec![change]).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}
