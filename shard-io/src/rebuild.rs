//! Rebuilding one shard on the storage node that will keep it (repair, drain, rebalance):
//! the metadata leader sends a [`RebuildOrder`] to the target node, which reads what it
//! needs from its peers with [`NodePool::read_one_shard`] and stores the result. Shard
//! bytes flow between storage nodes only; the leader sends and receives descriptions.

use std::time::Duration;

use cairn_common::chunk::{ChunkMeta, Hash32};
use cairn_common::{ChunkId, NodeId};
use cairn_proto::common::ShardId;
use cairn_proto::convert::{chunk_id, redundancy, shard_hash, WireError};
use cairn_proto::node::{RebuildShardRequest, RebuildShardResponse, ShardLocation};

use crate::reader::check;
use crate::{ChunkReadError, NodePool, ShardError, ShardSource};

/// Deadline for one rebuild: reading k shards, decoding and a durable write, after a
/// wait for one of the node's background slots.
pub const REBUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Make shard `index` of `chunk` durable on the node this is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildOrder {
    pub chunk: ChunkId,
    pub index: u32,
    /// Size, scheme and shard hashes; the placements are not used (see `sources`).
    pub meta: ChunkMeta,
    /// Where the chunk's shards can be read, in order of preference. A source with the
    /// same index as the shard to rebuild is copied rather than decoded.
    pub sources: Vec<ShardSource>,
}

/// What a rebuild did, besides the sources it found lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// The shard is durable on the node: its length.
    Rebuilt { bytes: u64 },
    /// Too few sources could be read; nothing was written.
    Unavailable { reason: String },
}

/// What the node answered: the outcome and the sources it found missing or corrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildReport {
    pub outcome: RebuildOutcome,
    pub lost: Vec<(u32, NodeId)>,
    /// The node was serving clients, so the rebuild waited for its one busy-time slot.
    pub yielded: bool,
}

impl RebuildOrder {
    pub fn to_wire(&self) -> RebuildShardRequest {
        RebuildShardRequest {
            id: Some(ShardId {
                chunk_id: self.chunk.as_bytes().to_vec().into(),
                index: self.index,
            }),
            chunk_size: self.meta.size,
            redundancy: Some(self.meta.redundancy.into()),
            shard_hashes: self
                .meta
                .shard_hashes
                .iter()
                .map(|h| h.0.to_vec().into())
                .collect(),
            sources: self
                .sources
                .iter()
                .map(|s| ShardLocation {
                    index: s.index,
                    node_id: s.node,
                    addr: s.addr.clone(),
                })
                .collect(),
        }
    }

    /// Decodes and checks a request: a scheme the codec accepts, a hash per shard, an
    /// index within the scheme and at least one source.
    pub fn from_wire(r: RebuildShardRequest) -> Result<RebuildOrder, WireError> {
        let invalid = |field, reason: String| WireError::Invalid { field, reason };
        let id = r.id.ok_or(WireError::Missing { field: "id" })?;
        let chunk = chunk_id(&id.chunk_id)?;
        let shard_hashes = r
            .shard_hashes
            .iter()
            .map(|h| shard_hash(h, "shard_hashes"))
            .collect::<Result<Vec<Hash32>, _>>()?;
        let meta = ChunkMeta {
            size: r.chunk_size,
            redundancy: redundancy(r.redundancy, "redundancy")?,
            shard_hashes,
            shards: Default::default(),
        };
        check(chunk, &meta).map_err(|e| invalid("chunk", e.to_string()))?;
        let total = meta.redundancy.total_shards();
        if id.index as usize >= total {
            return Err(invalid(
                "id",
                format!("shard index {} beyond the {total} shards", id.index),
            ));
        }
        if r.sources.is_empty() {
            return Err(WireError::Missing { field: "sources" });
        }
        let sources = r
            .sources
            .into_iter()
            .map(|s| {
                if s.index as usize >= total {
                    return Err(invalid(
                        "sources",
                        format!("shard index {} beyond the {total} shards", s.index),
                    ));
                }
                Ok(ShardSource {
                    index: s.index,
                    node: s.node_id,
                    addr: s.addr,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RebuildOrder {
            chunk,
            index: id.index,
            meta,
            sources,
        })
    }
}

impl RebuildReport {
    pub fn to_wire(&self) -> RebuildShardResponse {
        let (bytes, unavailable) = match &self.outcome {
            RebuildOutcome::Rebuilt { bytes } => (*bytes, String::new()),
            RebuildOutcome::Unavailable { reason } => (0, reason.clone()),
        };
        RebuildShardResponse {
            bytes,
            lost: self
                .lost
                .iter()
                .map(|&(index, node_id)| ShardLocation {
                    index,
                    node_id,
                    addr: String::new(),
                })
                .collect(),
            unavailable,
            yielded: self.yielded,
        }
    }

    pub fn from_wire(r: RebuildShardResponse) -> RebuildReport {
        let outcome = if r.unavailable.is_empty() {
            RebuildOutcome::Rebuilt { bytes: r.bytes }
        } else {
            RebuildOutcome::Unavailable {
                reason: r.unavailable,
            }
        };
        RebuildReport {
            outcome,
            lost: r.lost.into_iter().map(|l| (l.index, l.node_id)).collect(),
            yielded: r.yielded,
        }
    }
}

impl NodePool {
    /// Asks the node at `addr` to rebuild a shard (see [`RebuildOrder`]); returns once
    /// it is durable there or the node says why not. A failure of the target node itself
    /// (unreachable, disk full) is the error.
    pub async fn rebuild_shard(
        &self,
        addr: &str,
        order: &RebuildOrder,
    ) -> Result<RebuildReport, ShardError> {
        let mut client = self.client(addr)?;
        let mut request = tonic::Request::new(order.to_wire());
        request.set_timeout(REBUILD_TIMEOUT);
        let reply = client.rebuild_shard(request).await.map_err(|s| {
            // A NOT_FOUND or DATA_LOSS here is about the rebuild, never a lost shard of
            // the target's: only `Failed` and `NoSpace` are meaningful.
            match ShardError::from_status(s, addr, order.chunk, order.index) {
                e @ (ShardError::NoSpace { .. }
                | ShardError::BadAddress { .. }
                | ShardError::Failed { .. }) => e,
                e => ShardError::Failed {
                    addr: addr.to_string(),
                    code: tonic::Code::Internal,
                    message: e.to_string(),
                },
            }
        })?;
        Ok(RebuildReport::from_wire(reply.into_inner()))
    }

    /// Reads shard `order.index` verified: copied from a source holding that index when
    /// one can be read, otherwise reconstructed from k verified shards of the others.
    /// Also returns the sources found missing or corrupt, whatever the outcome.
    pub async fn read_one_shard(
        &self,
        order: &RebuildOrder,
    ) -> (Result<Vec<u8>, ChunkReadError>, Vec<(u32, NodeId)>) {
        let mut lost = Vec::new();
        let (same, others): (Vec<_>, Vec<_>) = order
            .sources
            .iter()
            .cloned()
            .partition(|s| s.index == order.index);
        for source in &same {
            match self
                .read_verified_shard(order.chunk, &order.meta, source)
                .await
            {
                Ok(bytes) => return (Ok(bytes), lost),
                Err(e) if e.is_lost() => lost.push((source.index, source.node)),
                Err(e) => {
                    tracing::debug!(chunk = %order.chunk, index = source.index, node = source.node, error = %e, "copy source failed")
                }
            }
        }
        let (all, more_lost) = self.read_all_shards(order.chunk, &order.meta, others).await;
        lost.extend(more_lost);
        let one = all.map(|mut shards| shards.swap_remove(order.index as usize));
        // The decode is checked too: the bytes must have the metadata's hash.
        let checked = one.and_then(|bytes| {
            let expected = order.meta.shard_hashes[order.index as usize].0;
            if *blake3::hash(&bytes).as_bytes() == expected {
                Ok(bytes)
            } else {
                Err(ChunkReadError::Corrupt { chunk: order.chunk })
            }
        });
        (checked, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::Redundancy;

    fn order() -> RebuildOrder {
        RebuildOrder {
            chunk: ChunkId::random(),
            index: 2,
            meta: ChunkMeta {
                size: 1000,
                redundancy: Redundancy::Ec { k: 2, m: 1 },
                shard_hashes: vec![Hash32([7; 32]); 3],
                shards: Default::default(),
            },
            sources: vec![
                ShardSource {
                    index: 0,
                    node: 4,
                    addr: "127.0.0.4:1".into(),
                },
                ShardSource {
                    index: 1,
                    node: 5,
                    addr: "127.0.0.5:1".into(),
                },
            ],
        }
    }

    #[test]
    fn orders_and_reports_round_trip() {
        let o = order();
        assert_eq!(RebuildOrder::from_wire(o.to_wire()), Ok(o));
        for outcome in [
            RebuildOutcome::Rebuilt { bytes: 500 },
            RebuildOutcome::Unavailable {
                reason: "1 of 2".into(),
            },
        ] {
            let r = RebuildReport {
                outcome,
                lost: vec![(1, 5)],
                yielded: true,
            };
            assert_eq!(RebuildReport::from_wire(r.to_wire()), r);
        }
    }

    #[test]
    fn malformed_orders_are_refused() {
        let mut w = order().to_wire();
        w.id.as_mut().unwrap().index = 3;
        assert!(
            RebuildOrder::from_wire(w).is_err(),
            "index beyond the scheme"
        );
        let mut w = order().to_wire();
        w.shard_hashes.pop();
        assert!(RebuildOrder::from_wire(w).is_err(), "a hash short");
        let mut w = order().to_wire();
        w.sources.clear();
        assert!(RebuildOrder::from_wire(w).is_err(), "no source");
        let mut w = order().to_wire();
        w.sources[0].index = 9;
        assert!(
            RebuildOrder::from_wire(w).is_err(),
            "source beyond the scheme"
        );
        let mut w = order().to_wire();
        w.redundancy = None;
        assert!(RebuildOrder::from_wire(w).is_err(), "no scheme");
    }
}
