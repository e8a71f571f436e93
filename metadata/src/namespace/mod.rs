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
mod inline;
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
use std::ops::Bound;

use cairn_common::fs::{FsResult, SessionId};
use cairn_common::locks::LockTable;
use cairn_common::{ChunkId, NodeId};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::state_db::table::count_change;
use crate::state_db::{
    StateDb, Table, CF_ANSWERS, CF_BUCKETS, CF_BUCKET_NAMES, CF_CHUNKS, CF_CHUNK_REFS, CF_DEGRADED,
    CF_DENTRIES, CF_GC, CF_GRANTS, CF_HOLDS, CF_INLINE, CF_INODES, CF_LOCKS, CF_NODES,
    CF_NODE_SHARDS, CF_RETIRED, CF_RETIRED_ORDER, CF_SESSIONS, CF_TOKENS,
};

pub use command::{Batch, Command, CommandResult};
pub use fs::default_redundancy;
pub use inline::{InlineLimits, DEFAULT_INLINE_MAX_BYTES};
pub use list::{ListPage, ListQuery};
pub use types::*;

pub use cairn_common::fs::{Ino, ROOT_INO};

/// Mode bits of inodes created through the object API.
pub const OBJECT_FILE_MODE: u32 = 0o644;
pub const OBJECT_DIR_MODE: u32 = 0o755;

/// The namespace: typed tables over the state database, plus the counters every
/// command may advance. Changes made by `apply` stay in the tables' overlays until
/// `write_batch` turns them into one RocksDB write batch.
pub struct Namespace {
    db: StateDb,
    counters: Counters,
    /// Cluster-wide settings an operator changes at run time.
    settings: ClusterSettings,
    inodes: Table<Ino, Inode>,
    /// (directory inode, name) -> child inode.
    children: Table<(Ino, String), Ino>,
    buckets: Table<String, Bucket>,
    /// Bucket root inode -> bucket name.
    bucket_names: Table<Ino, String>,
    chunks: Table<ChunkId, ChunkMeta>,
    degraded: Table<ChunkId, ()>,
    /// (node, chunk, index) of every placed shard, derived from `chunks` when written.
    node_shards: Table<(NodeId, ChunkId, u32), ()>,
    nodes: Table<NodeId, NodeRecord>,
    gc: Table<u64, GcEntry>,
    /// Recently released chunk ids (id -> release order), so that a late retry of a
    /// commit cannot point an object at a chunk whose shards are being deleted.
    retired: Table<ChunkId, u64>,
    retired_order: Table<u64, ChunkId>,
    /// Extents pointing into each chunk; a chunk is released when its count drops to 0.
    chunk_refs: Table<ChunkId, u32>,
    /// Open mount sessions; ids below `next_session` that are absent here are fenced.
    sessions: Table<SessionId, SessionRecord>,
    /// (session, sequence number) -> the first answer to a numbered change.
    answers: Table<(SessionId, u64), FsResult>,
    /// Sessions that have an inode open (an unlinked inode lives while any holds it).
    holds: Table<Ino, BTreeSet<SessionId>>,
    /// Byte-range and `flock` locks, by inode.
    locks: Table<Ino, LockTable<LockHolder>>,
    /// Bucket -> user -> access.
    grants: Table<String, BTreeMap<String, grants::Access>>,
    /// API tokens by id (only their secrets' hashes).
    tokens: Table<String, tokens::TokenRecord>,
    /// Files' inline bytes (`inline.rs`), encoded as one byte string (a `Vec<u8>` would
    /// go through serde one byte at a time).
    inline: Table<Ino, ByteBuf>,
}

/// The namespace's counters: the next ids to hand out (advanced by commands, so equal on
/// every replica) and the sizes of the large tables (kept as they are written).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counters {
    next_ino: Ino,
    next_generation: u64,
    next_gc_seq: u64,
    next_session: SessionId,
    next_retired_seq: u64,
    retired: u64,
    /// Shards placed on each node.
    node_shards: BTreeMap<NodeId, u64>,
    inodes: u64,
    files: u64,
    chunks: u64,
    degraded: u64,
    gc: u64,
    /// Inline bytes of every file together.
    inline_bytes: u64,
}

const KEY_COUNTERS: &[u8] = b"counters";
const KEY_SETTINGS: &[u8] = b"settings";

/// How many released chunk ids are remembered (oldest forgotten first).
const RETIRED_MAX: u64 = 1_000_000;

/// Cluster-wide settings changed at run time (replicated, so every leader uses them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Repair bandwidth limit set by `cairn repair throttle`; `None`: the leader's
    /// start-up value.
    pub repair_bytes_per_sec: Option<u64>,
    /// Inline threshold and budget set by `cairn inline set`; `None`: the defaults.
    pub inline: Option<InlineLimits>,
}

/// Counts for `cairn status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub buckets: u64,
    /// Inodes of every kind, the root and bucket directories included.
    pub inodes: u64,
    pub objects: u64,
    pub chunks: u64,
    pub degraded_chunks: u64,
    pub pending_gc: u64,
    /// File bytes kept inline, in the metadata (`inline.rs`).
    pub inline_bytes: u64,
}

impl Namespace {
    /// The namespace stored in `db` (an empty database gets the root directory).
    pub fn open(db: StateDb) -> Self {
        let table = |cf| Table::new(db.clone(), cf);
        let mut ns = Namespace {
            counters: db.get_meta(KEY_COUNTERS).unwrap_or_default(),
            settings: db.get_meta(KEY_SETTINGS).unwrap_or_default(),
            inodes: table(CF_INODES),
            children: Table::new(db.clone(), CF_DENTRIES),
            buckets: Table::new(db.clone(), CF_BUCKETS),
            bucket_names: Table::new(db.clone(), CF_BUCKET_NAMES),
            chunks: Table::new(db.clone(), CF_CHUNKS),
            degraded: Table::new(db.clone(), CF_DEGRADED),
            node_shards: Table::new(db.clone(), CF_NODE_SHARDS),
            nodes: Table::new(db.clone(), CF_NODES),
            gc: Table::new(db.clone(), CF_GC),
            retired: Table::new(db.clone(), CF_RETIRED),
            retired_order: Table::new(db.clone(), CF_RETIRED_ORDER),
            chunk_refs: Table::new(db.clone(), CF_CHUNK_REFS),
            sessions: Table::new(db.clone(), CF_SESSIONS),
            answers: Table::new(db.clone(), CF_ANSWERS),
            holds: Table::new(db.clone(), CF_HOLDS),
            locks: Table::new(db.clone(), CF_LOCKS),
            grants: Table::new(db.clone(), CF_GRANTS),
            tokens: Table::new(db.clone(), CF_TOKENS),
            inline: Table::new(db.clone(), CF_INLINE),
            db,
        };
        if ns.counters.next_ino == 0 {
            ns.counters.next_ino = ROOT_INO + 1;
            ns.counters.next_generation = 1;
            ns.counters.next_session = 1;
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
        }
        ns
    }

    /// An empty namespace in a temporary database (unit tests).
    #[cfg(test)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Namespace::open(StateDb::temporary())
    }

    /// Applies `cmd` and writes it to the database at once (unit tests).
    #[cfg(test)]
    pub fn apply_and_write(&mut self, cmd: Command) -> CommandResult {
        let result = self.apply(cmd);
        self.write_pending();
        result
    }

    /// Writes what was applied since the last batch (unit tests).
    #[cfg(test)]
    pub fn write_pending(&mut self) {
        let batch = self.write_batch();
        self.db.write(batch).expect("write the state database");
    }

    /// The digest after writing what is pending (unit tests).
    #[cfg(test)]
    pub fn state_digest(&mut self) -> blake3::Hash {
        self.write_pending();
        self.db.digest().1
    }

    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Every change applied since the last batch, as one write batch (with the counters
    /// and settings); the tables' overlays are empty afterwards. The caller adds the
    /// applied log id and writes it.
    pub fn write_batch(&mut self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for change in self.inodes.take_changes() {
            let is_file = |i: &Option<Inode>| {
                i.as_ref()
                    .is_some_and(|i| matches!(i.kind, InodeKind::File { .. }))
            };
            count_change(
                &mut self.counters.inodes,
                change.old.is_some(),
                change.new.is_some(),
            );
            count_change(
                &mut self.counters.files,
                is_file(&change.old),
                is_file(&change.new),
            );
            self.inodes
                .write(&mut batch, &change.key, change.new.as_ref());
        }
        self.chunks
            .flush_counted(&mut batch, &mut self.counters.chunks);
        self.degraded
            .flush_counted(&mut batch, &mut self.counters.degraded);
        self.gc.flush_counted(&mut batch, &mut self.counters.gc);
        self.node_shards.flush(&mut batch);
        self.children.flush(&mut batch);
        self.buckets.flush(&mut batch);
        self.bucket_names.flush(&mut batch);
        self.nodes.flush(&mut batch);
        self.retired.flush(&mut batch);
        self.retired_order.flush(&mut batch);
        self.chunk_refs.flush(&mut batch);
        self.sessions.flush(&mut batch);
        self.answers.flush(&mut batch);
        self.holds.flush(&mut batch);
        self.locks.flush(&mut batch);
        self.grants.flush(&mut batch);
        self.tokens.flush(&mut batch);
        self.inline.flush(&mut batch);
        self.db.put_meta(&mut batch, KEY_COUNTERS, &self.counters);
        self.db.put_meta(&mut batch, KEY_SETTINGS, &self.settings);
        batch
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
            Command::SetInlineLimits(limits) => match limits.problem() {
                Some(reason) => Err(NamespaceError::InvalidSetting { reason }),
                None => {
                    self.settings.inline = Some(limits);
                    Ok(CommandResult::Done)
                }
            },
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
                let placed = self
                    .chunk(&chunk)
                    .and_then(|m| m.shards.get(&index).copied());
                if placed == Some(node) {
                    self.update_chunk(chunk, |meta| meta.shards.remove(&index));
                    self.degraded.insert(chunk, ());
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
            Command::Batch(Batch(commands)) => {
                if commands.iter().any(|c| matches!(c, Command::Batch(_))) {
                    Err(NamespaceError::NestedBatch)
                } else {
                    Ok(CommandResult::Batch(
                        commands.into_iter().map(|c| self.apply(c)).collect(),
                    ))
                }
            }
        };
        result.unwrap_or_else(CommandResult::Rejected)
    }

    pub(super) fn remove_entry(&mut self, dir: Ino, name: &str) {
        if let Some(child) = self.children.remove(&(dir, name.to_string())) {
            self.count_subdir(dir, child, -1);
        }
    }

    /// Keeps a directory's link count (2 + its subdirectories) as an entry naming
    /// `child` comes (`+1`) or goes (`-1`).
    fn count_subdir(&mut self, dir: Ino, child: Ino, delta: i32) {
        if !self.inodes.get(&child).is_some_and(|i| i.kind.is_dir()) {
            return;
        }
        if let Some(parent) = self.inodes.get_mut(&dir) {
            parent.nlink = parent.nlink.saturating_add_signed(delta);
        }
    }

    /// Drops a file's content: its inline bytes, and its extents' references to their
    /// chunks, releasing unreferenced chunks.
    pub(super) fn release_content(&mut self, ino: Ino, kind: InodeKind) {
        let InodeKind::File { extents, .. } = kind else {
            return;
        };
        self.set_inline(ino, Vec::new());
        for extent in extents {
            self.unref_chunk(extent.chunk);
        }
    }

    /// One more extent points into `chunk`.
    pub(super) fn ref_chunk(&mut self, chunk: ChunkId) {
        *self.chunk_refs.entry_or_insert_with(chunk, || 0) += 1;
    }

    /// One extent fewer points into `chunk`; at zero, queue its shards for deletion.
    pub(super) fn unref_chunk(&mut self, chunk: ChunkId) {
        if let Some(n) = self.chunk_refs.get_mut(&chunk) {
            if *n > 1 {
                *n -= 1;
                return;
            }
        }
        self.chunk_refs.remove(&chunk);
        self.release_chunk(chunk);
    }

    /// Records a chunk (new, or with changed placements).
    pub(super) fn put_chunk(&mut self, id: ChunkId, meta: ChunkMeta) {
        if meta.is_degraded() {
            self.degraded.insert(id, ());
        }
        let old = self.chunks.get(&id);
        self.index_placements(id, old.as_ref(), Some(&meta));
        self.chunks.insert(id, meta);
    }

    /// Changes a chunk's record with `change`; `None` if there is no such chunk.
    pub(super) fn update_chunk<R>(
        &mut self,
        id: ChunkId,
        change: impl FnOnce(&mut ChunkMeta) -> R,
    ) -> Option<R> {
        let old = self.chunks.get(&id)?;
        let mut meta = old.clone();
        let result = change(&mut meta);
        self.index_placements(id, Some(&old), Some(&meta));
        self.chunks.insert(id, meta);
        Some(result)
    }

    /// Keeps the node -> shards index and the per-node counts in step with a chunk's
    /// placements (as commands apply, so every command sees them current).
    fn index_placements(&mut self, id: ChunkId, old: Option<&ChunkMeta>, new: Option<&ChunkMeta>) {
        let placed = |c: Option<&ChunkMeta>| -> BTreeSet<(NodeId, ChunkId, u32)> {
            c.iter()
                .flat_map(|c| c.shards.iter())
                .map(|(index, node)| (*node, id, *index))
                .collect()
        };
        let (before, after) = (placed(old), placed(new));
        for gone in before.difference(&after) {
            self.node_shards.remove(gone);
            if let Some(count) = self.counters.node_shards.get_mut(&gone.0) {
                *count -= 1;
                if *count == 0 {
                    self.counters.node_shards.remove(&gone.0);
                }
            }
        }
        for new in after.difference(&before) {
            self.node_shards.insert(*new, ());
            *self.counters.node_shards.entry(new.0).or_default() += 1;
        }
    }

    /// Forgets a chunk and queues every shard of it for deletion.
    pub(super) fn release_chunk(&mut self, id: ChunkId) {
        let chunk = self.chunks.remove(&id);
        self.index_placements(id, chunk.as_ref(), None);
        if let Some(chunk) = chunk {
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
        let seq = self.counters.next_retired_seq;
        self.counters.next_retired_seq += 1;
        if let Some(old_seq) = self.retired.get(&chunk) {
            self.retired_order.remove(&old_seq);
        } else {
            self.counters.retired += 1;
        }
        self.retired.insert(chunk, seq);
        self.retired_order.insert(seq, chunk);
        while self.counters.retired > RETIRED_MAX {
            let Some((oldest_seq, oldest)) = self.retired_order.iter().next() else {
                break;
            };
            self.retired_order.remove(&oldest_seq);
            self.retired.remove(&oldest);
            self.counters.retired -= 1;
        }
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Shards placed on each node (nodes without shards are absent).
    pub fn shards_per_node(&self) -> BTreeMap<NodeId, u64> {
        self.counters.node_shards.clone()
    }

    /// The shards placed on `node` (index `(node, chunk, shard index)`), in chunk order.
    fn placements_on(&self, node: NodeId) -> impl Iterator<Item = (ChunkId, u32)> + '_ {
        self.node_shards
            .range(
                Bound::Included((node, ChunkId([0; 16]), 0)),
                match node.checked_add(1) {
                    Some(next) => Bound::Excluded((next, ChunkId([0; 16]), 0)),
                    None => Bound::Unbounded,
                },
            )
            .map(|((_, chunk, index), ())| (chunk, index))
    }

    /// Chunks with a shard on `node`, at most `limit`.
    pub fn chunks_on_node(&self, node: NodeId, limit: usize) -> Vec<(ChunkId, ChunkMeta)> {
        let mut out: Vec<(ChunkId, ChunkMeta)> = Vec::new();
        for (chunk, _) in self.placements_on(node) {
            if out.len() >= limit {
                break;
            }
            if out.last().is_some_and(|(last, _)| *last == chunk) {
                continue;
            }
            if let Some(meta) = self.chunks.get(&chunk) {
                out.push((chunk, meta));
            }
        }
        out
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
        let seq = self.counters.next_gc_seq;
        self.counters.next_gc_seq += 1;
        self.gc.insert(seq, entry);
    }

    /// A new inode with the next number.
    pub(super) fn alloc_inode(&mut self, inode: Inode) -> Ino {
        let ino = self.counters.next_ino;
        self.counters.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    /// Adds `name -> ino` to directory `dir`.
    pub(super) fn add_entry(&mut self, dir: Ino, name: &str, ino: Ino) {
        if let Some(replaced) = self.child(dir, name) {
            self.count_subdir(dir, replaced, -1);
        }
        self.count_subdir(dir, ino, 1);
        self.children.insert((dir, name.to_string()), ino);
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
                self.release_content(ino, inode.kind);
            }
        }
    }

    pub(super) fn bump_generation(&mut self) -> u64 {
        let g = self.counters.next_generation;
        self.counters.next_generation += 1;
        g
    }

    pub(super) fn child(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.children.get(&(dir, name.to_string()))
    }

    /// The entries of directory `dir` with names in `(from, ..)`, in name order.
    pub(super) fn entries_from(
        &self,
        dir: Ino,
        from: Bound<&str>,
    ) -> impl Iterator<Item = (String, Ino)> + '_ {
        let from = match from {
            Bound::Included(name) => Bound::Included((dir, name.to_string())),
            Bound::Excluded(name) => Bound::Excluded((dir, name.to_string())),
            Bound::Unbounded => Bound::Included((dir, String::new())),
        };
        let to = match dir.checked_add(1) {
            Some(next) => Bound::Excluded((next, String::new())),
            None => Bound::Unbounded,
        };
        self.children
            .range(from, to)
            .map(|((_, name), ino)| (name, ino))
    }

    /// Whether directory `dir` has no entries.
    pub(super) fn dir_is_empty(&self, dir: Ino) -> bool {
        self.entries_from(dir, Bound::Unbounded).next().is_none()
    }

    pub fn bucket(&self, name: &str) -> Result<Bucket, NamespaceError> {
        self.buckets
            .get(&name.to_string())
            .ok_or_else(|| NamespaceError::NoSuchBucket { name: name.into() })
    }

    /// The name of the bucket inode `ino` lives in (`None` for the root and for an
    /// inode that does not exist).
    pub fn bucket_name_of(&self, ino: Ino) -> Option<String> {
        let bucket = self.inodes.get(&ino)?.bucket;
        self.bucket_names.get(&bucket)
    }

    pub fn buckets(&self) -> Vec<(String, Bucket)> {
        self.buckets.iter().collect()
    }

    pub fn nodes(&self) -> BTreeMap<NodeId, NodeRecord> {
        self.nodes.iter().collect()
    }

    pub fn node(&self, node: NodeId) -> Option<NodeRecord> {
        self.nodes.get(&node)
    }

    pub fn chunk(&self, id: &ChunkId) -> Option<ChunkMeta> {
        self.chunks.get(id)
    }

    /// Up to `limit` queued deletions whose node passes `ready` (a node that is down
    /// must not hold up deletions on every other node).
    pub fn gc_entries(&self, limit: usize, ready: impl Fn(NodeId) -> bool) -> Vec<(u64, GcEntry)> {
        self.gc
            .iter()
            .filter(|(_, e)| ready(e.node))
            .take(limit)
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
        let obsolete: Vec<u64> = self
            .gc
            .iter()
            .filter(|(_, e)| e.chunk == chunk && e.index == index && e.node == node)
            .map(|(seq, _)| seq)
            .collect();
        for seq in obsolete {
            self.gc.remove(&seq);
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            buckets: self.buckets.iter().count() as u64,
            inodes: self.counters.inodes,
            objects: self.counters.files,
            chunks: self.counters.chunks,
            degraded_chunks: self.counters.degraded,
            pending_gc: self.counters.gc,
            inline_bytes: self.counters.inline_bytes,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> NamespaceError {
    NamespaceError::InvalidName {
        reason: e.to_string(),
    }
}
