//! The shard-count check, run by the leader. A node whose heartbeats report clearly
//! fewer shards than the metadata places on it has lost some: files deleted or damaged
//! behind its back, a file system repaired by fsck, an old backup restored, or a node
//! registered before disk ids existed that came back with an empty directory. Such a node
//! is checked: every shard placed on it is asked for (`StatShard`, the header only), and
//! those it does not have, or has damaged or with another hash than the metadata's, are
//! recorded lost (`ShardLost`), so repair rebuilds them. Nothing else changes.
//!
//! The count a heartbeat carries is compared with a snapshot of the placements taken at
//! least [`SETTLE`] before the heartbeat arrived. A shard is written on its node before
//! its placement is committed, so every shard placed at the snapshot was on the node
//! before that heartbeat's count was taken: writes in progress, orphans and deletions in
//! flight only make the count higher. What makes it lower is loss, plus a shard or two
//! quarantined and not yet reported, which [`tolerance`] absorbs. A check that finds the
//! node complete costs one header read per shard; a node is checked at most once per
//! [`RECHECK_AFTER`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::NodeId;
use cairn_shard_io::NodePool;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::leadership::leads_with_quorum;
use crate::liveness::{Liveness, NodeState};
use crate::namespace::Command;
use crate::state_machine::SharedState;
use crate::types::Raft;

/// How much older than a heartbeat the placement snapshot must be. A node builds its
/// heartbeat just before sending it and gives up on it after 3 s (`heartbeat.rs`).
pub const SETTLE: Duration = Duration::from_secs(5);
/// A node found short is not checked again for this long (the check itself closes the
/// gap it explains; this bounds the cost of one that cannot be explained).
pub const RECHECK_AFTER: Duration = Duration::from_secs(600);
/// Header reads in flight during a check.
const IN_FLIGHT: usize = 16;

/// How many shards fewer than placed a node may report without being checked.
pub fn tolerance(placed: u64) -> u64 {
    2 + placed / 1000
}

/// The nodes to check: `(node, placed, reported)` for each node whose `reported` count
/// (only nodes with a usable heartbeat are in it) is below what was `placed` on it by more
/// than the tolerance.
pub fn short_nodes(
    placed: &BTreeMap<NodeId, u64>,
    reported: &BTreeMap<NodeId, u64>,
) -> Vec<(NodeId, u64, u64)> {
    reported
        .iter()
        .filter_map(|(&node, &count)| {
            let placed = placed.get(&node).copied().unwrap_or(0);
            (count + tolerance(placed) < placed).then_some((node, placed, count))
        })
        .collect()
}

pub struct NodeCheckConfig {
    pub interval: Duration,
    /// This replica's identity towards the storage nodes.
    pub transport: cairn_net::Transport,
}

/// Placements per node at one moment, and the nodes already compared with them.
struct Snapshot {
    taken: Instant,
    placed: BTreeMap<NodeId, u64>,
    judged: BTreeSet<NodeId>,
}

/// Runs until `shutdown`: every `interval`, while this replica leads, takes a snapshot
/// of the placements, or compares each node's first heartbeat that arrived [`SETTLE`]
/// after the snapshot with it (a snapshot serves until `2 * SETTLE`, then a new one is
/// taken), and checks the nodes found short (one at a time).
pub async fn run(
    id: u64,
    raft: Raft,
    state: SharedState,
    liveness: Arc<Mutex<Liveness>>,
    config: NodeCheckConfig,
    shutdown: CancellationToken,
) {
    let pool = NodePool::new(config.transport.clone());
    let mut snapshot: Option<Snapshot> = None;
    let mut checked: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        if !leads_with_quorum(&raft, id, Duration::from_secs(1)).await {
            snapshot = None;
            continue;
        }
        let now = Instant::now();
        let snap = match &mut snapshot {
            Some(snap) if now < snap.taken + 2 * SETTLE => snap,
            _ => {
                let placed = state
                    .read()
                    .expect("state lock poisoned")
                    .namespace
                    .shards_per_node();
                snapshot = Some(Snapshot {
                    taken: now,
                    placed,
                    judged: BTreeSet::new(),
                });
                continue;
            }
        };
        if now < snap.taken + SETTLE {
            continue;
        }
        let reported: BTreeMap<NodeId, u64> = {
            let l = liveness.lock().expect("liveness lock poisoned");
            snap.placed
                .keys()
                .filter(|n| !snap.judged.contains(n) && l.state(**n, now) == NodeState::Up)
                .filter_map(|&n| {
                    let (at, usage) = l.last_heartbeat(n)?;
                    (at >= snap.taken + SETTLE).then_some((n, usage.shard_count))
                })
                .collect()
        };
        snap.judged.extend(reported.keys());
        for (node, placed, reported) in short_nodes(&snap.placed, &reported) {
            if shutdown.is_cancelled() {
                return;
            }
            if checked
                .get(&node)
                .is_some_and(|at| now.duration_since(*at) < RECHECK_AFTER)
            {
                continue;
            }
            checked.insert(node, now);
            tracing::warn!(
                placed,
                reported,
                "node {node} reports {reported} shards but {placed} are placed on it: checking each of them"
            );
            match check_node(&raft, &state, &pool, node).await {
                Ok(lost) => tracing::warn!(
                    lost,
                    "node {node} checked: {lost} shards recorded lost, repair rebuilds them"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "node {node} could not be checked; trying again later")
                }
            }
        }
    }
}

/// Asks `node` for every shard placed on it and records those it lost. Returns how many.
async fn check_node(
    raft: &Raft,
    state: &SharedState,
    pool: &NodePool,
    node: NodeId,
) -> anyhow::Result<u64> {
    let (addr, shards) = {
        let s = state.read().expect("state lock poisoned");
        let addr = s
            .namespace
            .nodes()
            .get(&node)
            .map(|n| n.addr.clone())
            .ok_or_else(|| anyhow::anyhow!("node {node} is no longer registered"))?;
        (addr, s.namespace.shards_on_node(node))
    };
    let mut answers = futures::stream::iter(shards)
        .map(|(chunk, index, hash)| {
            let addr = addr.clone();
            async move {
                (
                    chunk,
                    index,
                    hash,
                    pool.stat_shard(&addr, chunk, index).await,
                )
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let (mut lost, mut unanswered) = (0u64, 0u64);
    while let Some((chunk, index, hash, answer)) = answers.next().await {
        let gone = match answer {
            Ok((_, blake3)) => blake3 != hash.0,
            Err(e) if e.is_lost() => true,
            Err(e) => {
                unanswered += 1;
                tracing::debug!(%chunk, index, error = %e, "shard not checked");
                false
            }
        };
        if gone {
            raft.client_write(Command::ShardLost { chunk, index, node })
                .await
                .map_err(|e| anyhow::anyhow!("record shard {index} of {chunk} lost: {e}"))?;
            lost += 1;
        }
    }
    anyhow::ensure!(
        unanswered == 0,
        "{unanswered} shards did not answer ({lost} recorded lost)"
    );
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clear_shortfall_is_checked() {
        let placed = BTreeMap::from([(1, 100), (2, 100), (3, 100), (4, 0), (5, 5000)]);
        let reported = BTreeMap::from([
            (1, 100), // complete
            (2, 150), // more: writes in progress, orphans, deletions not done yet
            (3, 98),  // two short: a quarantine not reported yet
            (4, 0),
            (5, 4000), // 1000 short of 5000
            (6, 7),    // nothing placed on it
        ]);
        assert_eq!(short_nodes(&placed, &reported), vec![(5, 5000, 4000)]);
        let reported = BTreeMap::from([(3, 97), (1, 0)]);
        assert_eq!(
            short_nodes(&placed, &reported),
            vec![(1, 100, 0), (3, 100, 97)]
        );
        // A node without a usable heartbeat is not judged.
        assert!(short_nodes(&placed, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn the_tolerance_grows_slowly_with_the_node() {
        assert_eq!(tolerance(0), 2);
        assert_eq!(tolerance(999), 2);
        assert_eq!(tolerance(1_000_000), 1002);
    }
}
