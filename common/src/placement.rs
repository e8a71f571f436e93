//! Where the shards of a new chunk go: a pure function of the chunk id and the live nodes.
//!
//! Weighted rendezvous hashing: every node draws an exponential "arrival time"
//! `-ln(u) / weight` from a hash of (chunk, node); earlier arrivals win, so a node's chance of
//! being chosen is proportional to its weight (its free capacity). To spread shards over
//! failure domains, nodes are taken round-robin across zones: first the best node of every
//! zone, then the second best, and so on, so no zone gets a second shard before every zone
//! has one.

use std::collections::BTreeMap;

use crate::{ChunkId, NodeId};

/// A node that may receive a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub zone: String,
    pub free_bytes: u64,
}

/// Chooses up to `count` distinct nodes for the shards of `chunk`, in shard-index order.
/// Returns fewer when there are fewer candidates.
pub fn place(chunk: &ChunkId, candidates: &[Candidate], count: usize) -> Vec<NodeId> {
    let mut scored: Vec<(f64, &Candidate)> =
        candidates.iter().map(|c| (arrival(chunk, c), c)).collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));

    // Per zone, its nodes in arrival order; zones ordered by their best arrival.
    let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    let mut zone_order: Vec<&str> = Vec::new();
    for (_, c) in &scored {
        let entry = zones.entry(c.zone.as_str()).or_default();
        if entry.is_empty() {
            zone_order.push(c.zone.as_str());
        }
        entry.push(c.id);
    }
    let mut chosen = Vec::with_capacity(count.min(candidates.len()));
    let mut round = 0;
    while chosen.len() < count {
        let mut took_any = false;
        for zone in &zone_order {
            if chosen.len() == count {
                break;
            }
            if let Some(&id) = zones[zone].get(round) {
                chosen.push(id);
                took_any = true;
            }
        }
        if !took_any {
            break;
        }
        round += 1;
    }
    chosen
}

fn arrival(chunk: &ChunkId, node: &Candidate) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(chunk.as_bytes());
    hasher.update(&node.id.to_le_bytes());
    let digest = hasher.finalize();
    let bits = u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"));
    // Uniform in (0, 1): never 0, so ln is finite.
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let weight = node.free_bytes.max(1) as f64;
    -u.ln() / weight
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn node(id: NodeId, zone: &str, free: u64) -> Candidate {
        Candidate {
            id,
            zone: zone.into(),
            free_bytes: free,
        }
    }

    #[test]
    fn picks_distinct_nodes_and_is_deterministic() {
        let nodes: Vec<_> = (1..=8).map(|i| node(i, "z", 100)).collect();
        let chunk = ChunkId::random();
        let a = place(&chunk, &nodes, 6);
        assert_eq!(a.len(), 6);
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 6);
        assert_eq!(place(&chunk, &nodes, 6), a);
    }

    #[test]
    fn returns_fewer_when_the_cluster_is_small() {
        let nodes: Vec<_> = (1..=3).map(|i| node(i, "z", 100)).collect();
        assert_eq!(place(&ChunkId::random(), &nodes, 6).len(), 3);
        assert!(place(&ChunkId::random(), &[], 6).is_empty());
    }

    #[test]
    fn spreads_over_zones_before_doubling_up() {
        // 3 zones of 3 nodes; 6 shards must land 2 per zone, 3 shards 1 per zone.
        let nodes: Vec<_> = (1..=9)
            .map(|i| node(i, ["a", "b", "c"][(i as usize - 1) % 3], 100))
            .collect();
        let zone_of: HashMap<NodeId, String> =
            nodes.iter().map(|n| (n.id, n.zone.clone())).collect();
        for _ in 0..200 {
            let chunk = ChunkId::random();
            for (count, per_zone) in [(3usize, 1usize), (6, 2)] {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for id in place(&chunk, &nodes, count) {
                    *counts.entry(zone_of[&id].as_str()).or_default() += 1;
                }
                assert!(counts.values().all(|&c| c == per_zone), "{counts:?}");
            }
        }
    }

    #[test]
    fn favours_nodes_with_more_free_space() {
        // Node 1 has 4x the free space of each other node.
        let mut nodes: Vec<_> = (2..=5).map(|i| node(i, "z", 100)).collect();
        nodes.push(node(1, "z", 400));
        let mut firsts: HashMap<NodeId, usize> = HashMap::new();
        let trials = 4000;
        for _ in 0..trials {
            *firsts
                .entry(place(&ChunkId::random(), &nodes, 1)[0])
                .or_default() += 1;
        }
        // Expected share of node 1: 400/800 = 50%; others 12.5% each.
        let big = firsts[&1] as f64 / trials as f64;
        assert!((0.44..0.56).contains(&big), "node 1 share {big}");
        for id in 2..=5 {
            let share = firsts[&id] as f64 / trials as f64;
            assert!((0.09..0.16).contains(&share), "node {id} share {share}");
        }
    }
}
