//! Rebuilds ordered by the metadata leader (repair, drain, rebalance): this node reads
//! the shards it needs from its peers, verified against the chunk's hashes
//! ([`cairn_shard_io::NodePool::read_one_shard`]), and stores the result durably. Each
//! rebuild waits for a background slot first ([`crate::background`]), so client I/O
//! keeps priority.

use std::sync::Arc;

use bytes::Bytes;
use cairn_shard_io::{NodePool, RebuildOrder, RebuildOutcome, RebuildReport};

use crate::background::BackgroundGate;
use crate::store::{ShardKey, ShardStore, StoreError};

pub struct Rebuilder {
    store: Arc<ShardStore>,
    /// Connections to the peers, as this node (their `GetShard` admits storage nodes).
    peers: NodePool,
    gate: BackgroundGate,
}

impl Rebuilder {
    pub fn new(store: Arc<ShardStore>, peers: NodePool, gate: BackgroundGate) -> Rebuilder {
        Rebuilder { store, peers, gate }
    }

    /// Makes `order`'s shard durable here. A failure of this node's store is the error;
    /// sources too few to read are an [`RebuildOutcome::Unavailable`] report.
    pub async fn rebuild(&self, order: RebuildOrder) -> Result<RebuildReport, StoreError> {
        let slot = self.gate.admit().await;
        let yielded = slot.yielded();
        let (read, lost) = self.peers.read_one_shard(&order).await;
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(chunk = %order.chunk, index = order.index, error = %e, "shard not rebuilt");
                return Ok(RebuildReport {
                    outcome: RebuildOutcome::Unavailable {
                        reason: e.to_string(),
                    },
                    lost,
                    yielded,
                });
            }
        };
        let len = bytes.len() as u64;
        let key = ShardKey {
            chunk: order.chunk,
            index: order.index,
        };
        let hash = order.meta.shard_hashes[order.index as usize].0;
        self.store.put(key, hash, vec![Bytes::from(bytes)]).await?;
        metrics::counter!("cairn_node_rebuilt_bytes_total").increment(len);
        tracing::debug!(shard = %key, bytes = len, "rebuilt shard");
        Ok(RebuildReport {
            outcome: RebuildOutcome::Rebuilt { bytes: len },
            lost,
            yielded,
        })
    }
}
