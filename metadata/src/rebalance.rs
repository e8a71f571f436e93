//! Rebalancing: which node should give a shard to which, so that shard counts per node
//! end within a tolerance of each other (after nodes were added or weights changed).
//! Pure planning; the repair worker (`repair.rs`) carries the moves out when it has
//! nothing to repair.
//!
//! Counts are compared after dividing by each node's weight (a node of weight 200% should
//! hold twice the shards). Tolerance: the fullest and the emptiest eligible node differ by
//! at most `max(2, 10% of the mean)` weighted shards.

use std::collections::BTreeMap;

use cairn_common::NodeId;

/// The spread of (weighted) shard counts that counts as balanced.
pub fn tolerance(counts: &BTreeMap<NodeId, u64>) -> u64 {
    if counts.is_empty() {
        return 0;
    }
    let mean = counts.values().sum::<u64>() as f64 / counts.len() as f64;
    ((mean * 0.1).ceil() as u64).max(2)
}

/// A count as a normal-weight node would hold it, in hundredths of a shard.
fn weighted(count: u64, weight_pct: u32) -> u64 {
    count * 10_000 / u64::from(weight_pct.max(1))
}

/// Up to `max` single-shard moves (from, to), each from the currently fullest node to the
/// currently emptiest (by weighted count), until the spread is within [`tolerance`].
/// `counts` maps each eligible node to (shards, weight percent).
pub fn plan_moves(counts: &BTreeMap<NodeId, (u64, u32)>, max: usize) -> Vec<(NodeId, NodeId)> {
    let tolerance = 100
        * tolerance(
            &counts
                .iter()
                .map(|(n, (c, w))| (*n, weighted(*c, *w) / 100))
                .collect(),
        );
    let mut counts = counts.clone();
    let mut moves = Vec::new();
    while moves.len() < max {
        let key = |(n, (c, w)): (&NodeId, &(u64, u32))| (weighted(*c, *w), *n);
        let Some((most, full)) = counts
            .iter()
            .map(key)
            .max_by_key(|(v, n)| (*v, std::cmp::Reverse(*n)))
        else {
            break;
        };
        let (least, empty) = counts.iter().map(key).min().expect("not empty");
        // A move shifts each side by one shard of its weight: stop when within tolerance,
        // or when one move would just swap which node is fuller.
        let step = weighted(1, counts[&full].1).max(weighted(1, counts[&empty].1));
        if most - least <= tolerance.max(step) {
            break;
        }
        counts.get_mut(&full).expect("present").0 -= 1;
        counts.get_mut(&empty).expect("present").0 += 1;
        moves.push((full, empty));
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(
        counts: &BTreeMap<NodeId, (u64, u32)>,
    ) -> (Vec<(NodeId, NodeId)>, BTreeMap<NodeId, u64>) {
        let moves = plan_moves(counts, 10_000);
        let mut after: BTreeMap<NodeId, u64> = counts.iter().map(|(n, (c, _))| (*n, *c)).collect();
        for (from, to) in &moves {
            *after.get_mut(from).unwrap() -= 1;
            *after.get_mut(to).unwrap() += 1;
        }
        (moves, after)
    }

    #[test]
    fn new_empty_nodes_receive_shards_until_within_tolerance() {
        let mut counts: BTreeMap<NodeId, (u64, u32)> = (1..=6).map(|n| (n, (100, 100))).collect();
        counts.insert(7, (0, 100));
        counts.insert(8, (0, 100));
        let (moves, after) = apply(&counts);
        let spread = after.values().max().unwrap() - after.values().min().unwrap();
        assert!(spread <= tolerance(&after), "{after:?}");
        assert!(moves.iter().all(|(_, to)| *to == 7 || *to == 8));
        assert_eq!(after.values().sum::<u64>(), 600);
    }

    #[test]
    fn balanced_cluster_needs_no_move() {
        let counts: BTreeMap<NodeId, (u64, u32)> = [(1, (10, 100)), (2, (11, 100)), (3, (12, 100))]
            .into_iter()
            .collect();
        assert!(plan_moves(&counts, 10).is_empty());
        assert!(plan_moves(&BTreeMap::new(), 10).is_empty());
    }

    #[test]
    fn a_heavier_node_ends_with_proportionally_more_shards() {
        let counts: BTreeMap<NodeId, (u64, u32)> =
            [(1, (150, 100)), (2, (150, 100)), (3, (0, 200))]
                .into_iter()
                .collect();
        let (_, after) = apply(&counts);
        // Ideal: 75 / 75 / 150.
        assert!((140..=160).contains(&after[&3]), "{after:?}");
        assert!((70..=80).contains(&after[&1]), "{after:?}");
    }
}
