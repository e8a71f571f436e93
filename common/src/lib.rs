//! Pure building blocks shared by every Cairn crate: identifiers, redundancy schemes,
//! erasure coding, placement, name rules, config loading and tracing set-up.
//! Must not depend on tonic, RocksDB, FUSE or io_uring.

pub mod chunk;
pub mod config;
pub mod erasure;
pub mod failpoint;
pub mod fs;
pub mod ids;
pub mod locks;
pub mod names;
pub mod placement;
pub mod precondition;
pub mod redundancy;
pub mod systemd;
pub mod telemetry;
pub mod token;

pub use ids::{ChunkId, DiskId, NodeId};
pub use precondition::Precondition;
pub use redundancy::Redundancy;

/// Default size of a chunk: the unit that is erasure coded and placed.
/// This build's release, as every daemon reports it (`cairn status` lists each one's, so
/// that an operator sees which daemons a rolling upgrade has reached).
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;
