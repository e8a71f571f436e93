//! Automatic repair, run by the leader: chunks that lost shards (missing, corrupt) or keep
//! them on nodes that are `out` get the missing shards rebuilt from k verified survivors
//! (read from as many nodes), written to new nodes chosen by placement, and the new
//! placement committed through Raft. Chunks closest to loss go first; the bytes written
//! are throttled so client traffic keeps priority. Shards on nodes that are merely `down`
//! are left alone: the node may come back with them (no rebuild after a short reboot).
//!
//! The queue is the replicated state itself (every degraded chunk is recorded there), so
//! repair resumes after a restart or a leader change without a queue of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::failpoint;
use cairn_common::placement::place;
use cairn_common::{ChunkId, NodeId};
use cairn_shard_io::{NodePool, ShardSource};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::leadership::leads_with_quorum;
use crate::liveness::{placement_candidates, Liveness, NodeState};
use crate::namespace::Command;
use crate::namespace::{ChunkMeta, NodeRecord};
use crate::state_machine::SharedState;
use crate::types::Raft;

/// Chunks taken per pass.
const BATCH: usize = 64;

#[derive(Clone, Debug)]
pub struct RepairConfig {
    pub interval: Duration,
    pub bytes_per_sec: u64,
    /// Shared with garbage collection: held while shards are written and committed.
    pub placement_lock: Arc<tokio::sync::Mutex<()>>,
    /// This replica's identity towards the storage nodes.
    pub transport: cairn_net::Transport,
}

/// Progress counters, shown by `cairn status`.
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Chunks needing repair at the last pass.
    pub queue: AtomicU64,
    pub repaired_chunks: AtomicU64,
    pub repaired_bytes: AtomicU64,
    /// Shards moved by rebalancing.
    pub moved_shards: AtomicU64,
    /// The bandwidth limit in force.
    pub bytes_per_sec: AtomicU64,
    /// Bytes written per second by the last pass that wrote anything.
    pub rate_bytes_per_sec: AtomicU64,
    /// Average bytes rebuilt per repaired chunk (for the estimate).
    pub bytes_per_chunk: AtomicU64,
}

impl RepairStats {
    /// Seconds until the queue is empty at the last pass's rate; 0 when unknown.
    pub fn eta_secs(&self) -> u64 {
        let (queue, rate, per_chunk) = (
            self.queue.load(Ordering::Relaxed),
            self.rate_bytes_per_sec.load(Ordering::Relaxed),
            self.bytes_per_chunk.load(Ordering::Relaxed),
        );
        if queue == 0 || rate == 0 {
            return 0;
        }
        (queue * per_chunk).div_ceil(rate)
    }
}

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

struct Pass<'a> {
    raft: &'a Raft,
    pool: &'a NodePool,
    nodes: &'a BTreeMap<NodeId, NodeRecord>,
    states: &'a BTreeMap<NodeId, (NodeState, u64)>,
    stats: &'a RepairStats,
    /// Held while shards are written and their placement committed, so garbage
    /// collection never deletes a shard between its write and its commit.
    placement_lock: &'a tokio::sync::Mutex<()>,
}

pub async fn run(
    id: u64,
    raft: Raft,
    state: SharedState,
    liveness: Arc<Mutex<Liveness>>,
    stats: Arc<RepairStats>,
    config: RepairConfig,
    shutdown: CancellationToken,
) {
    let pool = NodePool::new(config.transport.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        // Only a leader a majority acknowledges repairs and moves shards (`leadership.rs`).
        if !leads_with_quorum(&raft, id, Duration::from_secs(1)).await {
            continue;
        }
        let (nodes, bytes_per_sec) = {
            let s = state.read().expect("state lock poisoned");
            let throttle = s.namespace.settings().repair_bytes_per_sec;
            (
                s.namespace.nodes().clone(),
                throttle.unwrap_or(config.bytes_per_sec).max(1),
            )
        };
        stats.bytes_per_sec.store(bytes_per_sec, Ordering::Relaxed);
        let now = Instant::now();
        let states: BTreeMap<NodeId, (NodeState, u64)> = {
            let l = liveness.lock().expect("liveness lock poisoned");
            nodes
                .keys()
                .map(|&n| (n, (l.state(n, now), l.free_bytes(n))))
                .collect()
        };
        // Shards to move off: those on out nodes and on draining ones.
        let out: BTreeSet<NodeId> = states
            .iter()
            .filter(|(n, (s, _))| *s == NodeState::Out || nodes[n].draining)
            .map(|(n, _)| *n)
            .collect();
        let (todo, queue) = {
            let s = state.read().expect("state lock poisoned");
            let all = s.namespace.chunks_needing_repair(&out, usize::MAX);
            let queue = all.len();
            // Only chunks that can be rebuilt now: those beyond repair (too few shards
            // up) must not fill every batch and starve the rest.
            let state_of = |n: NodeId| states.get(&n).map_or(NodeState::Out, |(s, _)| *s);
            let draining = |n: NodeId| nodes.get(&n).is_some_and(|r| r.draining);
            let feasible = all
                .into_iter()
                .filter(|(_, meta)| plan(meta, state_of, draining).is_ok())
                .take(BATCH)
                .collect::<Vec<_>>();
            (feasible, queue)
        };
        stats.queue.store(queue as u64, Ordering::Relaxed);
        let pass = Pass {
            raft: &raft,
            pool: &pool,
            nodes: &nodes,
            states: &states,
            stats: &stats,
            placement_lock: &config.placement_lock,
        };
        let started = Instant::now();
        let mut written = 0u64;
        // With nothing to repair, even out the shards per node (after nodes were added).
        let moves = if queue == 0 {
            let s = state.read().expect("state lock poisoned");
            let placed = s.namespace.shards_per_node();
            let eligible: BTreeMap<NodeId, (u64, u32)> = states
                .iter()
                .filter(|(n, (st, _))| *st == NodeState::Up && !nodes[n].draining)
                .map(|(n, _)| {
                    (
                        *n,
                        (placed.get(n).copied().unwrap_or(0), nodes[n].weight_pct),
                    )
                })
                .collect();
            // Each chunk moves at most once per pass: the snapshot taken here would be
            // stale for a second move of the same chunk.
            let mut taken = BTreeSet::new();
            crate::rebalance::plan_moves(&eligible, BATCH)
                .into_iter()
                .filter_map(|(from, to)| {
                    let pick = s
                        .namespace
                        .chunks_on_node(from, 4 * BATCH)
                        .into_iter()
                        .find(|(id, c)| {
                            !taken.contains(id) && !c.shards.values().any(|n| *n == to)
                        })?;
                    taken.insert(pick.0);
                    Some((pick.0, pick.1, from, to))
                })
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        };
        for (chunk, meta, from, to) in moves {
            if shutdown.is_cancelled() || raft.metrics().borrow().current_leader != Some(id) {
                break;
            }
            match pass.move_shard(chunk, &meta, from, to).await {
                Ok(bytes) => written += bytes,
                Err(e) => tracing::debug!(%chunk, from, to, error = %e, "shard not moved"),
            }
            if !pace(started, written, bytes_per_sec, &shutdown).await {
                return;
            }
        }
        for (chunk, meta) in todo {
            if shutdown.is_cancelled() || raft.metrics().borrow().current_leader != Some(id) {
                break;
            }
            match pass.repair(chunk, &meta).await {
                Ok(bytes) => written += bytes,
                Err(e) => tracing::debug!(%chunk, error = %e, "chunk not repaired this pass"),
            }
            if !pace(started, written, bytes_per_sec, &shutdown).await {
                return;
            }
        }
        if written > 0 {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            stats
                .rate_bytes_per_sec
                .store((written as f64 / secs) as u64, Ordering::Relaxed);
        }
    }
}

/// Throttle: sleeps until `written` bytes since `started` are within `bytes_per_sec`.
/// False when shutdown came first.
async fn pace(
    started: Instant,
    written: u64,
    bytes_per_sec: u64,
    shutdown: &CancellationToken,
) -> bool {
    let due = Duration::from_secs_f64(written as f64 / bytes_per_sec as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    true
}

impl Pass<'_> {
    /// Copies one shard of `chunk` from node `from` to node `to` (no decoding: the shard
    /// is verified and copied as is) and commits the move.
    async fn move_shard(
        &self,
        chunk: ChunkId,
        meta: &ChunkMeta,
        from: NodeId,
        to: NodeId,
    ) -> anyhow::Result<u64> {
        let index = *meta
            .shards
            .iter()
            .find(|(_, n)| **n == from)
            .ok_or_else(|| anyhow::anyhow!("chunk {chunk} has no shard on node {from}"))?
            .0;
        let dst = &self.nodes[&to].addr;
        let hash = meta.shard_hashes[index as usize].0;
        let source = self.source(index, from)?;
        let bytes = match self.pool.read_verified_shard(chunk, meta, &source).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_lost() => {
                let lost = Command::ShardLost {
                    chunk,
                    index,
                    node: from,
                };
                let _ = self.raft.client_write(lost).await;
                anyhow::bail!("shard {index} on node {from} is lost: {e}");
            }
            Err(e) => anyhow::bail!(e),
        };
        let len = bytes.len() as u64;
        let _placing = self.placement_lock.lock().await;
        self.pool
            .put_shard(dst, chunk, index, bytes.into(), hash)
            .await?;
        failpoint::hit(failpoint::REBALANCE_BEFORE_COMMIT)?;
        self.raft
            .client_write(Command::RepairChunk {
                chunk,
                placed: vec![(index, to)],
                dropped: vec![(index, from)],
            })
            .await?;
        self.stats.moved_shards.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%chunk, index, from, to, "moved shard");
        Ok(len)
    }

    /// Where shard `index` on `node` can be read.
    fn source(&self, index: u32, node: NodeId) -> anyhow::Result<ShardSource> {
        let addr = &self
            .nodes
            .get(&node)
            .ok_or_else(|| anyhow::anyhow!("node {node} unknown"))?
            .addr;
        Ok(ShardSource {
            index,
            node,
            addr: addr.clone(),
        })
    }

    fn state(&self, node: NodeId) -> NodeState {
        self.states
            .get(&node)
            .map(|(s, _)| *s)
            .unwrap_or(NodeState::Out)
    }

    /// Rebuilds what `meta` misses; returns the bytes written.
    async fn repair(&self, chunk: ChunkId, meta: &ChunkMeta) -> anyhow::Result<u64> {
        let plan = plan(
            meta,
            |n| self.state(n),
            |n| self.nodes.get(&n).is_some_and(|r| r.draining),
        )?;
        let shard_len = meta.shard_len();

        // Read k verified shards (see `cairn_shard_io::reader`), each from its own node,
        // and rebuild the others. Shards found missing or corrupt are recorded lost.
        let sources = plan
            .sources
            .iter()
            .filter_map(|&(index, node)| self.source(index, node).ok())
            .collect();
        let (shards, lost) = self.pool.read_all_shards(chunk, meta, sources).await;
        for (index, node) in lost {
            tracing::warn!(%chunk, index, node, "repair source lost");
            let lost = Command::ShardLost { chunk, index, node };
            let _ = self.raft.client_write(lost).await;
        }
        let shards = shards?;

        // New homes: up nodes holding nothing of this chunk, spread as placement decides.
        let candidates = placement_candidates(
            self.nodes,
            |n| self.states.get(&n).copied().unwrap_or((NodeState::Out, 0)),
            |n| plan.holders.contains(&n),
        );
        let targets = place(&chunk, &candidates, plan.missing.len());
        let _placing = self.placement_lock.lock().await;
        let writes = plan.missing.iter().zip(targets).map(|(&index, node)| {
            let data = shards[index as usize].clone().into();
            let hash = meta.shard_hashes[index as usize].0;
            let addr = self.nodes[&node].addr.clone();
            async move {
                let r = self.pool.put_shard(&addr, chunk, index, data, hash).await;
                (index, node, r)
            }
        });
        let mut placed = Vec::new();
        for (index, node, result) in join_all(writes).await {
            match result {
                Ok(()) => placed.push((index, node)),
                Err(e) => tracing::debug!(%chunk, index, node, error = %e, "repair write failed"),
            }
        }
        anyhow::ensure!(!placed.is_empty(), "no new shard could be written");
        let rebuilt: BTreeSet<u32> = placed.iter().map(|(i, _)| *i).collect();
        let dropped = plan
            .on_out_nodes
            .into_iter()
            .filter(|(i, _)| rebuilt.contains(i))
            .collect();
        let bytes = (placed.len() * shard_len) as u64;
        failpoint::hit(failpoint::REPAIR_BEFORE_COMMIT)?;
        self.raft
            .client_write(Command::RepairChunk {
                chunk,
                placed: placed.clone(),
                dropped,
            })
            .await?;
        let chunks = self.stats.repaired_chunks.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self
            .stats
            .repaired_bytes
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes;
        self.stats
            .bytes_per_chunk
            .store(total / chunks, Ordering::Relaxed);
        tracing::info!(%chunk, shards = placed.len(), "repaired chunk");
        Ok(bytes)
    }
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
