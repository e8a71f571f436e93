//! Automatic repair, planned by the leader and executed by the storage nodes: chunks that
//! lost shards (missing, corrupt) or keep them on nodes that are `out` or draining get
//! each missing shard rebuilt by a new node chosen by placement, which reads k verified
//! survivors from its peers (`RebuildShard`; a shard on a draining node is copied), and
//! the new placements are committed through Raft in batches. The leader sends and
//! receives descriptions only, never shard bytes. Chunks closest to loss go first; many
//! are in flight, within a budget per target and per source node; the nodes themselves
//! run fewer rebuilds while clients use them (`cairn-node`'s `background.rs`), and an
//! optional cluster-wide throttle caps the bytes written. Shards on nodes that are merely
//! `down` are left alone: the node may come back with them (no rebuild after a short
//! reboot). Rebalancing moves use the same orders (a copy from the fuller node).
//!
//! The queue is the replicated state itself (every degraded chunk is recorded there), so
//! repair resumes after a restart or a leader change without a queue of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::failpoint;
use cairn_common::placement::place;
use cairn_common::{ChunkId, NodeId};
use cairn_shard_io::{NodePool, RebuildOrder, RebuildOutcome, ShardSource};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::leadership::leads_with_quorum;
use crate::liveness::{placement_candidates, Liveness, NodeState};
use crate::namespace::{Batch, Command};
use crate::namespace::{ChunkMeta, NodeRecord};
use crate::state_machine::SharedState;
use crate::types::Raft;

mod limit;
mod plan;

use limit::PassCounts;
pub use limit::RepairLimit;
pub use plan::{plan, PlanError, RepairPlan};

/// Chunks taken per pass.
const BATCH: usize = 256;

#[derive(Clone, Debug)]
pub struct RepairConfig {
    pub interval: Duration,
    /// Cluster-wide cap on the bytes repair writes per second, unless the replicated
    /// setting replaces it; 0: none.
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
    /// The bandwidth limit in force (0: none).
    pub bytes_per_sec: AtomicU64,
    /// Bytes written per second by the last pass that wrote anything.
    pub rate_bytes_per_sec: AtomicU64,
    /// Average bytes rebuilt per repaired chunk (for the estimate).
    pub bytes_per_chunk: AtomicU64,
    /// What limited the last pass ([`RepairLimit`] as a number).
    pub limit: AtomicU8,
}

impl RepairStats {
    /// What limited the last pass.
    pub fn limit(&self) -> RepairLimit {
        RepairLimit::from_u8(self.limit.load(Ordering::Relaxed))
    }

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

/// Rebuild orders in flight at once, across the cluster.
const IN_FLIGHT: usize = 32;
/// Orders in flight per target node: a node runs four at once while idle
/// (`cairn-node`'s background slots); two more queued keep it busy between replies.
const PER_TARGET: usize = 6;
/// Orders in flight that read from one node.
const PER_SOURCE: usize = 12;
/// New placements committed per Raft entry.
const COMMIT_BATCH: usize = 64;

/// Why a job exists: its failpoint and its counter differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    /// Rebuild missing shards (lost, on out nodes, on draining nodes).
    Repair,
    /// Move one shard to an emptier node (rebalance): a copy, no decoding.
    Move,
}

/// The work for one chunk: rebuild orders, each to the node that will keep the shard.
#[derive(Clone, Debug)]
struct Job {
    kind: JobKind,
    chunk: ChunkId,
    /// (target node, its address, the order).
    orders: Vec<(NodeId, String, RebuildOrder)>,
    /// Placements to retire once their index is placed anew.
    retire: Vec<(u32, NodeId)>,
}

impl Job {
    /// The nodes each order reads from: the copy source, or the first k of the others.
    fn reads(&self) -> Vec<NodeId> {
        let mut nodes = Vec::new();
        for (_, _, order) in &self.orders {
            let k = order.meta.redundancy.data_shards();
            match order.sources.iter().find(|s| s.index == order.index) {
                Some(copy) => nodes.push(copy.node),
                None => nodes.extend(order.sources.iter().take(k).map(|s| s.node)),
            }
        }
        nodes
    }

    fn targets(&self) -> Vec<NodeId> {
        self.orders.iter().map(|(node, _, _)| *node).collect()
    }

    /// Bytes the job writes when every order succeeds.
    fn bytes(&self) -> u64 {
        self.orders
            .iter()
            .map(|(_, _, o)| o.meta.shard_len() as u64)
            .sum()
    }
}

/// Orders in flight per node, as targets and as sources: a pure count, so that no node
/// gets more than its share while the others idle.
#[derive(Debug, Default)]
struct Budget {
    targets: BTreeMap<NodeId, usize>,
    sources: BTreeMap<NodeId, usize>,
}

impl Budget {
    fn fits(&self, job: &Job) -> bool {
        let over = |counts: &BTreeMap<NodeId, usize>, nodes: Vec<NodeId>, limit: usize| {
            let mut extra: BTreeMap<NodeId, usize> = BTreeMap::new();
            for n in nodes {
                *extra.entry(n).or_default() += 1;
            }
            extra
                .iter()
                .any(|(n, e)| counts.get(n).copied().unwrap_or(0) + e > limit)
        };
        !over(&self.targets, job.targets(), PER_TARGET)
            && !over(&self.sources, job.reads(), PER_SOURCE)
    }

    fn take(&mut self, job: &Job) {
        for n in job.targets() {
            *self.targets.entry(n).or_default() += 1;
        }
        for n in job.reads() {
            *self.sources.entry(n).or_default() += 1;
        }
    }

    fn release(&mut self, job: &Job) {
        let release = |counts: &mut BTreeMap<NodeId, usize>, n: NodeId| {
            if let Some(c) = counts.get_mut(&n) {
                *c -= 1;
                if *c == 0 {
                    counts.remove(&n);
                }
            }
        };
        for n in job.targets() {
            release(&mut self.targets, n);
        }
        for n in job.reads() {
            release(&mut self.sources, n);
        }
    }
}

/// What the nodes did for one job.
struct Done {
    job: Job,
    /// Orders the nodes ran in their busy-time slot.
    yielded: u64,
    /// New placements (index, node), durable on their nodes.
    placed: Vec<(u32, NodeId)>,
    /// Sources found missing or corrupt.
    lost: Vec<(u32, NodeId)>,
    bytes: u64,
}

struct Pass<'a> {
    id: u64,
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
    // After a pass that placed shards the next one starts at once.
    let mut progressed = false;
    loop {
        if !progressed {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(config.interval) => {}
            }
        }
        progressed = false;
        // Only a leader a majority acknowledges repairs and moves shards (`leadership.rs`).
        if !leads_with_quorum(&raft, id, Duration::from_secs(1)).await {
            continue;
        }
        let (nodes, throttle) = {
            let s = state.read().expect("state lock poisoned");
            let throttle = s.namespace.settings().repair_bytes_per_sec;
            (
                s.namespace.nodes().clone(),
                throttle.unwrap_or(config.bytes_per_sec),
            )
        };
        stats.bytes_per_sec.store(throttle, Ordering::Relaxed);
        let now = Instant::now();
        let states: BTreeMap<NodeId, (NodeState, u64)> = {
            let l = liveness.lock().expect("liveness lock poisoned");
            nodes
                .keys()
                .map(|&n| (n, (l.state(n, now), l.free_bytes(n))))
                .collect()
        };
        let pass = Pass {
            id,
            raft: &raft,
            pool: &pool,
            nodes: &nodes,
            states: &states,
            stats: &stats,
            placement_lock: &config.placement_lock,
        };
        // Shards to move off: those on out nodes and on draining ones.
        let out: BTreeSet<NodeId> = states
            .iter()
            .filter(|(n, (s, _))| *s == NodeState::Out || nodes[n].draining)
            .map(|(n, _)| *n)
            .collect();
        let (jobs, queue) = {
            let s = state.read().expect("state lock poisoned");
            let all = s.namespace.chunks_needing_repair(&out, usize::MAX);
            let queue = all.len();
            // Only chunks that can be rebuilt now: those beyond repair (too few shards
            // up) must not fill every batch and starve the rest.
            let jobs = all
                .into_iter()
                .filter_map(|(chunk, meta)| pass.repair_job(chunk, &meta))
                .take(BATCH)
                .collect::<Vec<_>>();
            (jobs, queue)
        };
        stats.queue.store(queue as u64, Ordering::Relaxed);
        // With nothing to repair, even out the shards per node (after nodes were added).
        let jobs = if queue == 0 {
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
                    let (chunk, meta) = s
                        .namespace
                        .chunks_on_node(from, 4 * BATCH)
                        .into_iter()
                        .find(|(id, c)| {
                            !taken.contains(id) && !c.shards.values().any(|n| *n == to)
                        })?;
                    taken.insert(chunk);
                    pass.move_job(chunk, &meta, from, to)
                })
                .collect::<Vec<_>>()
        } else {
            jobs
        };
        if jobs.is_empty() {
            stats
                .limit
                .store(RepairLimit::Idle as u8, Ordering::Relaxed);
            continue;
        }
        let started = Instant::now();
        let written = pass
            .execute(jobs, (throttle > 0).then_some(throttle), &shutdown)
            .await;
        if written > 0 {
            progressed = true;
            let secs = started.elapsed().as_secs_f64().max(0.001);
            stats
                .rate_bytes_per_sec
                .store((written as f64 / secs) as u64, Ordering::Relaxed);
        }
    }
}

impl Pass<'_> {
    /// Where shard `index` on `node` can be read.
    fn source(&self, index: u32, node: NodeId) -> Option<ShardSource> {
        let addr = &self.nodes.get(&node)?.addr;
        Some(ShardSource {
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

    /// The orders that rebuild what `meta` misses, each on a new node chosen by
    /// placement (up, holding nothing of the chunk); none when it cannot be repaired now.
    fn repair_job(&self, chunk: ChunkId, meta: &ChunkMeta) -> Option<Job> {
        let plan = plan(
            meta,
            |n| self.state(n),
            |n| self.nodes.get(&n).is_some_and(|r| r.draining),
        )
        .ok()?;
        let sources: Vec<ShardSource> = plan
            .sources
            .iter()
            .filter_map(|&(index, node)| self.source(index, node))
            .collect();
        let candidates = placement_candidates(
            self.nodes,
            |n| self.states.get(&n).copied().unwrap_or((NodeState::Out, 0)),
            |n| plan.holders.contains(&n),
        );
        let targets = place(&chunk, &candidates, plan.missing.len());
        let orders: Vec<_> = plan
            .missing
            .iter()
            .zip(targets)
            .map(|(&index, node)| {
                let order = RebuildOrder {
                    chunk,
                    index,
                    meta: meta.clone(),
                    // A source with this very index (on a draining node) is copied.
                    sources: sources.clone(),
                };
                (node, self.nodes[&node].addr.clone(), order)
            })
            .collect();
        (!orders.is_empty()).then_some(Job {
            kind: JobKind::Repair,
            chunk,
            orders,
            retire: plan.on_out_nodes,
        })
    }

    /// One order that copies `chunk`'s shard on `from` to `to` (no decoding).
    fn move_job(&self, chunk: ChunkId, meta: &ChunkMeta, from: NodeId, to: NodeId) -> Option<Job> {
        let index = *meta.shards.iter().find(|(_, n)| **n == from)?.0;
        let order = RebuildOrder {
            chunk,
            index,
            meta: meta.clone(),
            sources: vec![self.source(index, from)?],
        };
        Some(Job {
            kind: JobKind::Move,
            chunk,
            orders: vec![(to, self.nodes.get(&to)?.addr.clone(), order)],
            retire: vec![(index, from)],
        })
    }

    /// Sends the jobs' orders to their nodes, at most [`IN_FLIGHT`] at once and within
    /// each node's [`Budget`], in the jobs' order (closest to loss first), paced to
    /// `throttle` bytes per second when set; commits the new placements in batches as
    /// the nodes report them. Returns the bytes written.
    async fn execute(
        &self,
        jobs: Vec<Job>,
        throttle: Option<u64>,
        shutdown: &CancellationToken,
    ) -> u64 {
        let _placing = self.placement_lock.lock().await;
        let started = Instant::now();
        let mut counts = PassCounts::default();
        let mut budget = Budget::default();
        let mut running = FuturesUnordered::new();
        let mut commits = Vec::new();
        let mut committed = Vec::new();
        let (mut launched, mut written) = (0u64, 0u64);
        let mut jobs = jobs.into_iter();
        let mut next = jobs.next();
        loop {
            let mut wait_until = None;
            while let Some(job) = next.as_ref() {
                if shutdown.is_cancelled()
                    || self.raft.metrics().borrow().current_leader != Some(self.id)
                {
                    next = None;
                    break;
                }
                if !running.is_empty() && (running.len() >= IN_FLIGHT || !budget.fits(job)) {
                    counts.held_back += 1;
                    break;
                }
                if let Some(rate) = throttle {
                    let due = started + Duration::from_secs_f64(launched as f64 / rate as f64);
                    if due > Instant::now() {
                        wait_until = Some(due);
                        break;
                    }
                }
                let job = next.take().expect("checked above");
                next = jobs.next();
                budget.take(&job);
                launched += job.bytes();
                counts.orders += job.orders.len() as u64;
                running.push(self.order(job));
            }
            if next.is_none() && running.is_empty() {
                break;
            }
            let sleep = tokio::time::sleep_until(
                wait_until
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
                    .into(),
            );
            let waiting = Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => return written,
                done = running.next(), if !running.is_empty() => {
                    let done: Done = done.expect("not empty");
                    budget.release(&done.job);
                    counts.yielded += done.yielded;
                    written += done.bytes;
                    if let Err(e) = self.queue_commit(done, &mut commits, &mut committed) {
                        tracing::warn!(error = %e, "repair stopped at a failpoint");
                        return written;
                    }
                    if committed.len() >= COMMIT_BATCH {
                        self.commit(&mut commits, &mut committed).await;
                    }
                }
                _ = sleep, if wait_until.is_some() => {}
            }
            if wait_until.is_some() {
                counts.throttled += waiting.elapsed();
            }
        }
        self.commit(&mut commits, &mut committed).await;
        counts.elapsed = started.elapsed();
        self.stats
            .limit
            .store(RepairLimit::of(&counts) as u8, Ordering::Relaxed);
        written
    }

    /// Sends a job's orders to their nodes at once and collects what they did.
    async fn order(&self, job: Job) -> Done {
        let replies = join_all(job.orders.iter().map(|(node, addr, order)| async move {
            (
                *node,
                order.index,
                self.pool.rebuild_shard(addr, order).await,
            )
        }))
        .await;
        let (mut placed, mut lost, mut bytes, mut yielded) = (Vec::new(), Vec::new(), 0, 0);
        for (node, index, reply) in replies {
            match reply {
                Ok(report) => {
                    lost.extend(report.lost);
                    yielded += u64::from(report.yielded);
                    match report.outcome {
                        RebuildOutcome::Rebuilt { bytes: b } => {
                            placed.push((index, node));
                            bytes += b;
                        }
                        RebuildOutcome::Unavailable { reason } => {
                            tracing::debug!(chunk = %job.chunk, index, node, reason, "shard not rebuilt")
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(chunk = %job.chunk, index, node, error = %e, "rebuild order failed")
                }
            }
        }
        lost.sort_unstable();
        lost.dedup();
        Done {
            job,
            yielded,
            placed,
            lost,
            bytes,
        }
    }

    /// Queues the commands that record what a job did: the sources found lost, and the
    /// new placements with the placements they retire. `committed` keeps the jobs
    /// whose placements are queued, for the counters.
    fn queue_commit(
        &self,
        done: Done,
        commits: &mut Vec<Command>,
        committed: &mut Vec<(JobKind, usize, u64)>,
    ) -> std::io::Result<()> {
        let chunk = done.job.chunk;
        for &(index, node) in &done.lost {
            tracing::warn!(%chunk, index, node, "rebuild source lost");
            commits.push(Command::ShardLost { chunk, index, node });
        }
        if done.placed.is_empty() {
            return Ok(());
        }
        failpoint::hit(match done.job.kind {
            JobKind::Repair => failpoint::REPAIR_BEFORE_COMMIT,
            JobKind::Move => failpoint::REBALANCE_BEFORE_COMMIT,
        })?;
        let rebuilt: BTreeSet<u32> = done.placed.iter().map(|(i, _)| *i).collect();
        let dropped = done
            .job
            .retire
            .into_iter()
            .filter(|(i, _)| rebuilt.contains(i))
            .collect();
        committed.push((done.job.kind, done.placed.len(), done.bytes));
        commits.push(Command::RepairChunk {
            chunk,
            placed: done.placed,
            dropped,
        });
        Ok(())
    }

    /// Commits the queued commands in one Raft entry and counts what they did.
    async fn commit(&self, commits: &mut Vec<Command>, committed: &mut Vec<(JobKind, usize, u64)>) {
        if commits.is_empty() {
            return;
        }
        let batch = Command::Batch(Batch(std::mem::take(commits)));
        let jobs = std::mem::take(committed);
        if let Err(e) = self.raft.client_write(batch).await {
            tracing::warn!(error = %e, "repair results not committed; the next pass redoes them");
            return;
        }
        for (kind, shards, bytes) in jobs {
            match kind {
                JobKind::Repair => {
                    let chunks = self.stats.repaired_chunks.fetch_add(1, Ordering::Relaxed) + 1;
                    let total = self
                        .stats
                        .repaired_bytes
                        .fetch_add(bytes, Ordering::Relaxed)
                        + bytes;
                    self.stats
                        .bytes_per_chunk
                        .store(total / chunks, Ordering::Relaxed);
                }
                JobKind::Move => {
                    self.stats
                        .moved_shards
                        .fetch_add(shards as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Hash32;
    use cairn_common::Redundancy;

    fn source(index: u32, node: NodeId) -> ShardSource {
        ShardSource {
            index,
            node,
            addr: format!("127.0.0.{node}:1"),
        }
    }

    fn job(index: u32, target: NodeId, sources: Vec<ShardSource>) -> Job {
        let chunk = ChunkId::random();
        Job {
            kind: JobKind::Repair,
            chunk,
            orders: vec![(
                target,
                format!("127.0.0.{target}:1"),
                RebuildOrder {
                    chunk,
                    index,
                    meta: ChunkMeta {
                        size: 100,
                        redundancy: Redundancy::Ec { k: 2, m: 2 },
                        shard_hashes: vec![Hash32([0; 32]); 4],
                        shards: Default::default(),
                    },
                    sources,
                },
            )],
            retire: Vec::new(),
        }
    }

    #[test]
    fn a_rebuild_reads_k_sources_and_a_copy_one() {
        let rebuild = job(3, 9, vec![source(0, 1), source(1, 2), source(2, 3)]);
        assert_eq!(rebuild.reads(), vec![1, 2], "k = 2 sources, in order");
        assert_eq!(rebuild.targets(), vec![9]);
        let copy = job(1, 9, vec![source(0, 1), source(1, 2), source(2, 3)]);
        assert_eq!(
            copy.reads(),
            vec![2],
            "the source with the same index is copied"
        );
    }

    #[test]
    fn budgets_cap_orders_per_target_and_per_source() {
        let mut budget = Budget::default();
        let to_nine = job(3, 9, vec![source(0, 1), source(1, 2)]);
        for _ in 0..PER_TARGET {
            assert!(budget.fits(&to_nine));
            budget.take(&to_nine);
        }
        assert!(!budget.fits(&to_nine), "node 9 has its share of orders");
        let to_eight = job(3, 8, vec![source(0, 1), source(1, 2)]);
        for _ in PER_TARGET..PER_SOURCE {
            assert!(budget.fits(&to_eight));
            budget.take(&to_eight);
        }
        let elsewhere = job(3, 7, vec![source(0, 1), source(1, 4)]);
        assert!(!budget.fits(&elsewhere), "node 1 serves its share of reads");
        let other_sources = job(3, 7, vec![source(0, 5), source(1, 4)]);
        assert!(budget.fits(&other_sources));
        budget.release(&to_eight);
        assert!(budget.fits(&elsewhere), "a finished order frees its nodes");
        for _ in 0..PER_TARGET {
            budget.release(&to_nine);
        }
        for _ in PER_TARGET + 1..PER_SOURCE {
            budget.release(&to_eight);
        }
        assert!(budget.targets.is_empty() && budget.sources.is_empty());
    }
}
