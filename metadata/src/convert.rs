//! Conversions between the generated protobuf types and the metadata's own types, and
//! the one mapping of metadata errors to gRPC status codes.

use cairn_common::{ChunkId, Redundancy};
use cairn_proto::common as pc;
use cairn_proto::meta as pm;
use tonic::Status;

use crate::namespace::{ChunkMeta, Hash32, NamespaceError};

pub fn redundancy_to_proto(r: Redundancy) -> pc::Redundancy {
    let scheme = match r {
        Redundancy::Ec { k, m } => pc::redundancy::Scheme::Ec(pc::ErasureCoding { k, m }),
        Redundancy::Replicas { n } => pc::redundancy::Scheme::Replicas(n),
    };
    pc::Redundancy {
        scheme: Some(scheme),
    }
}

pub fn redundancy_from_proto(r: Option<pc::Redundancy>) -> Result<Redundancy, Status> {
    let scheme = r
        .and_then(|r| r.scheme)
        .ok_or_else(|| Status::invalid_argument("redundancy scheme is missing"))?;
    let r = match scheme {
        pc::redundancy::Scheme::Ec(ec) => Redundancy::Ec { k: ec.k, m: ec.m },
        pc::redundancy::Scheme::Replicas(n) => Redundancy::Replicas { n },
    };
    r.validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn chunk_id_from_proto(bytes: &[u8]) -> Result<ChunkId, Status> {
    ChunkId::from_slice(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn chunk_from_proto(c: pm::Chunk) -> Result<(ChunkId, ChunkMeta), Status> {
    let id = chunk_id_from_proto(&c.chunk_id)?;
    let redundancy = redundancy_from_proto(c.redundancy)?;
    let shard_hashes = c
        .shard_hashes
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice()).map(Hash32).map_err(|_| {
                Status::invalid_argument(format!("chunk {id}: shard hash is not 32 bytes"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut shards = std::collections::BTreeMap::new();
    for s in c.shards {
        if shards.insert(s.index, s.node_id).is_some() {
            return Err(Status::invalid_argument(format!(
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
        chunk_id: id.as_bytes().to_vec(),
        size: c.size,
        shard_hashes: c.shard_hashes.iter().map(|h| h.0.to_vec()).collect(),
        shards: c
            .shards
            .iter()
            .map(|(&index, &node_id)| pm::ShardPlacement { index, node_id })
            .collect(),
        redundancy: Some(redundancy_to_proto(c.redundancy)),
    }
}

/// The one place namespace rejections become gRPC codes.
pub fn status_from(e: NamespaceError) -> Status {
    let msg = e.to_string();
    match e {
        NamespaceError::BucketExists { .. } => Status::already_exists(msg),
        NamespaceError::NoSuchBucket { .. } | NamespaceError::NoSuchKey { .. } => {
            Status::not_found(msg)
        }
        NamespaceError::InvalidName { .. }
        | NamespaceError::BadChunk { .. }
        | NamespaceError::SizeMismatch { .. } => Status::invalid_argument(msg),
        NamespaceError::IsDirectory { .. } | NamespaceError::NotDirectory { .. } => {
            Status::failed_precondition(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_round_trips_and_bad_hashes_are_refused() {
        let meta = ChunkMeta {
            size: 7,
            redundancy: Redundancy::Ec { k: 2, m: 1 },
            shard_hashes: vec![Hash32([1; 32]); 3],
            shards: [(0, 5), (2, 6)].into_iter().collect(),
        };
        let id = ChunkId::random();
        let p = chunk_to_proto(&id, &meta);
        assert_eq!(chunk_from_proto(p.clone()).unwrap(), (id, meta));
        let mut bad = p.clone();
        bad.shard_hashes[0] = vec![1, 2];
        assert_eq!(
            chunk_from_proto(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut bad = p;
        bad.chunk_id = vec![0; 3];
        assert_eq!(
            chunk_from_proto(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert!(redundancy_from_proto(None).is_err());
    }
}
