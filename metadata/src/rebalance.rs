//! Rebalancing: which node should give a shard to which, so that shard counts per node
//! end within a tolerance of each other (after nodes were added). Pure planning; the
//! repair worker (`repair.rs`) carries the moves out when it has nothing to repair.
//!
//! Tolerance: the fullest and the emptiest eligible node differ by at most
//! `max(2, 10% of the mean)` shards.

use std::collections::BTreeMap;

use cairn_common::NodeId;

/// The spread of shard counts that counts as balanced.
pub fn tolerance(counts: &BTreeMap<NodeId, u64>) -> u64 {
    if counts.is_empty() {
        return 0;
    }
    let mean = counts.values().sum::<u64>() as f64 / counts.len() as f64;
    ((mean * 0.1).ceil() as u64).max(2)
}

/// Up to `max` single-shard moves (from, to), each from the currently fullest node to the
/// currently emptiest, until the spread is within [`tolerance`].
pub fn plan_moves(counts: &BTreeMap<NodeId, u64>, max: usize) -> Vec<(NodeId, NodeId)> {
    let tolerance = tolerance(counts);
    let mut counts = counts.clone();
    let mut moves = Vec::new();
    while moves.len() < max {
        let Some((&full, &most)) = counts
            .iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
        else {
            break;
        };
        let (&empty, &least) = counts
            .iter()
            .min_by_key(|(n, c)| (**c, **n))
            .expect("not empty");
        if most - least <= tolerance {
            break;
        }
        *counts.get_mut(&full).expect("present") -= 1;
        *counts.get_mut(&empty).expect("present") += 1;
        moves.push((full, empty));
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_empty_nodes_receive_shards_until_within_tolerance() {
        let mut counts: BTreeMap<NodeId, u64> = (1..=6).map(|n| (n, 100)).collect();
        counts.insert(7, 0);
        counts.insert(8, 0);
        let moves = plan_moves(&counts, 1000);
        let mut after = counts.clone();
        for (from, to) in &moves {
            *after.get_mut(from).unwrap() -= 1;
            *after.get_mut(to).unwrap() += 1;
        }
        let spread = after.values().max().unwrap() - after.values().min().unwrap();
        assert!(spread <= tolerance(&counts), "{after:?}");
        assert!(moves.iter().all(|(_, to)| *to == 7 || *to == 8));
        assert_eq!(after.values().sum::<u64>(), 600);
    }

    #[test]
    fn balanced_cluster_needs_no_move() {
        let counts: BTreeMap<NodeId, u64> = [(1, 10), (2, 11), (3, 12)].into_iter().collect();
        assert!(plan_moves(&counts, 10).is_empty());
        assert!(plan_moves(&BTreeMap::new(), 10).is_empty());
    }
}
