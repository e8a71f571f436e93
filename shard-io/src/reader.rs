//! The one verified chunk reader (DESIGN.md invariant 3): a chunk is read from k of its
//! shards, each checked against the blake3 the metadata recorded for it when it was
//! written, and decoded (or, for repair, every missing shard reconstructed). A shard that
//! is missing, corrupt, or fails that check is replaced by the next source and returned
//! as lost; a read that has not answered after [`HEDGE_AFTER`] gets another source raced
//! against it. A reader gets correct bytes or an error, never wrong bytes.

use std::time::Duration;

use cairn_common::chunk::{ChunkMeta, NodeAddr};
use cairn_common::erasure::Codec;
use cairn_common::{ChunkId, NodeId};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::{NodePool, ShardError};

/// A shard read that has not answered by then gets another source raced against it.
pub const HEDGE_AFTER: Duration = Duration::from_millis(1500);

/// Where one shard of a chunk can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSource {
    pub index: u32,
    pub node: NodeId,
    pub addr: String,
}

impl ShardSource {
    /// Every placed shard of `meta` whose node is in `nodes`, in the order a reader tries
    /// them: shards on up nodes before those on down ones, and within each, data shards
    /// before parity (reading only data shards needs no decoding).
    pub fn for_reading(meta: &ChunkMeta, nodes: &[NodeAddr]) -> Vec<ShardSource> {
        let total = meta.redundancy.total_shards();
        let mut sources: Vec<(bool, ShardSource)> = meta
            .shards
            .iter()
            .filter(|(index, _)| (**index as usize) < total)
            .filter_map(|(&index, &node)| {
                let at = nodes.iter().find(|n| n.id == node)?;
                Some((
                    at.down,
                    ShardSource {
                        index,
                        node,
                        addr: at.addr.clone(),
                    },
                ))
            })
            .collect();
        sources.sort_by_key(|(down, s)| (*down, s.index));
        sources.into_iter().map(|(_, s)| s).collect()
    }
}

/// What [`NodePool::read_shards`] found.
#[derive(Debug)]
struct ShardsRead {
    /// Verified shards by index (`None`: not read).
    shards: Vec<Option<Vec<u8>>>,
    /// How many are `Some`.
    have: usize,
    /// Shards found missing or corrupt (index, node): the caller reports them.
    lost: Vec<(u32, NodeId)>,
}

/// Why a chunk could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkReadError {
    /// The description does not fit its scheme (a metadata bug or a bad reply).
    #[error("chunk {chunk}: {reason}")]
    Malformed { chunk: ChunkId, reason: String },
    #[error("data unavailable: chunk {chunk} has only {available} readable shards of the {needed} needed")]
    Unavailable {
        chunk: ChunkId,
        available: usize,
        needed: usize,
    },
    #[error("data corrupt: chunk {chunk} decoded to bytes that do not match its shard hashes")]
    Corrupt { chunk: ChunkId },
}

/// Checks that `meta` can be read at all: a shard hash per shard of its scheme.
pub(crate) fn check(chunk: ChunkId, meta: &ChunkMeta) -> Result<Codec, ChunkReadError> {
    let malformed = |reason: String| ChunkReadError::Malformed { chunk, reason };
    if meta.shard_hashes.len() != meta.redundancy.total_shards() {
        return Err(malformed(format!(
            "{} shard hashes for {} shards",
            meta.shard_hashes.len(),
            meta.redundancy.total_shards()
        )));
    }
    Codec::new(meta.redundancy).map_err(|e| malformed(e.to_string()))
}

impl NodePool {
    /// Reads one whole shard and checks it against the metadata's hash for it: a shard of
    /// the wrong length or hash is [`ShardError::Corrupt`].
    pub async fn read_verified_shard(
        &self,
        chunk: ChunkId,
        meta: &ChunkMeta,
        source: &ShardSource,
    ) -> Result<Vec<u8>, ShardError> {
        let bytes = self.get_shard(&source.addr, chunk, source.index).await?;
        let expected = meta.shard_hashes.get(source.index as usize);
        if bytes.len() != meta.shard_len()
            || expected.map(|h| h.0) != Some(*blake3::hash(&bytes).as_bytes())
        {
            return Err(ShardError::Corrupt {
                addr: source.addr.clone(),
                chunk,
                index: source.index,
                reason: "failed verification against the metadata's shard hash".into(),
            });
        }
        Ok(bytes)
    }

    /// Reads `needed` verified shards of `chunk`, `needed` at a time from `sources` in
    /// order; each failure launches the next source, and so does a read that has not
    /// answered after [`HEDGE_AFTER`]. Stops early only when the sources run out.
    async fn read_shards(
        &self,
        chunk: ChunkId,
        meta: &ChunkMeta,
        sources: Vec<ShardSource>,
        needed: usize,
    ) -> ShardsRead {
        let mut read = ShardsRead {
            shards: vec![None; meta.redundancy.total_shards()],
            have: 0,
            lost: Vec::new(),
        };
        let mut queue = sources.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let launch = |s: ShardSource| async move {
            let result = self.read_verified_shard(chunk, meta, &s).await;
            (s, result)
        };
        for s in queue.by_ref().take(needed) {
            in_flight.push(launch(s));
        }
        while read.have < needed {
            let next = tokio::select! {
                next = in_flight.next() => next,
                _ = tokio::time::sleep(HEDGE_AFTER), if !in_flight.is_empty() => {
                    if let Some(s) = queue.next() {
                        in_flight.push(launch(s));
                    }
                    continue;
                }
            };
            let Some((s, result)) = next else {
                break;
            };
            match result {
                Ok(bytes) => {
                    let slot = &mut read.shards[s.index as usize];
                    if slot.is_none() {
                        *slot = Some(bytes);
                        read.have += 1;
                    }
                    continue;
                }
                Err(e) if e.is_lost() => {
                    tracing::warn!(%chunk, index = s.index, node = s.node, error = %e, "shard missing or corrupt");
                    read.lost.push((s.index, s.node));
                }
                Err(e) => {
                    tracing::debug!(%chunk, index = s.index, node = s.node, error = %e, "shard read failed");
                }
            }
            if let Some(next) = queue.next() {
                in_flight.push(launch(next));
            }
        }
        read
    }

    /// Reads k verified shards of `chunk` from `sources`: the codec to decode them with
    /// and the shards, or why not; and the shards found missing or corrupt either way.
    async fn read_k(
        &self,
        chunk: ChunkId,
        meta: &ChunkMeta,
        sources: Vec<ShardSource>,
    ) -> (
        Result<(Codec, ShardsRead), ChunkReadError>,
        Vec<(u32, NodeId)>,
    ) {
        let codec = match check(chunk, meta) {
            Ok(codec) => codec,
            Err(e) => return (Err(e), Vec::new()),
        };
        let needed = meta.redundancy.data_shards();
        let mut read = self.read_shards(chunk, meta, sources, needed).await;
        let lost = std::mem::take(&mut read.lost);
        if read.have < needed {
            let e = ChunkReadError::Unavailable {
                chunk,
                available: read.have,
                needed,
            };
            return (Err(e), lost);
        }
        (Ok((codec, read)), lost)
    }

    /// Reads, verifies and decodes one chunk from the nodes in `nodes`. Also returns the
    /// shards found missing or corrupt, whatever the outcome, for the caller to report.
    pub async fn read_chunk(
        &self,
        chunk: ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
    ) -> (Result<Vec<u8>, ChunkReadError>, Vec<(u32, NodeId)>) {
        let sources = ShardSource::for_reading(meta, nodes);
        let (read, lost) = self.read_k(chunk, meta, sources).await;
        let decoded = read.and_then(|(codec, read)| {
            codec
                .decode(read.shards, meta.size as usize)
                .map_err(|_| ChunkReadError::Corrupt { chunk })
        });
        (decoded, lost)
    }

    /// Reads k verified shards of `chunk` from `sources` and rebuilds every other shard
    /// (repair). Returns all shards, or why that was not possible, and the shards found
    /// missing or corrupt.
    pub async fn read_all_shards(
        &self,
        chunk: ChunkId,
        meta: &ChunkMeta,
        sources: Vec<ShardSource>,
    ) -> (Result<Vec<Vec<u8>>, ChunkReadError>, Vec<(u32, NodeId)>) {
        let (read, lost) = self.read_k(chunk, meta, sources).await;
        let rebuilt = read.and_then(|(codec, mut read)| {
            codec
                .reconstruct_all(&mut read.shards)
                .map_err(|_| ChunkReadError::Corrupt { chunk })?;
            Ok(read
                .shards
                .into_iter()
                .map(|s| s.expect("reconstruct_all fills every shard"))
                .collect())
        });
        (rebuilt, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::chunk::Hash32;
    use cairn_common::Redundancy;

    fn node(id: NodeId, down: bool) -> NodeAddr {
        NodeAddr {
            id,
            addr: format!("127.0.0.{id}:1"),
            down,
        }
    }

    #[test]
    fn sources_put_up_nodes_and_data_shards_first_and_skip_unknown_nodes() {
        let meta = ChunkMeta {
            size: 100,
            redundancy: Redundancy::Ec { k: 2, m: 2 },
            shard_hashes: vec![Hash32([0; 32]); 4],
            shards: [(0, 1), (1, 2), (2, 3), (3, 4), (9, 5)]
                .into_iter()
                .collect(),
        };
        let nodes = [
            node(1, true),
            node(2, false),
            node(3, false),
            node(5, false),
        ];
        let order: Vec<(u32, NodeId)> = ShardSource::for_reading(&meta, &nodes)
            .into_iter()
            .map(|s| (s.index, s.node))
            .collect();
        // Shard 3's node is unknown, index 9 is beyond the scheme, node 1 is down.
        assert_eq!(order, vec![(1, 2), (2, 3), (0, 1)]);
    }

    #[test]
    fn a_description_without_a_hash_per_shard_is_malformed() {
        let meta = ChunkMeta {
            size: 1,
            redundancy: Redundancy::Ec { k: 2, m: 1 },
            shard_hashes: vec![Hash32([0; 32]); 2],
            shards: Default::default(),
        };
        assert!(matches!(
            check(ChunkId::random(), &meta),
            Err(ChunkReadError::Malformed { .. })
        ));
    }
}
