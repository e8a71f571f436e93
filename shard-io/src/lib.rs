//! Shard transfer with the storage nodes over gRPC, shared by every component that moves
//! shard bytes: the client's data path (puts and gets, the mount's chunk reads) and the
//! storage nodes' rebuilds for repair and rebalance.
//!
//! - [`pool`]: one lazily connected channel per node and the shard calls (put, get, get a
//!   range, scrub), with typed failures ([`ShardError`]).
//! - [`reader`]: the one verified chunk reader: k shards, each checked against the blake3
//!   the metadata records for it, tried in order with a hedge for slow nodes, decoded or
//!   reconstructed. Shards found missing or corrupt are returned to the caller, who
//!   reports them (the client to the metadata service, repair through Raft).
//! - [`rebuild`]: repair and moves executed by the storage node that keeps the result:
//!   the order the metadata leader sends, and the node's verified read of one shard
//!   (copied, or reconstructed from k others).
//!
//! Knows nothing of the metadata service or the namespace: it speaks `cairn-common`'s
//! chunk descriptions and converts to the wire only inside [`pool`].

pub mod error;
pub mod pool;
pub mod reader;
pub mod rebuild;

pub use error::ShardError;
pub use pool::{NodePool, ScrubCounts};
pub use reader::{ChunkReadError, ShardSource};
pub use rebuild::{RebuildOrder, RebuildOutcome, RebuildReport};
