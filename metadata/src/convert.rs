//! Conversions between the generated protobuf types and the metadata's own types, and
//! the one mapping of metadata errors to gRPC status codes.

use cairn_client::convert::redundancy_of;
use cairn_common::{ChunkId, Redundancy};
use cairn_proto::common as pc;
use cairn_proto::meta as pm;
use tonic::Status;

use crate::namespace::{ChunkMeta, Hash32, NamespaceError, ObjectAttrs, ObjectView, Precondition};

pub use cairn_client::convert::{chunk_to_proto, redundancy_to_proto};

pub fn redundancy_from_proto(r: Option<pc::Redundancy>) -> Result<Redundancy, Status> {
    let scheme = r
        .and_then(|r| r.scheme)
        .ok_or_else(|| Status::invalid_argument("redundancy scheme is missing"))?;
    redundancy_of(scheme)
        .validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn chunk_id_from_proto(bytes: &[u8]) -> Result<ChunkId, Status> {
    ChunkId::from_slice(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn chunk_from_proto(c: pm::Chunk) -> Result<(ChunkId, ChunkMeta), Status> {
    cairn_client::convert::chunk_from_proto(c).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// An object's extents, each naming its chunk by index into `view.chunks`.
pub fn extents_to_proto(view: &ObjectView) -> Vec<pm::Extent> {
    let index: std::collections::HashMap<ChunkId, u32> = view
        .chunks
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i as u32))
        .collect();
    view.extents
        .iter()
        .map(|e| pm::Extent {
            offset: e.offset,
            len: e.len,
            chunk: index[&e.chunk],
            chunk_offset: e.chunk_offset,
        })
        .collect()
}

pub fn precondition_from_proto(
    p: Option<pc::Precondition>,
) -> Result<Option<Precondition>, Status> {
    match p.and_then(|p| p.condition) {
        None => Ok(None),
        Some(pc::precondition::Condition::IfAbsent(true)) => Ok(Some(Precondition::IfAbsent)),
        Some(pc::precondition::Condition::IfAbsent(false)) => Err(Status::invalid_argument(
            "precondition if_absent must be true when set",
        )),
        Some(pc::precondition::Condition::IfGenerationMatch(g)) => {
            Ok(Some(Precondition::IfGeneration(g)))
        }
    }
}

/// Largest content type, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 256;
/// Most user metadata entries, and their largest total size in bytes.
pub const MAX_METADATA_ENTRIES: usize = 64;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

pub fn attrs_from_proto(
    blake3: &[u8],
    content_type: String,
    metadata: std::collections::HashMap<String, String>,
) -> Result<ObjectAttrs, Status> {
    let blake3 = match blake3.len() {
        0 => None,
        32 => Some(Hash32(blake3.try_into().expect("length checked"))),
        n => {
            return Err(Status::invalid_argument(format!(
                "object blake3 must be 32 bytes, got {n}"
            )))
        }
    };
    if content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return Err(Status::invalid_argument(format!(
            "content type is limited to {MAX_CONTENT_TYPE_BYTES} bytes"
        )));
    }
    let total: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if metadata.len() > MAX_METADATA_ENTRIES || total > MAX_METADATA_BYTES {
        return Err(Status::invalid_argument(format!(
            "user metadata is limited to {MAX_METADATA_ENTRIES} entries and {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(ObjectAttrs {
        blake3,
        content_type,
        metadata: metadata.into_iter().collect(),
    })
}

/// The one place namespace rejections become gRPC codes.
pub fn status_from(e: NamespaceError) -> Status {
    let msg = e.to_string();
    match e {
        NamespaceError::BucketExists { .. } | NamespaceError::TokenExists { .. } => {
            Status::already_exists(msg)
        }
        NamespaceError::NoSuchBucket { .. }
        | NamespaceError::NoSuchKey { .. }
        | NamespaceError::NoSuchChunk { .. }
        | NamespaceError::NoSuchNode { .. }
        | NamespaceError::NoSuchToken { .. } => Status::not_found(msg),
        NamespaceError::InvalidName { .. }
        | NamespaceError::BadChunk { .. }
        | NamespaceError::SizeMismatch { .. } => Status::invalid_argument(msg),
        NamespaceError::IsDirectory { .. }
        | NamespaceError::NotDirectory { .. }
        | NamespaceError::PreconditionFailed { .. }
        | NamespaceError::BucketNotEmpty { .. }
        | NamespaceError::NodeInUse { .. } => Status::failed_precondition(msg),
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
        bad.shard_hashes[0] = vec![1, 2].into();
        assert_eq!(
            chunk_from_proto(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut bad = p;
        bad.chunk_id = vec![0; 3].into();
        assert_eq!(
            chunk_from_proto(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert!(redundancy_from_proto(None).is_err());
    }
}
