//! The wire: generated gRPC types and services, the one set of conversions between them
//! and `cairn-common`'s types ([`convert`]), and typed failure reasons carried in a
//! status ([`status`]). Depends on nothing of Cairn's but `cairn-common`.

pub mod convert;
pub mod status;

/// Generated modules, nested as the protobuf packages are (`cairn.meta.v1`, ...).
#[allow(clippy::all, missing_docs)]
pub mod cairn {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("cairn.common.v1");
        }
    }
    pub mod node {
        pub mod v1 {
            tonic::include_proto!("cairn.node.v1");
        }
    }
    pub mod meta {
        pub mod v1 {
            tonic::include_proto!("cairn.meta.v1");
        }
    }
    pub mod object {
        pub mod v1 {
            tonic::include_proto!("cairn.object.v1");
        }
    }
}

/// Encoded descriptors of every Cairn .proto file (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));

pub use cairn::common::v1 as common;
pub use cairn::meta::v1 as meta;
pub use cairn::node::v1 as node;
pub use cairn::object::v1 as object;

/// Largest gRPC message any Cairn service accepts or sends (data streams are framed
/// well below this).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Data frame size used when streaming shard bytes.
pub const DATA_FRAME_BYTES: usize = 256 * 1024;
