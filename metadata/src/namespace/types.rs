//! The namespace's data types: inodes, extents, chunk placements, node records, object
//! attributes, preconditions and the rejection errors. Plain data, no logic beyond
//! small helpers.

use std::collections::BTreeMap;

use cairn_common::{ChunkId, NodeId, Redundancy};
use serde::{Deserialize, Serialize};

use super::Ino;
/// Rejections, identical on every replica (they are part of applied results).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NamespaceError {
    #[error("bucket {name:?} already exists")]
    BucketExists { name: String },
    #[error("bucket {name:?} does not exist")]
    NoSuchBucket { name: String },
    #[error("object {bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("invalid name: {reason}")]
    InvalidName { reason: String },
    #[error("{bucket}/{path} is a directory, not an object")]
    IsDirectory { bucket: String, path: String },
    #[error("{bucket}/{path} is an object, so it cannot be a directory")]
    NotDirectory { bucket: String, path: String },
    #[error("chunk {chunk} is invalid: {reason}")]
    BadChunk { chunk: ChunkId, reason: String },
    #[error("object size {size} does not match its chunks' total {total}")]
    SizeMismatch { size: u64, total: u64 },
    #[error("{bucket}/{key}: precondition {wanted} failed ({})", describe_generation(*current))]
    PreconditionFailed {
        bucket: String,
        key: String,
        wanted: Precondition,
        current: Option<u64>,
    },
    #[error("bucket {name:?} is not empty")]
    BucketNotEmpty { name: String },
    #[error("chunk {chunk} is not referenced by any object")]
    NoSuchChunk { chunk: ChunkId },
    #[error("storage node {node} is not registered")]
    NoSuchNode { node: NodeId },
    #[error("storage node {node} still holds {shards} shards; drain it first")]
    NodeInUse { node: NodeId, shards: u64 },
}

fn describe_generation(current: Option<u64>) -> String {
    match current {
        Some(g) => format!("current generation {g}"),
        None => "no such object".to_string(),
    }
}

/// A condition on the current object for a write to happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// The key must not exist.
    IfAbsent,
    /// The key must exist with exactly this generation.
    IfGeneration(u64),
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precondition::IfAbsent => f.write_str("if-absent"),
            Precondition::IfGeneration(g) => write!(f, "if-generation-match {g}"),
        }
    }
}

impl Precondition {
    pub(super) fn holds(self, current: Option<u64>) -> bool {
        match self {
            Precondition::IfAbsent => current.is_none(),
            Precondition::IfGeneration(g) => current == Some(g),
        }
    }
}

/// What an object carries besides its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    /// blake3 of the whole object, when the writer computed it.
    #[serde(default)]
    pub blake3: Option<Hash32>,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A 32-byte hash, serialised as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash32(pub [u8; 32]);

impl std::fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&cairn_common::ids::hex(&self.0))
    }
}

impl Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cairn_common::ids::hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("bad hash {s:?}"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Hash32(out))
    }
}

/// Where a chunk's shards are, and how to check them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// Bytes of data in the chunk (before padding and encoding).
    pub size: u64,
    pub redundancy: Redundancy,
    /// blake3 of every shard, by index (`redundancy.total_shards()` entries).
    pub shard_hashes: Vec<Hash32>,
    /// Shard index -> node holding it. A missing index is a lost shard.
    pub shards: BTreeMap<u32, NodeId>,
}

impl ChunkMeta {
    pub fn is_degraded(&self) -> bool {
        self.shards.len() < self.redundancy.total_shards()
    }
}

/// A run of a file's bytes stored in (a prefix of) one chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Offset of the run in the file.
    pub offset: u64,
    pub len: u64,
    pub chunk: ChunkId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InodeKind {
    /// `implicit`: created by a put of a deeper key, removed again when empty.
    Dir { implicit: bool },
    File {
        size: u64,
        extents: Vec<Extent>,
        #[serde(default)]
        attrs: ObjectAttrs,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub kind: InodeKind,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
    /// Bumped on every change of the file's content.
    pub generation: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub ino: Ino,
    pub redundancy: Redundancy,
}

/// A storage node as registered (liveness and capacity are tracked by the leader, in
/// memory, from heartbeats).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub addr: String,
    pub zone: String,
    /// The operator asked to empty this node: nothing new is placed on it and its shards
    /// are moved elsewhere while it keeps serving them.
    #[serde(default)]
    pub draining: bool,
    /// Relative share of data this node should hold, in percent (100 = normal; 200 holds
    /// twice as much as a normal node). Scales its placement weight and its rebalance
    /// target.
    #[serde(default = "default_weight_pct")]
    pub weight_pct: u32,
}

fn default_weight_pct() -> u32 {
    100
}

/// A shard to delete from a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcEntry {
    pub chunk: ChunkId,
    pub index: u32,
    pub node: NodeId,
}

/// One object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub generation: u64,
    pub mtime: u64,
}

/// An object's content, for readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectView {
    pub entry: ObjectEntry,
    pub attrs: ObjectAttrs,
    pub chunks: Vec<(ChunkId, ChunkMeta)>,
}
