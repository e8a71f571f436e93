//! Garbage collection of shards no object references any more (deleted or overwritten
//! objects). Runs on the leader only: takes a batch from the replicated GC queue, deletes
//! the shards from their nodes, then commits which entries are done. A node that is down
//! keeps its entries queued until it is back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::common::ShardId;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::DeleteShardRequest;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::leadership::leads_with_quorum;
use crate::liveness::{Liveness, NodeState};
use crate::namespace::Command;
use crate::network::lazy_channel;
use crate::state_machine::SharedState;
use crate::types::Raft;

const BATCH: usize = 512;
const PERIOD: Duration = Duration::from_secs(1);
/// Shard deletions in flight at once (over all nodes).
const PARALLEL_DELETES: usize = 32;

pub async fn run(
    id: u64,
    raft: Raft,
    state: SharedState,
    liveness: Arc<Mutex<Liveness>>,
    placement_lock: Arc<tokio::sync::Mutex<()>>,
    transport: cairn_net::Transport,
    shutdown: CancellationToken,
) {
    let mut clients: BTreeMap<String, NodeServiceClient<tonic::transport::Channel>> =
        BTreeMap::new();
    // A full batch means more is waiting: the next one starts without the pause.
    let mut backlog = false;
    loop {
        let pause = if backlog { Duration::ZERO } else { PERIOD };
        backlog = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        // A leader cut off from the other replicas must not delete from its queue
        // (`leadership.rs`); nodes also refuse deletions of an older term than they saw.
        if !leads_with_quorum(&raft, id, PERIOD).await {
            continue;
        }
        let term = raft.metrics().borrow().current_term;
        let up: std::collections::BTreeSet<u64> = {
            let l = liveness.lock().expect("liveness lock poisoned");
            let s = state.read().expect("state lock poisoned");
            let now = Instant::now();
            s.namespace
                .nodes()
                .keys()
                .filter(|n| l.state(**n, now) == NodeState::Up)
                .copied()
                .collect()
        };
        let (entries, nodes) = {
            let s = state.read().expect("state lock poisoned");
            let ready = |n: u64| up.contains(&n) || !s.namespace.nodes().contains_key(&n);
            (
                s.namespace.gc_entries(BATCH, ready),
                s.namespace.nodes().clone(),
            )
        };
        if entries.is_empty() {
            continue;
        }
        let full_batch = entries.len() == BATCH;
        let mut done = Vec::new();
        // Deletions and placements on one node never interleave: a shard placed back on
        // a node after its deletion was queued is live again and must stay. So the batch
        // is checked and deleted under the placement lock, its deletes in parallel.
        let _placing = placement_lock.lock().await;
        let mut deletes = Vec::new();
        for (seq, entry) in entries {
            let Some(node) = nodes.get(&entry.node) else {
                // The node was removed from the cluster: nothing left to delete.
                done.push(seq);
                continue;
            };
            let live = state
                .read()
                .expect("state lock poisoned")
                .namespace
                .is_live(&entry);
            if live {
                done.push(seq);
                continue;
            }
            let mut client = clients
                .entry(node.addr.clone())
                .or_insert_with(|| NodeServiceClient::new(lazy_channel(&transport, &node.addr)))
                .clone();
            let mut req = tonic::Request::new(DeleteShardRequest {
                id: Some(ShardId {
                    chunk_id: entry.chunk.as_bytes().to_vec().into(),
                    index: entry.index,
                }),
                term,
            });
            req.set_timeout(Duration::from_secs(5));
            deletes.push(async move { (seq, entry.node, client.delete_shard(req).await) });
        }
        let mut results = futures::stream::iter(deletes).buffer_unordered(PARALLEL_DELETES);
        while let Some((seq, node, result)) = results.next().await {
            match result {
                Ok(_) => done.push(seq),
                Err(e) => tracing::debug!(node, error = %e, "gc delete failed; will retry"),
            }
        }
        drop(_placing);
        if !done.is_empty() {
            let n = done.len();
            if let Err(e) = raft.client_write(Command::GcDone { seqs: done }).await {
                tracing::debug!(error = %e, "committing gc progress failed; will retry");
            } else {
                tracing::debug!(shards = n, "garbage collected shards");
                backlog = full_batch;
            }
        }
    }
}
