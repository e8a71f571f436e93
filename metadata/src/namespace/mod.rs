//! The metadata state: buckets, the namespace tree (inodes, directory entries, extents),
//! chunk placements, the node registry and the garbage-collection queue. Pure data and
//! logic: applying commands and answering queries. No IO, no Raft, no gRPC.
//!
//! Buckets are the top-level directories of one POSIX-shaped tree. An object key
//! `a/b/c` is the file `c` in directory `b` in directory `a` of its bucket; directories
//! created implicitly by a put are removed again when their last entry is deleted.

mod bulk;
mod command;
mod extents;
mod fs;
mod fs_content;
#[cfg(test)]
mod fs_tests;
mod fs_tree;
#[cfg(test)]
mod fuzz_tests;
pub mod grants;
mod list;
mod nodes;
mod objects;
mod repair;
mod sessions;
#[cfg(test)]
mod tests;
pub mod tokens;
mod types;

use std::collections::{BTreeMap, BTreeSet};

use cairn_common::fs::SessionId;
use cairn_common::locks::LockTable;
use cairn_common::{ChunkId, NodeId};
use serde::{Deserialize, Serialize};

pub use command::{Command, CommandResult};
pub use fs::default_redundancy;
pub use list::{ListPage, ListQuery};
pub use types::*;

pub use cairn_common::fs::{Ino, ROOT_INO};

/// Mode bits of inodes created through the object API.
pub const OBJECT_FILE_MODE: u32 = 0o644;
pub const OBJECT_DIR_MODE: u32 = 0o755;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    next_ino: Ino,
    next_generation: u64,
    next_gc_seq: u64,
    inodes: BTreeMap<Ino, Inode>,
    /// Directory inode -> name -> child inode.
    children: BTreeMap<Ino, BTreeMap<String, Ino>>,
    buckets: BTreeMap<String, Bucket>,
    chunks: BTreeMap<ChunkId, ChunkMeta>,
    degraded: BTreeSet<ChunkId>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    gc: BTreeMap<u64, GcEntry>,
    /// Cluster-wide settings an operator changes at run time.
    #[serde(default)]
    settings: ClusterSettings,
    /// Recently released chunk ids (id -> release order), so that a late retry of a
    /// commit cannot point an object at a chunk whose shards are being deleted.
    #[serde(default)]
    retired: BTreeMap<ChunkId, u64>,
    #[serde(default)]
    retired_order: BTreeMap<u64, ChunkId>,
    /// Extents pointing into each chunk; a chunk is released when its count drops to 0.
    #[serde(default)]
    chunk_refs: BTreeMap<ChunkId, u32>,
    /// Open mount sessions; ids below `next_session` that are absent here are fenced.
    #[serde(default)]
    sessions: BTreeMap<SessionId, SessionRecord>,
    #[serde(default)]
    next_session: SessionId,
    /// Sessions that have an inode open (an unlinked inode lives while any holds it).
    #[serde(default)]
    holds: BTreeMap<Ino, std::collections::BTreeSet<SessionId>>,
    /// Byte-range and `flock` locks, by inode.
    #[serde(default)]
    locks: BTreeMap<Ino, LockTable<LockHolder>>,
    /// Bucket -> user -> access.
    #[serde(default)]
    grants: BTreeMap<String, BTreeMap<String, grants::Access>>,
    /// API tokens by id (only their secrets' hashes).
    #[serde(default)]
    tokens: BTreeMap<String, tokens::TokenRecord>,
}

/// How many released chunk ids are remembered (oldest forgotten first).
const RETIRED_MAX: usize = 1_000_000;

/// Cluster-wide settings changed at run time (replicated, so every leader uses them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Repair bandwidth limit set by `cairn repair throttle`; `None`: the leader's
    /// start-up value.
    pub repair_bytes_per_sec: Option<u64>,
}

/// Counts for `cairn status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub buckets: u64,
    /// Every inode: files, directories (buckets and the root included), symlinks and
    /// special files.
    pub inodes: u64,
    pub objects: u64,
    pub chunks: u64,
    pub degraded_chunks: u64,
    pub pending_gc: u64,
}

impl Namespace {
    pub fn new() -> Self {
        let mut ns = Namespace {
            next_ino: ROOT_INO + 1,
            next_generation: 1,
            next_session: 1,
            ..Default::default()
        };
        ns.inodes.insert(
            ROOT_INO,
            Inode::new(
                InodeKind::Dir { implicit: false },
                0,
                0,
                OBJECT_DIR_MODE,
                (0, 0),
                0,
            ),
        );
        ns.children.insert(ROOT_INO, BTreeMap::new());
        ns
    }

    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        let result = match cmd {
            Command::CreateBucket {
                name,
                redundancy,
                mtime,
            } => self
                .create_bucket(name, redundancy, objects::secs_to_ns(mtime))
                .map(|_| CommandResult::Done),
            Command::RegisterNode {
                id,
                addr,
                zone,
                disk,
                replace_empty,
            } => self.register_node(id, addr, zone, disk, replace_empty),
            Command::SetDraining { node, draining } => match self.nodes.get_mut(&node) {
                Some(record) => {
                    record.draining = draining;
                    Ok(CommandResult::Done)
                }
                None => Err(NamespaceError::NoSuchNode { node }),
            },
            Command::RemoveNode { node } => self.remove_node(node),
            Command::SetNodeWeight { node, weight_pct } => match self.nodes.get_mut(&node) {
                Some(record) => {
                    record.weight_pct = weight_pct.clamp(1, 10_000);
                    Ok(CommandResult::Done)
                }
                None => Err(NamespaceError::NoSuchNode { node }),
            },
            Command::SetGrant {
                bucket,
                user,
                access,
            } => self.set_grant(bucket, user, access),
            Command::AddToken { id, record } => self.add_token(id, record),
            Command::RevokeToken { id } => self.revoke_token(&id),
            Command::SetRepairThrottle { bytes_per_sec } => {
                self.settings.repair_bytes_per_sec = Some(bytes_per_sec);
                Ok(CommandResult::Done)
            }
            Command::CommitObject {
                bucket,
                key,
                size,
                chunks,
                attrs,
                precondition,
                mtime,
            } => self.commit_object(&bucket, &key, size, chunks, attrs, precondition, mtime),
            Command::DeleteObject {
                bucket,
                key,
                if_generation,
                mtime,
            } => self.delete_object(&bucket, &key, if_generation, mtime),
            Command::DeleteBucket { name } => {
                let deleted = self.delete_bucket(&name);
                if deleted.is_ok() {
                    self.drop_grants(&name);
                }
                deleted
            }
            Command::ShardLost { chunk, index, node } => {
                if let Some(meta) = self.chunks.get_mut(&chunk) {
                    if meta.shards.get(&index) == Some(&node) {
                        meta.shards.remove(&index);
                        self.degraded.insert(chunk);
                    }
                }
                Ok(CommandResult::Done)
            }
            Command::RepairChunk {
                chunk,
                placed,
                dropped,
            } => self.repair_chunk(chunk, placed, dropped),
            Command::Fs {
                session,
                change,
                now_ns,
                seq,
            } => return CommandResult::Fs(self.apply_numbered(session, seq, change, now_ns)),
            Command::OpenSession { name, now_ns } => {
                return CommandResult::Fs(Ok(self.open_session(name, now_ns)))
            }
            Command::EndSession { session } => {
                self.end_session(session);
                Ok(CommandResult::Done)
            }
            Command::GcDone { seqs } => {
                for seq in seqs {
                    self.gc.remove(&seq);
                }
                Ok(CommandResult::Done)
            }
        };
        result.unwrap_or_else(CommandResult::Rejected)
    }

    pub(super) fn remove_entry(&mut self, dir: Ino, name: &str) {
        if let Some(c) = self.children.get_mut(&dir) {
            c.remove(name);
        }
    }

    /// Drops the extents' references to their chunks, releasing unreferenced chunks.
    pub(super) fn release_extents(&mut self, kind: InodeKind) {
        let InodeKind::File { extents, .. } = kind else {
            return;
        };
        for extent in extents {
            self.unref_chunk(extent.chunk);
        }
    }

    /// One more extent points into `chunk`.
    pub(super) fn ref_chunk(&mut self, chunk: ChunkId) {
        *self.chunk_refs.entry(chunk).or_insert(0) += 1;
    }

    /// One extent fewer points into `chunk`; at zero, queue its shards for deletion.
    pub(super) fn unref_chunk(&mut self, chunk: ChunkId) {
        let left = match self.chunk_refs.get_mut(&chunk) {
            Some(n) if *n > 1 => {
                *n -= 1;
                return;
            }
            _ => 0,
        };
        debug_assert_eq!(left, 0);
        self.chunk_refs.remove(&chunk);
        self.release_chunk(chunk);
    }

    /// Forgets a chunk and queues every shard of it for deletion.
    pub(super) fn release_chunk(&mut self, id: ChunkId) {
        if let Some(chunk) = self.chunks.remove(&id) {
            self.degraded.remove(&id);
            self.retire(id);
            for (index, node) in chunk.shards {
                self.queue_gc(GcEntry {
                    chunk: id,
                    index,
                    node,
                });
            }
        }
    }

    fn retire(&mut self, chunk: ChunkId) {
        let seq = self
            .retired_order
            .last_key_value()
            .map_or(0, |(s, _)| s + 1);
        self.retired.insert(chunk, seq);
        self.retired_order.insert(seq, chunk);
        while self.retired.len() > RETIRED_MAX {
            let Some((_, oldest)) = self.retired_order.pop_first() else {
                break;
            };
            self.retired.remove(&oldest);
        }
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Shards placed on each node (nodes without shards are absent).
    pub fn shards_per_node(&self) -> BTreeMap<NodeId, u64> {
        let mut counts = BTreeMap::new();
        for chunk in self.chunks.values() {
            for node in chunk.shards.values() {
                *counts.entry(*node).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Chunks with a shard on `node`, at most `limit`.
    pub fn chunks_on_node(&self, node: NodeId, limit: usize) -> Vec<(ChunkId, ChunkMeta)> {
        self.chunks
            .iter()
            .filter(|(_, c)| c.shards.values().any(|n| *n == node))
            .take(limit)
            .map(|(id, c)| (*id, c.clone()))
            .collect()
    }

    fn remove_node(&mut self, node: NodeId) -> Result<CommandResult, NamespaceError> {
        if !self.nodes.contains_key(&node) {
            return Err(NamespaceError::NoSuchNode { node });
        }
        let shards = self.shards_per_node().get(&node).copied().unwrap_or(0);
        if shards > 0 {
            return Err(NamespaceError::NodeInUse { node, shards });
        }
        self.nodes.remove(&node);
        Ok(CommandResult::Done)
    }

    /// Queues one shard for deletion from its node.
    pub(super) fn queue_gc(&mut self, entry: GcEntry) {
        let seq = self.next_gc_seq;
        self.next_gc_seq += 1;
        self.gc.insert(seq, entry);
    }

    /// A new inode with the next generation (a directory gets its empty entry table).
    pub(super) fn alloc_inode(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        if inode.kind.is_dir() {
            self.children.insert(ino, BTreeMap::new());
        }
        self.inodes.insert(ino, inode);
        ino
    }

    /// Adds `name -> ino` to directory `dir`.
    pub(super) fn add_entry(&mut self, dir: Ino, name: &str, ino: Ino) {
        self.children
            .entry(dir)
            .or_default()
            .insert(name.to_string(), ino);
    }

    /// Removes one link to a file or symlink; frees it when no link and no open session
    /// is left.
    pub(super) fn drop_link(&mut self, ino: Ino, now_ns: u64) {
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return;
        };
        inode.nlink = inode.nlink.saturating_sub(1);
        inode.ctime_ns = now_ns;
        self.free_if_unused(ino);
    }

    /// Frees a file with no links and no holders (its chunks go to garbage collection).
    pub(super) fn free_if_unused(&mut self, ino: Ino) {
        let unused = self.inodes.get(&ino).is_some_and(|i| i.nlink == 0)
            && self.holds.get(&ino).is_none_or(|h| h.is_empty());
        if unused {
            self.holds.remove(&ino);
            self.locks.remove(&ino);
            if let Some(inode) = self.inodes.remove(&ino) {
                self.release_extents(inode.kind);
            }
        }
    }

    pub(super) fn bump_generation(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    pub(super) fn child(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.children.get(&dir)?.get(name).copied()
    }

    pub fn bucket(&self, name: &str) -> Result<&Bucket, NamespaceError> {
        self.buckets
            .get(name)
            .ok_or_else(|| NamespaceError::NoSuchBucket { name: name.into() })
    }

    /// The name of the bucket inode `ino` lives in (`None` for the root and for an
    /// inode that does not exist).
    pub fn bucket_name_of(&self, ino: Ino) -> Option<&str> {
        let bucket = self.inodes.get(&ino)?.bucket;
        self.buckets
            .iter()
            .find(|(_, b)| b.ino == bucket)
            .map(|(name, _)| name.as_str())
    }

    pub fn buckets(&self) -> impl Iterator<Item = (&String, &Bucket)> {
        self.buckets.iter()
    }

    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeRecord> {
        &self.nodes
    }

    pub fn chunk(&self, id: &ChunkId) -> Option<&ChunkMeta> {
        self.chunks.get(id)
    }

    /// Up to `limit` queued deletions whose node passes `ready` (a node that is down
    /// must not hold up deletions on every other node).
    pub fn gc_entries(&self, limit: usize, ready: impl Fn(NodeId) -> bool) -> Vec<(u64, GcEntry)> {
        self.gc
            .iter()
            .filter(|(_, e)| ready(e.node))
            .take(limit)
            .map(|(s, e)| (*s, e.clone()))
            .collect()
    }

    /// Whether `entry` names a shard that is placed again (its deletion is obsolete).
    pub fn is_live(&self, entry: &GcEntry) -> bool {
        self.chunks
            .get(&entry.chunk)
            .is_some_and(|c| c.shards.get(&entry.index) == Some(&entry.node))
    }

    /// Drops queued deletions of a shard that is being placed again.
    pub(super) fn cancel_gc(&mut self, chunk: ChunkId, index: u32, node: NodeId) {
        self.gc
            .retain(|_, e| !(e.chunk == chunk && e.index == index && e.node == node));
    }

    pub fn counts(&self) -> Counts {
        let objects = self
            .inodes
            .values()
            .filter(|i| matches!(i.kind, InodeKind::File { .. }))
            .count();
        Counts {
            buckets: self.buckets.len() as u64,
            inodes: self.inodes.len() as u64,
            objects: objects as u64,
            chunks: self.chunks.len() as u64,
            degraded_chunks: self.degraded.len() as u64,
            pending_gc: self.gc.len() as u64,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> NamespaceError {
    NamespaceError::InvalidName {
        reason: e.to_string(),
    }
}
