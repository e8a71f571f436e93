//! Generated gRPC types and services. Nothing else lives here: each crate converts
//! these types to its own at its edge.
#![allow(clippy::all, missing_docs)]

/// Generated modules, nested as the protobuf packages are (`cairn.meta.v1`, ...).
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

/// The message of a storage node's RESOURCE_EXHAUSTED status starts with this when its
/// disk is full (rather than a client over its in-flight budget, which is worth a retry).
pub const NO_SPACE_MESSAGE: &str = "no space left on the storage node";
/// Data frame size used when streaming shard bytes.
pub const DATA_FRAME_BYTES: usize = 256 * 1024;
