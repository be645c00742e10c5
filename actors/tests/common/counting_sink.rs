//! An instrumented sink that counts calls and how many ran at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use groundcrew_actors::{Artifact, ArtifactSink, EntityName, FsSink, SinkError};

/// Wraps a sink, counting calls and how many ran at once.
pub struct Counting {
    pub inner: FsSink,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub publish_calls: AtomicUsize,
}

impl Counting {
    pub fn new(inner: FsSink) -> Self {
        Counting {
            inner,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            publish_calls: AtomicUsize::new(0),
        }
    }

    fn observe<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Widens the window in which an overlapping call would be seen.
        std::thread::sleep(Duration::from_millis(2));
        let result = f();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl ArtifactSink for Counting {
    fn publish(&self, batch: &[Artifact]) -> Vec<Result<(), SinkError>> {
        self.publish_calls.fetch_add(1, Ordering::SeqCst);
        self.observe(|| self.inner.publish(batch))
    }

    fn remove(&self, entity: &EntityName) -> Result<bool, SinkError> {
        self.observe(|| self.inner.remove(entity))
    }

    fn holds(&self, entity: &EntityName, content: &[u8]) -> Result<bool, SinkError> {
        self.observe(|| self.inner.holds(entity, content))
    }
}
