//! Chunks allocated for writes that have not committed yet, kept in the leader's memory
//! so the storage nodes' orphan sweep never deletes the shards of a write in progress.
//! An entry lasts `ttl` (a writer that never commits, e.g. a killed client, is waited for
//! that long). Not replicated: after a leader change the sweep's age threshold (shards
//! younger than the nodes' orphan grace are never swept) protects writes in flight.
//!
//! A chunk whose entry expired is no longer protected, so a commit may not use it any
//! more ([`PendingChunks::admits`]): a writer stalled past the ttl is told to write again
//! instead of being acknowledged for shards the sweep may have deleted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_common::ChunkId;

pub struct PendingChunks {
    ttl: Duration,
    started: Mutex<HashMap<ChunkId, Instant>>,
    /// The Raft term this replica last served writes in, and when it was first seen: a
    /// leader knows only the chunks allocated since then.
    leading: Mutex<Option<(u64, Instant)>>,
}

impl PendingChunks {
    pub fn new(ttl: Duration) -> Self {
        PendingChunks {
            ttl,
            started: Mutex::default(),
            leading: Mutex::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
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

    /// Whether a write of the leader of `term` may still use `chunk`, a chunk the
    /// namespace does not hold: it is pending here, or this leader took office less than
    /// `ttl` ago, so the chunk may have been allocated under its predecessor and the
    /// nodes' orphan grace still protects it. Otherwise its pending time ran out and the
    /// storage nodes may have swept its shards.
    pub fn admits(&self, chunk: &ChunkId, term: u64) -> bool {
        self.admits_at(chunk, term, Instant::now())
    }

    fn admits_at(&self, chunk: &ChunkId, term: u64, now: Instant) -> bool {
        let since = self.leading_since(term, now);
        self.contains(chunk) || now.duration_since(since) < self.ttl
    }

    /// When this replica started leading in `term`: the first time it was asked about
    /// that term (no later than its first allocation, which calls this too).
    pub fn leading_since(&self, term: u64, now: Instant) -> Instant {
        let mut leading = self.leading.lock().expect("pending lock poisoned");
        match *leading {
            Some((t, since)) if t == term => since,
            _ => {
                *leading = Some((term, now));
                now
            }
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
    fn a_leader_admits_unknown_chunks_only_during_its_first_ttl() {
        let p = PendingChunks::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (mine, older) = (ChunkId::random(), ChunkId::random());
        // A new leader cannot tell a predecessor's chunks from expired ones yet.
        assert!(p.admits_at(&older, 5, t0));
        p.start(mine);
        let later = t0 + Duration::from_secs(61);
        assert!(!p.admits_at(&older, 5, later), "expired under this leader");
        // A chunk still pending is admitted whatever the tenure.
        let fresh = ChunkId::random();
        p.start(fresh);
        assert!(p.admits_at(&fresh, 5, Instant::now() + Duration::from_secs(1)));
        // A new term starts a new tenure.
        assert!(p.admits_at(&older, 6, later));
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
