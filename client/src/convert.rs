//! Conversions between the generated protobuf types and Cairn's own. The scheme mappings
//! here are the only ones: the metadata service and the object API use them too, each
//! wrapping them with its own error type.

use cairn_common::chunk::{ChunkMeta, Hash32};
use cairn_common::{ChunkId, Redundancy};
use cairn_proto::common as pc;
use cairn_proto::meta as pm;

use crate::error::{ClientError, Result};

pub fn redundancy_from_proto(r: Option<pc::Redundancy>) -> Result<Redundancy> {
    let scheme = r
        .and_then(|r| r.scheme)
        .ok_or_else(|| ClientError::Malformed {
            what: "redundancy scheme missing".into(),
        })?;
    redundancy_of(scheme)
        .validate()
        .map_err(|e| ClientError::Malformed {
            what: e.to_string(),
        })
}

/// The scheme a protobuf message names (not yet validated).
pub fn redundancy_of(scheme: pc::redundancy::Scheme) -> Redundancy {
    match scheme {
        pc::redundancy::Scheme::Ec(ec) => Redundancy::Ec { k: ec.k, m: ec.m },
        pc::redundancy::Scheme::Replicas(n) => Redundancy::Replicas { n },
    }
}

pub fn redundancy_to_proto(r: Redundancy) -> pc::Redundancy {
    let scheme = match r {
        Redundancy::Ec { k, m } => pc::redundancy::Scheme::Ec(pc::ErasureCoding { k, m }),
        Redundancy::Replicas { n } => pc::redundancy::Scheme::Replicas(n),
    };
    pc::Redundancy {
        scheme: Some(scheme),
    }
}

/// A chunk description as the metadata service keeps it.
pub fn chunk_from_proto(c: pm::Chunk) -> Result<(ChunkId, ChunkMeta)> {
    let malformed = |what: String| ClientError::Malformed { what };
    let id = ChunkId::from_slice(&c.chunk_id).map_err(|e| malformed(e.to_string()))?;
    let redundancy = redundancy_from_proto(c.redundancy)?;
    let shard_hashes = c
        .shard_hashes
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(&h[..])
                .map(Hash32)
                .map_err(|_| malformed(format!("chunk {id}: shard hash is not 32 bytes")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut shards = std::collections::BTreeMap::new();
    for s in c.shards {
        if shards.insert(s.index, s.node_id).is_some() {
            return Err(malformed(format!(
                "chunk {id}: shard {} placed twice",
                s.index
            )));
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

pub fn chunk_to_proto(id: &ChunkId, c: &ChunkMeta) -> pm::Chunk {
    pm::Chunk {
        chunk_id: id.as_bytes().to_vec().into(),
        size: c.size,
        shard_hashes: c.shard_hashes.iter().map(|h| h.0.to_vec().into()).collect(),
        shards: c
            .shards
            .iter()
            .map(|(&index, &node_id)| pm::ShardPlacement { index, node_id })
            .collect(),
        redundancy: Some(redundancy_to_proto(c.redundancy)),
    }
}
