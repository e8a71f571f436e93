//! Decoded chunks recently read or written by this mount. Chunks never change once
//! written, so a cached chunk is never stale; the cache only bounds memory (least
//! recently used goes first).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use cairn_common::ChunkId;

pub struct ChunkCache {
    capacity_bytes: usize,
    bytes: usize,
    chunks: HashMap<ChunkId, Arc<Vec<u8>>>,
    /// Least recently used first; may hold ids already evicted (skipped on eviction).
    order: VecDeque<ChunkId>,
}

impl ChunkCache {
    pub fn new(capacity_bytes: usize) -> Self {
        ChunkCache {
            capacity_bytes,
            bytes: 0,
            chunks: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        let data = self.chunks.get(id)?.clone();
        self.touch(*id);
        Some(data)
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    pub fn insert(&mut self, id: ChunkId, data: Arc<Vec<u8>>) {
        if data.len() > self.capacity_bytes {
            return;
        }
        if let Some(old) = self.chunks.insert(id, data.clone()) {
            self.bytes -= old.len();
        }
        self.bytes += data.len();
        self.touch(id);
        while self.bytes > self.capacity_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(d) = self.chunks.remove(&oldest) {
                self.bytes -= d.len();
            }
        }
    }

    fn touch(&mut self, id: ChunkId) {
        if let Some(pos) = self.order.iter().position(|x| *x == id) {
            self.order.remove(pos);
        }
        self.order.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let mut cache = ChunkCache::new(30);
        let ids: Vec<ChunkId> = (0..4).map(|_| ChunkId::random()).collect();
        for id in &ids[..3] {
            cache.insert(*id, Arc::new(vec![0; 10]));
        }
        assert!(cache.get(&ids[0]).is_some());
        cache.insert(ids[3], Arc::new(vec![0; 10]));
        assert!(cache.get(&ids[1]).is_none(), "1 was least recently used");
        assert!(cache.get(&ids[0]).is_some());
        assert!(cache.get(&ids[2]).is_some());
        assert!(cache.get(&ids[3]).is_some());
    }
}
