//! The commands the state machine applies and what applying one produced. Commands are
//! the only way metadata changes; each carries everything its apply needs (timestamps
//! included) so that every replica applies it identically. Pure data: the Raft type
//! configuration (`crate::types`) is built on these, never the other way round.

use cairn_common::fs::{FsChange, FsResult, SessionId};
use cairn_common::{ChunkId, DiskId, NodeId, Redundancy};
use serde::{Deserialize, Serialize};

use super::{ChunkMeta, NamespaceError, ObjectAttrs, Precondition};

/// A change to the metadata, replicated through the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateBucket {
        name: String,
        redundancy: Redundancy,
        mtime: u64,
    },
    /// A storage node (re)registers. Refused (`WrongDisk`) when the node is registered
    /// with another data directory than `disk`, unless `replace_empty`: then the node's
    /// placements are forgotten (its chunks are degraded and repaired) and `disk` is
    /// recorded.
    RegisterNode {
        id: NodeId,
        addr: String,
        zone: String,
        /// `None` from nodes older than disk ids (and in older log entries).
        #[serde(default)]
        disk: Option<DiskId>,
        #[serde(default)]
        replace_empty: bool,
    },
    /// Point `bucket/key` at already durable chunks, replacing any older version.
    CommitObject {
        bucket: String,
        key: String,
        size: u64,
        chunks: Vec<(ChunkId, ChunkMeta)>,
        attrs: ObjectAttrs,
        precondition: Option<Precondition>,
        mtime: u64,
    },
    DeleteObject {
        bucket: String,
        key: String,
        /// Delete only if the object's generation is this.
        if_generation: Option<u64>,
        /// Seconds since the epoch (the parent directory's new mtime).
        #[serde(default)]
        mtime: u64,
    },
    /// Refused unless the bucket is empty.
    DeleteBucket { name: String },
    /// A reader found this shard missing or corrupt on `node`.
    ShardLost {
        chunk: ChunkId,
        index: u32,
        node: NodeId,
    },
    /// Repair rebuilt shards of `chunk` on new nodes (`placed`) and retires placements
    /// on nodes that are out (`dropped`).
    RepairChunk {
        chunk: ChunkId,
        placed: Vec<(u32, NodeId)>,
        dropped: Vec<(u32, NodeId)>,
    },
    /// Start or stop draining a storage node.
    SetDraining { node: NodeId, draining: bool },
    /// Forget a storage node that holds no shard.
    RemoveNode { node: NodeId },
    /// Change a node's relative share of data (percent, 100 = normal).
    SetNodeWeight { node: NodeId, weight_pct: u32 },
    /// Limit repair and rebalance writes to this many bytes per second.
    SetRepairThrottle { bytes_per_sec: u64 },
    /// Give `user` `access` to `bucket` (`None`: revoke).
    SetGrant {
        bucket: String,
        user: String,
        access: Option<super::grants::Access>,
    },
    /// Record an API token (`cairn user add`): its id and its secret's hash.
    AddToken {
        id: String,
        record: super::tokens::TokenRecord,
    },
    /// Forget an API token: calls carrying it are refused from now on.
    RevokeToken { id: String },
    /// A filesystem change from a mount's session; `now_ns` is the leader's clock.
    /// `seq`: the session's number for the change (`FsRequest::Change`; 0: none).
    Fs {
        session: SessionId,
        change: FsChange,
        now_ns: u64,
        #[serde(default)]
        seq: u64,
    },
    /// A mount starts a session.
    OpenSession { name: String, now_ns: u64 },
    /// A session ends (closed by its mount, or its lease expired): its locks and holds
    /// are dropped and every later change from it is refused.
    EndSession { session: SessionId },
    /// These garbage-collection entries were deleted from their nodes.
    GcDone { seqs: Vec<u64> },
    /// Several client writes in one log entry (group commit, `group_commit.rs`): applied
    /// in order, each exactly as if it had its own entry, each with its own result
    /// (`CommandResult::Batch`). Never nested.
    Batch(Batch),
    /// Set the cluster's inline threshold and budget (`cairn inline set`).
    SetInlineLimits(super::InlineLimits),
}

/// The commands of a [`Command::Batch`]. Decoding refuses a batch inside a batch, so
/// that a corrupt or hostile record cannot nest batches until the decoder's recursion
/// exhausts the stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Batch(pub Vec<Command>);

thread_local! {
    /// Whether this thread is decoding the commands of a batch.
    static IN_BATCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Inside;
        impl Drop for Inside {
            fn drop(&mut self) {
                IN_BATCH.with(|b| b.set(false));
            }
        }
        if IN_BATCH.with(|b| b.replace(true)) {
            return Err(serde::de::Error::custom(
                "a command batch inside a command batch",
            ));
        }
        let _inside = Inside;
        Vec::<Command>::deserialize(deserializer).map(Batch)
    }
}

/// What applying a command produced. Rejections are results, not Raft errors: every
/// replica reaches the same verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Done,
    Committed {
        generation: u64,
    },
    Rejected(NamespaceError),
    /// The outcome of a filesystem command (its refusals included).
    Fs(FsResult),
    /// The result of each command of a [`Command::Batch`], in order.
    Batch(Vec<CommandResult>),
}
