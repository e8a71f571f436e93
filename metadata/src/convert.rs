//! The metadata service's own edge: its wire shapes (extents by chunk index, object
//! attributes with their size limits) and the one mapping of namespace errors to gRPC
//! status codes. The conversions every crate shares are `cairn_proto::convert` (whose
//! errors become INVALID_ARGUMENT).

use cairn_common::ChunkId;
use cairn_proto::meta as pm;
use tonic::Status;

use crate::namespace::{Hash32, NamespaceError, ObjectAttrs, ObjectView};

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
        | NamespaceError::SizeMismatch { .. }
        | NamespaceError::InvalidSetting { .. } => Status::invalid_argument(msg),
        NamespaceError::IsDirectory { .. }
        | NamespaceError::NotDirectory { .. }
        | NamespaceError::PreconditionFailed { .. }
        | NamespaceError::BucketNotEmpty { .. }
        | NamespaceError::NodeInUse { .. }
        | NamespaceError::WrongDisk { .. } => Status::failed_precondition(msg),
        NamespaceError::NestedBatch => Status::internal(msg),
    }
}
