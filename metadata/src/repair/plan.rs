//! The pure repair decision for one chunk: which of its shards can be read, which must
//! be rebuilt, which placements retire, and which nodes may not receive a new shard.

use std::collections::BTreeSet;

use cairn_common::NodeId;

use crate::liveness::NodeState;
use crate::namespace::ChunkMeta;

/// What to do for one chunk: a pure decision from its placement and the node states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairPlan {
    /// Shards that can be read (index, node), on up nodes: at least `k`.
    pub sources: Vec<(u32, NodeId)>,
    /// Indices to rebuild.
    pub missing: Vec<u32>,
    /// Placements on out or draining nodes, to retire once their index is rebuilt.
    pub on_out_nodes: Vec<(u32, NodeId)>,
    /// Nodes holding a shard of this chunk (up or down): never chosen as targets.
    pub holders: BTreeSet<NodeId>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("nothing to repair")]
    Nothing,
    #[error("only {usable} shards on up nodes, {needed} needed to rebuild")]
    TooFewSources { usable: usize, needed: usize },
}

/// `draining` nodes are up and serve their shards as sources, but every shard on them is
/// rebuilt elsewhere and then retired (that is how a drain empties a node).
pub fn plan(
    meta: &ChunkMeta,
    state: impl Fn(NodeId) -> NodeState,
    draining: impl Fn(NodeId) -> bool,
) -> Result<RepairPlan, PlanError> {
    let total = meta.redundancy.total_shards() as u32;
    let needed = meta.redundancy.data_shards();
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    let mut on_out_nodes = Vec::new();
    let mut holders = BTreeSet::new();
    for index in 0..total {
        match meta.shards.get(&index) {
            None => missing.push(index),
            Some(&node) => match state(node) {
                NodeState::Up => {
                    holders.insert(node);
                    sources.push((index, node));
                    if draining(node) {
                        missing.push(index);
                        on_out_nodes.push((index, node));
                    }
                }
                NodeState::Down => {
                    holders.insert(node);
                }
                NodeState::Out => {
                    missing.push(index);
                    on_out_nodes.push((index, node));
                }
            },
        }
    }
    if missing.is_empty() {
        return Err(PlanError::Nothing);
    }
    if sources.len() < needed {
        return Err(PlanError::TooFewSources {
            usable: sources.len(),
            needed,
        });
    }
    // Every usable shard is a candidate source, in order; repair reads k of them and
    // falls back to the others when a read fails.
    Ok(RepairPlan {
        sources,
        missing,
        on_out_nodes,
        holders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Hash32;
    use cairn_common::Redundancy;

    fn meta(placed: &[(u32, NodeId)]) -> ChunkMeta {
        ChunkMeta {
            size: 100,
            redundancy: Redundancy::Ec { k: 2, m: 2 },
            shard_hashes: vec![Hash32([0; 32]); 4],
            shards: placed.iter().copied().collect(),
        }
    }

    fn states(down: &[NodeId], out: &[NodeId]) -> impl Fn(NodeId) -> NodeState {
        let (down, out) = (down.to_vec(), out.to_vec());
        move |n| {
            if out.contains(&n) {
                NodeState::Out
            } else if down.contains(&n) {
                NodeState::Down
            } else {
                NodeState::Up
            }
        }
    }

    #[test]
    fn lost_and_out_shards_are_rebuilt_from_k_up_sources() {
        let m = meta(&[(0, 1), (1, 2), (3, 4)]);
        let p = plan(&m, states(&[], &[4]), |_| false).unwrap();
        assert_eq!(p.missing, vec![2, 3]);
        assert_eq!(p.on_out_nodes, vec![(3, 4)]);
        assert_eq!(p.sources, vec![(0, 1), (1, 2)]);
        assert!(!p.holders.contains(&4));
    }

    #[test]
    fn shards_on_down_nodes_are_waited_for_not_rebuilt() {
        let m = meta(&[(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(
            plan(&m, states(&[3, 4], &[]), |_| false),
            Err(PlanError::Nothing)
        );
        let m = meta(&[(0, 1), (1, 2), (2, 3)]);
        let p = plan(&m, states(&[2], &[]), |_| false).unwrap();
        assert_eq!(p.missing, vec![3]);
        assert!(p.holders.contains(&2), "a down holder is not a target");
    }

    #[test]
    fn shards_on_a_draining_node_are_sources_and_moved_away() {
        let m = meta(&[(0, 1), (1, 2), (2, 3), (3, 4)]);
        let p = plan(&m, states(&[], &[]), |n| n == 2).unwrap();
        assert_eq!(p.missing, vec![1]);
        assert_eq!(p.on_out_nodes, vec![(1, 2)]);
        assert!(p.sources.iter().any(|(i, _)| *i == 0));
        assert!(p.holders.contains(&2), "the draining node is not a target");
    }

    #[test]
    fn too_few_up_shards_cannot_be_repaired_yet() {
        let m = meta(&[(0, 1), (1, 2), (2, 3)]);
        assert_eq!(
            plan(&m, states(&[1], &[2]), |_| false),
            Err(PlanError::TooFewSources {
                usable: 1,
                needed: 2
            })
        );
    }
}
