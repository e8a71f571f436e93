//! Chunks allocated for writes that have not committed yet, kept in the leader's memory
//! so the storage nodes' orphan sweep never deletes the shards of a write in progress.
//! An entry lasts `ttl` (a writer that never commits, e.g. a killed client, is waited for
//! that long). Not replicated: after a leader change the sweep's age threshold (shards
//! younger than the nodes' orphan grace are never swept) protects writes in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_common::ChunkId;

pub struct PendingChunks {
    ttl: Duration,
    started: Mutex<HashMap<ChunkId, Instant>>,
}

impl PendingChunks {
    pub fn new(ttl: Duration) -> Self {
        PendingChunks {
            ttl,
            started: Mutex::default(),
        }
    }

    pub fn start(&self, chunk: ChunkId) {
        let now = Instant::now();
        let mut started = self.started.lock().expect("pending lock poisoned");
        if started.len().is_multiple_of(1024) {
            started.retain(|_, at| now.duration_since(*at) < self.ttl);
        }
        started.insert(chunk, now);
    }

    pub fn finish(&self, chunks: &[ChunkId]) {
        let mut started = self.started.lock().expect("pending lock poisoned");
        for c in chunks {
            started.remove(c);
        }
    }

    pub fn contains(&self, chunk: &ChunkId) -> bool {
        self.started
            .lock()
            .expect("pending lock poisoned")
            .get(chunk)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_pending_from_allocation_until_commit() {
        let p = PendingChunks::new(Duration::from_secs(60));
        let c = ChunkId::random();
        assert!(!p.contains(&c));
        p.start(c);
        assert!(p.contains(&c));
        p.finish(&[c]);
        assert!(!p.contains(&c));
    }

    #[test]
    fn abandoned_chunks_stop_being_pending_after_the_ttl() {
        let p = PendingChunks::new(Duration::from_millis(20));
        let c = ChunkId::random();
        p.start(c);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!p.contains(&c));
    }
}
