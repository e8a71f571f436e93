//! Chunk ids and chunk descriptions (`cairn.meta.v1.Chunk`: size, redundancy, shard hashes
//! and placements).

use std::collections::BTreeMap;

use cairn_common::chunk::{ChunkMeta, Hash32};
use cairn_common::ChunkId;

use super::{redundancy, WireError};
use crate::meta as pm;

/// A chunk id from its 16 wire bytes.
pub fn chunk_id(bytes: &[u8]) -> Result<ChunkId, WireError> {
    ChunkId::from_slice(bytes).map_err(|e| WireError::invalid("chunk_id", e))
}

/// A 32-byte blake3 hash from the wire.
pub fn shard_hash(bytes: &[u8], field: &'static str) -> Result<Hash32, WireError> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash32)
        .map_err(|_| WireError::invalid(field, format!("{} bytes, not 32", bytes.len())))
}

impl TryFrom<pm::Chunk> for (ChunkId, ChunkMeta) {
    type Error = WireError;

    fn try_from(c: pm::Chunk) -> Result<Self, WireError> {
        let id = chunk_id(&c.chunk_id)?;
        let redundancy = redundancy(c.redundancy, "chunk redundancy")?;
        let shard_hashes = c
            .shard_hashes
            .iter()
            .map(|h| shard_hash(h, "chunk shard hash"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut shards = BTreeMap::new();
        for s in c.shards {
            if shards.insert(s.index, s.node_id).is_some() {
                return Err(WireError::invalid(
                    "chunk shards",
                    format!("chunk {id}: shard {} placed twice", s.index),
                ));
            }
        }
        Ok((
            id,
            ChunkMeta {
                size: c.size,
                redundancy,
                shard_hashes,
                shards,
            },
        ))
    }
}

impl From<(&ChunkId, &ChunkMeta)> for pm::Chunk {
    fn from((id, c): (&ChunkId, &ChunkMeta)) -> pm::Chunk {
        pm::Chunk {
            chunk_id: id.as_bytes().to_vec().into(),
            size: c.size,
            shard_hashes: c.shard_hashes.iter().map(|h| h.0.to_vec().into()).collect(),
            shards: c
                .shards
                .iter()
                .map(|(&index, &node_id)| pm::ShardPlacement { index, node_id })
                .collect(),
            redundancy: Some(c.redundancy.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::Redundancy;

    #[test]
    fn chunks_round_trip_and_bad_hashes_ids_and_placements_are_refused() {
        let meta = ChunkMeta {
            size: 7,
            redundancy: Redundancy::Ec { k: 2, m: 1 },
            shard_hashes: vec![Hash32([1; 32]); 3],
            shards: [(0, 5), (2, 6)].into_iter().collect(),
        };
        let id = ChunkId::random();
        let wire = pm::Chunk::from((&id, &meta));
        assert_eq!(
            <(ChunkId, ChunkMeta)>::try_from(wire.clone()),
            Ok((id, meta))
        );
        let mut bad = wire.clone();
        bad.shard_hashes[0] = vec![1, 2].into();
        assert!(<(ChunkId, ChunkMeta)>::try_from(bad).is_err());
        let mut bad = wire.clone();
        bad.chunk_id = vec![0; 3].into();
        assert!(<(ChunkId, ChunkMeta)>::try_from(bad).is_err());
        let mut bad = wire.clone();
        bad.shards.push(bad.shards[0]);
        assert!(<(ChunkId, ChunkMeta)>::try_from(bad).is_err());
        let mut bad = wire;
        bad.redundancy = None;
        assert!(<(ChunkId, ChunkMeta)>::try_from(bad).is_err());
    }
}
