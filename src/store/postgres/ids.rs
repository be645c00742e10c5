//! Task ids in blocks from the `task_ids` sequence.
//!
//! `TaskStore::allocate_id` is synchronous and cannot fail, and it runs on
//! the supervisor's thread for every new task: it must not wait for the
//! server. One `nextval` reserves a block of ids (the sequence's step, see
//! `schema.rs`); ids are handed out from the block in memory, and when half
//! of it is used the next block is fetched in the background. A sequence
//! never gives a value twice, even after a crash or to another node, so ids
//! never repeat; blocks are only taken in increasing order, so the ids of
//! one store only grow.
//!
//! Only when both blocks are used up before the next one arrives (the
//! server unreachable for longer than a block lasts) does `allocate` wait
//! for the server, retrying until it answers: the supervisor refuses new
//! requests while its writes fail, so that takes an outage that began
//! within a burst of submissions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::runtime::Handle;

const NEXT_BLOCK: &str = "SELECT nextval('groundcrew.task_ids')";

/// The ids this store may hand out.
#[derive(Debug)]
pub(super) struct Ids {
    blocks: Arc<Mutex<Blocks>>,
    size: u64,
    pool: Pool,
    runtime: Handle,
}

#[derive(Debug)]
struct Blocks {
    next: u64,
    end: u64,
    /// The start of a block fetched ahead.
    spare: Option<u64>,
    fetching: bool,
}

impl Blocks {
    /// Takes a fetched block, unless an older fetch lost a race to a newer
    /// one: blocks are only used in increasing order.
    fn offer(&mut self, start: u64) {
        if start >= self.end && self.spare.is_none_or(|s| start < s) {
            self.spare = Some(start);
        }
    }
}

/// A block fetch that failed.
pub(super) type FetchError = deadpool_postgres::PoolError;

impl Ids {
    /// Starts with the block at `first`; `size` is the sequence's step.
    pub(super) fn new(first: u64, size: u64, pool: Pool, runtime: Handle) -> Self {
        Ids {
            blocks: Arc::new(Mutex::new(Blocks {
                next: first,
                end: first + size,
                spare: None,
                fetching: false,
            })),
            size,
            pool,
            runtime,
        }
    }

    /// The next id.
    pub(super) fn allocate(&self) -> u64 {
        let mut blocks = self.lock();
        while blocks.next >= blocks.end {
            match blocks.spare.take() {
                Some(start) => {
                    blocks.next = start;
                    blocks.end = start + self.size;
                }
                None => {
                    // Not under the lock: a prefetch finishing on the
                    // store's runtime takes it.
                    drop(blocks);
                    let start = self.wait_for_block();
                    blocks = self.lock();
                    blocks.offer(start);
                }
            }
        }
        let id = blocks.next;
        blocks.next += 1;
        if blocks.end - blocks.next <= self.size / 2 && blocks.spare.is_none() && !blocks.fetching {
            blocks.fetching = true;
            self.prefetch();
        }
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prefetch(&self) {
        let (pool, blocks) = (self.pool.clone(), Arc::clone(&self.blocks));
        self.runtime.spawn(async move {
            let fetched = fetch(&pool).await;
            let mut blocks = blocks.lock().unwrap_or_else(|e| e.into_inner());
            blocks.fetching = false;
            match fetched {
                Ok(start) => blocks.offer(start),
                Err(e) => tracing::warn!(error = %crate::entities::error_chain(&e),
                    "fetching the next block of task ids failed; trying again later"),
            }
        });
    }

    /// Fetches a block on the store's runtime and blocks this thread until
    /// it arrives.
    fn wait_for_block(&self) -> u64 {
        let mut delay = Duration::from_millis(100);
        loop {
            let (tx, rx) = std::sync::mpsc::channel();
            let pool = self.pool.clone();
            self.runtime.spawn(async move {
                let _ = tx.send(fetch(&pool).await);
            });
            match rx.recv() {
                Ok(Ok(start)) => return start,
                Ok(Err(e)) => tracing::error!(error = %crate::entities::error_chain(&e),
                    "out of task ids and PostgreSQL does not answer; waiting for it"),
                Err(_) => tracing::error!("out of task ids and the store is closing"),
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// Reserves one block; returns its first id.
pub(super) async fn fetch(pool: &Pool) -> Result<u64, FetchError> {
    let client = pool.get().await?;
    let row = client.query_one(NEXT_BLOCK, &[]).await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// The sequence's step: the size of one block.
pub(super) async fn block_size(pool: &Pool) -> Result<u64, FetchError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT increment_by FROM pg_sequences
              WHERE schemaname = 'groundcrew' AND sequencename = 'task_ids'",
            &[],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_only_taken_in_increasing_order() {
        // Handing out 300 from the block 257..385.
        let mut blocks = Blocks {
            next: 300,
            end: 385,
            spare: None,
            fetching: true,
        };
        // A slow fetch delivers a block older than the one in use.
        blocks.offer(129);
        assert_eq!(blocks.spare, None);
        blocks.offer(641);
        blocks.offer(513);
        assert_eq!(blocks.spare, Some(513), "the lowest newer block first");
    }
}
