//! Prometheus gauges of a metadata replica, refreshed every second: Raft state, the
//! process's resident memory and its two databases' (state and log: block cache,
//! memtables, table readers) on every replica; cluster health (nodes by state, inodes,
//! chunks, degraded chunks, repair progress, garbage-collection backlog) on the leader,
//! which is the replica that knows it.
//! Request counters are incremented where requests are handled (`service.rs`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::gauge;
use tokio_util::sync::CancellationToken;

use crate::liveness::{Liveness, NodeState};
use crate::log_store::LogStore;
use crate::repair::RepairStats;
use crate::state_machine::SharedState;
use crate::types::Raft;

pub async fn run(
    id: u64,
    raft: Raft,
    state: SharedState,
    log: LogStore,
    liveness: Arc<Mutex<Liveness>>,
    repair: Arc<RepairStats>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let (leader, term, applied, last_log) = {
            let m = raft.metrics().borrow().clone();
            (
                m.current_leader == Some(id),
                m.current_term,
                m.last_applied.map(|l| l.index).unwrap_or(0),
                m.last_log_index.unwrap_or(0),
            )
        };
        gauge!("cairn_meta_is_leader").set(if leader { 1.0 } else { 0.0 });
        gauge!("cairn_meta_raft_term").set(term as f64);
        gauge!("cairn_meta_raft_last_applied_index").set(applied as f64);
        gauge!("cairn_meta_raft_last_log_index").set(last_log as f64);
        if let Some(rss) = crate::resident::resident_bytes() {
            gauge!("cairn_meta_resident_memory_bytes").set(rss as f64);
        }
        let databases = [
            (
                "cairn_meta_state_memory_bytes",
                crate::state_machine::live_db(&state).memory(),
            ),
            ("cairn_meta_log_memory_bytes", log.memory()),
        ];
        for (name, memory) in databases {
            for (kind, bytes) in [
                ("block_cache", memory.block_cache),
                ("memtables", memory.memtables),
                ("table_readers", memory.table_readers),
            ] {
                if let Some(bytes) = bytes {
                    gauge!(name, "kind" => kind).set(bytes as f64);
                }
            }
        }
        if !leader {
            continue;
        }
        let (counts, nodes) = {
            let s = state.read().expect("state lock poisoned");
            (s.namespace.counts(), s.namespace.nodes().clone())
        };
        let (mut up, mut down, mut out) = (0, 0, 0);
        let (mut capacity, mut used) = (0u64, 0u64);
        {
            let l = liveness.lock().expect("liveness lock poisoned");
            let now = Instant::now();
            for node in nodes.keys() {
                match l.state(*node, now) {
                    NodeState::Up => up += 1,
                    NodeState::Down => down += 1,
                    NodeState::Out => out += 1,
                }
                if let Some(u) = l.usage(*node) {
                    capacity += u.capacity_bytes;
                    used += u.used_bytes;
                }
            }
        }
        gauge!("cairn_cluster_nodes", "state" => "up").set(up as f64);
        gauge!("cairn_cluster_nodes", "state" => "down").set(down as f64);
        gauge!("cairn_cluster_nodes", "state" => "out").set(out as f64);
        gauge!("cairn_cluster_capacity_bytes").set(capacity as f64);
        gauge!("cairn_cluster_used_bytes").set(used as f64);
        gauge!("cairn_cluster_buckets").set(counts.buckets as f64);
        gauge!("cairn_cluster_objects").set(counts.objects as f64);
        gauge!("cairn_cluster_inodes").set(counts.inodes as f64);
        gauge!("cairn_cluster_chunks").set(counts.chunks as f64);
        gauge!("cairn_cluster_inline_bytes").set(counts.inline_bytes as f64);
        gauge!("cairn_cluster_degraded_chunks").set(counts.degraded_chunks as f64);
        gauge!("cairn_cluster_gc_pending_shards").set(counts.pending_gc as f64);
        gauge!("cairn_repair_queue_chunks").set(repair.queue.load(Ordering::Relaxed) as f64);
        gauge!("cairn_repair_rebuilt_chunks")
            .set(repair.repaired_chunks.load(Ordering::Relaxed) as f64);
        gauge!("cairn_repair_rebuilt_bytes")
            .set(repair.repaired_bytes.load(Ordering::Relaxed) as f64);
    }
}
