//! The namespace's data types: inodes, extents, chunk placements, node records, object
//! attributes, preconditions and the rejection errors. Plain data, no logic beyond
//! small helpers.

use std::collections::BTreeMap;

pub use cairn_common::chunk::{ChunkMeta, Hash32};
use cairn_common::fs::{FileType, SessionId, Special};
use cairn_common::{ChunkId, DiskId, NodeId, Redundancy};
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
    #[error(
        "storage node {node} is registered with data directory {registered}, but this one is \
         {presented}: it was wiped or replaced, or the disk is not mounted. Mount the node's \
         own disk, or start the node with --replace-empty to join as a new, empty node (its \
         shards are then rebuilt from the other nodes)"
    )]
    WrongDisk {
        node: NodeId,
        registered: DiskId,
        presented: DiskId,
    },
    #[error("API token {id} already exists")]
    TokenExists { id: String },
    #[error("API token {id} does not exist (revoked already?)")]
    NoSuchToken { id: String },
    /// Never written by Cairn (`group_commit.rs` never nests batches, and decoding
    /// refuses one): a corrupt or foreign log entry.
    #[error("a command batch inside a command batch; no command of it was applied")]
    NestedBatch,
    #[error("invalid setting: {reason}")]
    InvalidSetting { reason: String },
}

fn describe_generation(current: Option<u64>) -> String {
    match current {
        Some(g) => format!("current generation {g}"),
        None => "no such object".to_string(),
    }
}

pub use cairn_common::Precondition;

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

/// A run of a file's bytes, stored at `chunk_offset` in one chunk (several extents may
/// share a chunk after a partial overwrite or truncation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Offset of the run in the file.
    pub offset: u64,
    pub len: u64,
    pub chunk: ChunkId,
    #[serde(default)]
    pub chunk_offset: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InodeKind {
    /// `implicit`: created by a put of a deeper key, removed again when empty.
    Dir {
        implicit: bool,
    },
    File {
        size: u64,
        /// Sorted by offset, not overlapping; gaps are holes (read as zeros).
        extents: Vec<Extent>,
        #[serde(default)]
        attrs: ObjectAttrs,
    },
    Symlink {
        target: String,
    },
    /// A FIFO, socket or device node: only its type and device number are stored.
    Special(Special),
}

impl InodeKind {
    pub fn file_type(&self) -> FileType {
        match self {
            InodeKind::Dir { .. } => FileType::Dir,
            InodeKind::File { .. } => FileType::File,
            InodeKind::Symlink { .. } => FileType::Symlink,
            InodeKind::Special(special) => special.file_type(),
        }
    }

    /// A device node's device number, else 0.
    pub fn rdev(&self) -> u32 {
        match self {
            InodeKind::Special(special) => special.rdev(),
            _ => 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, InodeKind::Dir { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub kind: InodeKind,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    pub atime_ns: u64,
    pub ctime_ns: u64,
    /// Bumped on every change of the file's content.
    pub generation: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Directory entries naming a file or symlink; for a directory 2 + its
    /// subdirectories (kept as entries come and go).
    pub nlink: u32,
    /// The bucket directory this inode lives in (its own number for a bucket, 0 for the
    /// root). Renames and links never cross buckets, so it never changes.
    pub bucket: super::Ino,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Inode {
    /// A new inode with one link, all three times `now_ns`, owned by `(uid, gid)`.
    pub fn new(
        kind: InodeKind,
        now_ns: u64,
        generation: u64,
        mode: u32,
        (uid, gid): (u32, u32),
        bucket: super::Ino,
    ) -> Self {
        // A directory's links: its entry, its own `.`, and each subdirectory's `..`.
        let nlink = if kind.is_dir() { 2 } else { 1 };
        Inode {
            kind,
            mtime_ns: now_ns,
            atime_ns: now_ns,
            ctime_ns: now_ns,
            generation,
            mode: mode & 0o7777,
            uid,
            gid,
            nlink,
            bucket,
            xattrs: BTreeMap::new(),
        }
    }
}

/// A mount's session, open while its lease is renewed (the lease itself is tracked by
/// the leader, in memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub name: String,
    pub opened_ns: u64,
    /// Every answer of this session with a lower sequence number is forgotten, so the
    /// next forgetting scans from here: a scan from 0 stepped over every answer ever
    /// deleted (RocksDB tombstones, thousands per second in a memtable not yet flushed).
    pub answers_from: u64,
}

/// Who holds a lock in the cluster: a session and the mount's lock owner within it.
pub type LockHolder = (SessionId, u64);

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
    /// The identity of the node's data directory, as it registered (`None`: registered
    /// by a node older than disk ids; the next registration that presents one sets it).
    /// A registration presenting another one is refused unless it asks to replace the
    /// node (`Command::RegisterNode::replace_empty`).
    #[serde(default)]
    pub disk: Option<DiskId>,
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
    /// The object's byte runs in order; gaps between them read as its inline bytes, and
    /// past those as zeros.
    pub extents: Vec<Extent>,
    /// Every chunk the extents use, once each, in order of first use.
    pub chunks: Vec<(ChunkId, ChunkMeta)>,
    /// The object's inline bytes (a file written through a mount), under its extents.
    pub inline: Vec<u8>,
}
