//! The metadata state: buckets, the namespace tree (inodes, directory entries, extents),
//! chunk placements, the node registry and the garbage-collection queue. Pure data and
//! logic: applying commands and answering queries. No IO, no Raft, no gRPC.
//!
//! Buckets are the top-level directories of one POSIX-shaped tree. An object key
//! `a/b/c` is the file `c` in directory `b` in directory `a` of its bucket; directories
//! created implicitly by a put are removed again when their last entry is deleted.

use std::collections::{BTreeMap, BTreeSet};

use cairn_common::names::{validate_bucket, validate_key};
use cairn_common::{ChunkId, NodeId, Redundancy};
use serde::{Deserialize, Serialize};

use crate::types::{Command, CommandResult};

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

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
    fn holds(self, current: Option<u64>) -> bool {
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

/// One page of a listing: objects and (with a delimiter) common prefixes, each in byte
/// order; `truncated` when more entries follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
}

/// Where a listing starts and how it rolls keys up.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// Only entries sorting after this.
    pub start_after: &'a str,
    /// Also skip entries starting with this (resuming after a common prefix).
    pub skip_prefix: &'a str,
    pub delimiter: &'a str,
    pub limit: usize,
}

impl ListQuery<'_> {
    fn wants(&self, item: &str) -> bool {
        item > self.start_after
            && (self.skip_prefix.is_empty() || !item.starts_with(self.skip_prefix))
    }

    /// Whether some key starting with `dir` (a directory's key prefix) may be wanted.
    fn may_want_below(&self, dir: &str) -> bool {
        let all_before = dir < self.start_after && !self.start_after.starts_with(dir);
        let all_skipped = !self.skip_prefix.is_empty() && dir.starts_with(self.skip_prefix);
        !all_before && !all_skipped
    }
}

enum ListItem {
    Object(ObjectEntry),
    Prefix(String),
}

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
}

/// Counts for `cairn status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub buckets: u64,
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
            ..Default::default()
        };
        ns.inodes.insert(
            ROOT_INO,
            Inode {
                kind: InodeKind::Dir { implicit: false },
                mtime: 0,
                generation: 0,
            },
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
            } => self.create_bucket(name, redundancy, mtime),
            Command::RegisterNode { id, addr, zone } => {
                self.nodes.insert(id, NodeRecord { addr, zone });
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
            } => self.delete_object(&bucket, &key, if_generation),
            Command::DeleteBucket { name } => self.delete_bucket(&name),
            Command::ShardLost { chunk, index, node } => {
                if let Some(meta) = self.chunks.get_mut(&chunk) {
                    if meta.shards.get(&index) == Some(&node) {
                        meta.shards.remove(&index);
                        self.degraded.insert(chunk);
                    }
                }
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

    fn create_bucket(
        &mut self,
        name: String,
        redundancy: Redundancy,
        mtime: u64,
    ) -> Result<CommandResult, NamespaceError> {
        validate_bucket(&name).map_err(invalid)?;
        redundancy
            .validate()
            .map_err(|e| NamespaceError::InvalidName {
                reason: e.to_string(),
            })?;
        if self.buckets.contains_key(&name) {
            return Err(NamespaceError::BucketExists { name });
        }
        let ino = self.alloc_inode(InodeKind::Dir { implicit: false }, mtime);
        self.children
            .entry(ROOT_INO)
            .or_default()
            .insert(name.clone(), ino);
        self.buckets.insert(name, Bucket { ino, redundancy });
        Ok(CommandResult::Done)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_object(
        &mut self,
        bucket: &str,
        key: &str,
        size: u64,
        chunks: Vec<(ChunkId, ChunkMeta)>,
        attrs: ObjectAttrs,
        precondition: Option<Precondition>,
        mtime: u64,
    ) -> Result<CommandResult, NamespaceError> {
        validate_key(key).map_err(invalid)?;
        let bucket_ino = self.bucket(bucket)?.ino;
        if let Some(generation) = self.already_committed(bucket, key, &chunks) {
            return Ok(CommandResult::Committed { generation });
        }
        self.check_precondition(bucket, key, precondition)?;
        let total: u64 = chunks.iter().map(|(_, c)| c.size).sum();
        if total != size {
            return Err(NamespaceError::SizeMismatch { size, total });
        }
        for (id, chunk) in &chunks {
            let bad = |reason: &str| NamespaceError::BadChunk {
                chunk: *id,
                reason: reason.into(),
            };
            let shards = chunk.redundancy.total_shards();
            if self.chunks.contains_key(id) {
                return Err(bad("chunk id is already in use"));
            }
            if chunk.shard_hashes.len() != shards {
                return Err(bad("wrong number of shard hashes"));
            }
            if chunk.shards.keys().any(|&i| i as usize >= shards) {
                return Err(bad("shard index out of range"));
            }
            if chunk.shards.len() < chunk.redundancy.min_durable_shards() {
                return Err(bad("fewer durable shards than the scheme's minimum"));
            }
        }

        // Walk (creating implicit directories) to the parent, checking every step first
        // so a rejected commit changes nothing.
        let parts: Vec<&str> = key.split('/').collect();
        let (dirs, file_name) = parts.split_at(parts.len() - 1);
        let mut dir = bucket_ino;
        let mut existing_path = true;
        for (depth, part) in dirs.iter().enumerate() {
            if !existing_path {
                break;
            }
            match self.child(dir, part) {
                Some(ino) => match self.inodes[&ino].kind {
                    InodeKind::Dir { .. } => dir = ino,
                    InodeKind::File { .. } => {
                        return Err(NamespaceError::NotDirectory {
                            bucket: bucket.into(),
                            path: parts[..=depth].join("/"),
                        })
                    }
                },
                None => existing_path = false,
            }
        }
        if existing_path {
            if let Some(ino) = self.child(dir, file_name[0]) {
                if matches!(self.inodes[&ino].kind, InodeKind::Dir { .. }) {
                    return Err(NamespaceError::IsDirectory {
                        bucket: bucket.into(),
                        path: key.into(),
                    });
                }
            }
        }

        let mut dir = bucket_ino;
        for part in dirs {
            dir = match self.child(dir, part) {
                Some(ino) => ino,
                None => {
                    let ino = self.alloc_inode(InodeKind::Dir { implicit: true }, mtime);
                    self.children
                        .entry(dir)
                        .or_default()
                        .insert(part.to_string(), ino);
                    ino
                }
            };
        }
        let mut extents = Vec::with_capacity(chunks.len());
        let mut offset = 0;
        for (id, chunk) in chunks {
            extents.push(Extent {
                offset,
                len: chunk.size,
                chunk: id,
            });
            offset += chunk.size;
            if chunk.is_degraded() {
                self.degraded.insert(id);
            }
            self.chunks.insert(id, chunk);
        }
        let generation = self.bump_generation();
        let kind = InodeKind::File {
            size,
            extents,
            attrs,
        };
        match self.child(dir, file_name[0]) {
            Some(ino) => {
                let old = std::mem::replace(
                    self.inodes
                        .get_mut(&ino)
                        .expect("dentry points at an inode"),
                    Inode {
                        kind,
                        mtime,
                        generation,
                    },
                );
                self.release_extents(old.kind);
            }
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.inodes.insert(
                    ino,
                    Inode {
                        kind,
                        mtime,
                        generation,
                    },
                );
                self.children
                    .entry(dir)
                    .or_default()
                    .insert(file_name[0].to_string(), ino);
            }
        }
        Ok(CommandResult::Committed { generation })
    }

    /// A client that lost the reply to a commit retries it: the same chunk list at the
    /// same key is the same commit, answered with the generation it got.
    fn already_committed(
        &self,
        bucket: &str,
        key: &str,
        chunks: &[(ChunkId, ChunkMeta)],
    ) -> Option<u64> {
        let (first, _) = chunks.first()?;
        self.chunks.get(first)?;
        let view = self.lookup(bucket, key).ok()?;
        let same = view.chunks.len() == chunks.len()
            && view.chunks.iter().zip(chunks).all(|(a, b)| a.0 == b.0);
        same.then_some(view.entry.generation)
    }

    /// The generation of the object at `key`, if there is one.
    fn current_generation(&self, bucket: &str, key: &str) -> Option<u64> {
        self.lookup(bucket, key).ok().map(|v| v.entry.generation)
    }

    fn check_precondition(
        &self,
        bucket: &str,
        key: &str,
        precondition: Option<Precondition>,
    ) -> Result<(), NamespaceError> {
        let Some(wanted) = precondition else {
            return Ok(());
        };
        let current = self.current_generation(bucket, key);
        if wanted.holds(current) {
            Ok(())
        } else {
            Err(NamespaceError::PreconditionFailed {
                bucket: bucket.into(),
                key: key.into(),
                wanted,
                current,
            })
        }
    }

    fn delete_bucket(&mut self, name: &str) -> Result<CommandResult, NamespaceError> {
        let ino = self.bucket(name)?.ino;
        if self.children.get(&ino).is_some_and(|c| !c.is_empty()) {
            return Err(NamespaceError::BucketNotEmpty { name: name.into() });
        }
        self.remove_entry(ROOT_INO, name);
        self.children.remove(&ino);
        self.inodes.remove(&ino);
        self.buckets.remove(name);
        Ok(CommandResult::Done)
    }

    fn delete_object(
        &mut self,
        bucket: &str,
        key: &str,
        if_generation: Option<u64>,
    ) -> Result<CommandResult, NamespaceError> {
        validate_key(key).map_err(invalid)?;
        let bucket_ino = self.bucket(bucket)?.ino;
        if let Some(g) = if_generation {
            self.check_precondition(bucket, key, Some(Precondition::IfGeneration(g)))?;
        }
        let no_such = || NamespaceError::NoSuchKey {
            bucket: bucket.into(),
            key: key.into(),
        };
        let parts: Vec<&str> = key.split('/').collect();
        let mut path = vec![bucket_ino];
        for part in &parts {
            let dir = *path.last().expect("path starts at the bucket");
            path.push(self.child(dir, part).ok_or_else(no_such)?);
        }
        let ino = path.pop().expect("key has a component");
        if matches!(self.inodes[&ino].kind, InodeKind::Dir { .. }) {
            return Err(NamespaceError::IsDirectory {
                bucket: bucket.into(),
                path: key.into(),
            });
        }
        let parent = *path.last().expect("bucket at least");
        self.remove_entry(parent, parts[parts.len() - 1]);
        let inode = self.inodes.remove(&ino).expect("dentry points at an inode");
        self.release_extents(inode.kind);
        // Remove implicit directories left empty, innermost first.
        for depth in (1..path.len()).rev() {
            let dir = path[depth];
            let empty = self.children.get(&dir).is_none_or(|c| c.is_empty());
            let implicit = matches!(self.inodes[&dir].kind, InodeKind::Dir { implicit: true });
            if !(empty && implicit) {
                break;
            }
            self.remove_entry(path[depth - 1], parts[depth - 1]);
            self.inodes.remove(&dir);
            self.children.remove(&dir);
        }
        Ok(CommandResult::Done)
    }

    fn remove_entry(&mut self, dir: Ino, name: &str) {
        if let Some(c) = self.children.get_mut(&dir) {
            c.remove(name);
        }
    }

    /// Queues every shard of the extents' chunks for deletion.
    fn release_extents(&mut self, kind: InodeKind) {
        let InodeKind::File { extents, .. } = kind else {
            return;
        };
        for extent in extents {
            if let Some(chunk) = self.chunks.remove(&extent.chunk) {
                self.degraded.remove(&extent.chunk);
                for (index, node) in chunk.shards {
                    let seq = self.next_gc_seq;
                    self.next_gc_seq += 1;
                    self.gc.insert(
                        seq,
                        GcEntry {
                            chunk: extent.chunk,
                            index,
                            node,
                        },
                    );
                }
            }
        }
    }

    fn alloc_inode(&mut self, kind: InodeKind, mtime: u64) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        if matches!(kind, InodeKind::Dir { .. }) {
            self.children.insert(ino, BTreeMap::new());
        }
        let generation = self.bump_generation();
        self.inodes.insert(
            ino,
            Inode {
                kind,
                mtime,
                generation,
            },
        );
        ino
    }

    fn bump_generation(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    fn child(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.children.get(&dir)?.get(name).copied()
    }

    // ---- queries ----

    pub fn bucket(&self, name: &str) -> Result<&Bucket, NamespaceError> {
        self.buckets
            .get(name)
            .ok_or_else(|| NamespaceError::NoSuchBucket { name: name.into() })
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

    pub fn gc_entries(&self, limit: usize) -> Vec<(u64, GcEntry)> {
        self.gc
            .iter()
            .take(limit)
            .map(|(s, e)| (*s, e.clone()))
            .collect()
    }

    pub fn counts(&self) -> Counts {
        let objects = self
            .inodes
            .values()
            .filter(|i| matches!(i.kind, InodeKind::File { .. }))
            .count();
        Counts {
            buckets: self.buckets.len() as u64,
            objects: objects as u64,
            chunks: self.chunks.len() as u64,
            degraded_chunks: self.degraded.len() as u64,
            pending_gc: self.gc.len() as u64,
        }
    }

    pub fn lookup(&self, bucket: &str, key: &str) -> Result<ObjectView, NamespaceError> {
        validate_key(key).map_err(invalid)?;
        let mut ino = self.bucket(bucket)?.ino;
        for part in key.split('/') {
            ino = self
                .child(ino, part)
                .ok_or_else(|| NamespaceError::NoSuchKey {
                    bucket: bucket.into(),
                    key: key.into(),
                })?;
        }
        let inode = &self.inodes[&ino];
        let InodeKind::File {
            size,
            extents,
            attrs,
        } = &inode.kind
        else {
            return Err(NamespaceError::IsDirectory {
                bucket: bucket.into(),
                path: key.into(),
            });
        };
        let chunks = extents
            .iter()
            .map(|e| {
                let meta = self
                    .chunks
                    .get(&e.chunk)
                    .expect("a file's chunks exist while it references them");
                (e.chunk, meta.clone())
            })
            .collect();
        Ok(ObjectView {
            entry: ObjectEntry {
                key: key.into(),
                size: *size,
                generation: inode.generation,
                mtime: inode.mtime,
            },
            attrs: attrs.clone(),
            chunks,
        })
    }

    /// Whether any object references this chunk.
    pub fn chunk_known(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// One page of the objects of `bucket` matching `query`, in byte order of the whole
    /// key. With a delimiter, keys containing it after the prefix are rolled up into
    /// common prefixes (for "/" these are exactly the directories below the prefix).
    pub fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, NamespaceError> {
        let mut dir = self.bucket(bucket)?.ino;
        // Descend through the complete directory components of the prefix.
        let (dir_part, name_prefix) = match query.prefix.rfind('/') {
            Some(i) => (&query.prefix[..i], &query.prefix[i + 1..]),
            None => ("", query.prefix),
        };
        let mut base = String::new();
        if !dir_part.is_empty() {
            for part in dir_part.split('/') {
                match self.child(dir, part) {
                    Some(ino) if matches!(self.inodes[&ino].kind, InodeKind::Dir { .. }) => {
                        dir = ino;
                        base.push_str(part);
                        base.push('/');
                    }
                    _ => return Ok(ListPage::default()),
                }
            }
        }
        let mut walk = Walk {
            ns: self,
            query,
            last_prefix: None,
            out: Vec::new(),
        };
        walk.dir(dir, &base, name_prefix, true);
        let mut items = walk.out;
        let truncated = items.len() > query.limit;
        items.truncate(query.limit);
        let mut page = ListPage {
            truncated,
            ..ListPage::default()
        };
        for item in items {
            match item {
                ListItem::Object(o) => page.objects.push(o),
                ListItem::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
    }
}

/// A listing in progress: visits directories in key order until it has one entry more
/// than the query's limit (which tells that the page is truncated).
struct Walk<'a> {
    ns: &'a Namespace,
    query: &'a ListQuery<'a>,
    last_prefix: Option<String>,
    out: Vec<ListItem>,
}

impl Walk<'_> {
    fn full(&self) -> bool {
        self.out.len() > self.query.limit
    }

    fn dir(&mut self, dir: Ino, base: &str, name_prefix: &str, top: bool) {
        let ns = self.ns;
        let Some(children) = ns.children.get(&dir) else {
            return;
        };
        // A directory `d` holds keys `d/...`, so it sorts as "d/" among its siblings.
        let mut entries: Vec<(String, Ino, bool)> = children
            .range(name_prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(name_prefix))
            .map(|(name, &ino)| {
                let is_dir = matches!(ns.inodes[&ino].kind, InodeKind::Dir { .. });
                let sort_key = if is_dir {
                    format!("{base}{name}/")
                } else {
                    format!("{base}{name}")
                };
                (sort_key, ino, is_dir)
            })
            .collect();
        entries.sort();
        for (full, ino, is_dir) in entries {
            if self.full() {
                return;
            }
            if is_dir {
                if top && self.query.delimiter == "/" {
                    if self.query.wants(&full) {
                        self.out.push(ListItem::Prefix(full));
                    }
                } else if self.query.may_want_below(&full) {
                    self.dir(ino, &full, "", false);
                }
            } else if self.query.wants(&full) {
                self.file(full, ino);
            }
        }
    }

    fn file(&mut self, key: String, ino: Ino) {
        let query = self.query;
        if !query.delimiter.is_empty() {
            let rest = &key[query.prefix.len()..];
            if let Some(i) = rest.find(query.delimiter) {
                let prefix = key[..query.prefix.len() + i + query.delimiter.len()].to_string();
                if self.last_prefix.as_deref() != Some(prefix.as_str()) && query.wants(&prefix) {
                    self.last_prefix = Some(prefix.clone());
                    self.out.push(ListItem::Prefix(prefix));
                }
                return;
            }
        }
        let inode = &self.ns.inodes[&ino];
        if let InodeKind::File { size, .. } = inode.kind {
            self.out.push(ListItem::Object(ObjectEntry {
                key,
                size,
                generation: inode.generation,
                mtime: inode.mtime,
            }));
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> NamespaceError {
    NamespaceError::InvalidName {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: Redundancy = Redundancy::Ec { k: 2, m: 1 };

    fn ns_with_bucket() -> Namespace {
        let mut ns = Namespace::new();
        let r = ns.apply(Command::CreateBucket {
            name: "bkt".into(),
            redundancy: EC,
            mtime: 1,
        });
        assert_eq!(r, CommandResult::Done);
        ns
    }

    fn chunk(size: u64, shards: u32) -> (ChunkId, ChunkMeta) {
        (
            ChunkId::random(),
            ChunkMeta {
                size,
                redundancy: EC,
                shard_hashes: vec![Hash32([0; 32]); 3],
                shards: (0..shards).map(|i| (i, i as u64 + 1)).collect(),
            },
        )
    }

    fn put(ns: &mut Namespace, key: &str, size: u64) -> CommandResult {
        ns.apply(Command::CommitObject {
            bucket: "bkt".into(),
            key: key.into(),
            size,
            chunks: if size == 0 {
                vec![]
            } else {
                vec![chunk(size, 3)]
            },
            attrs: ObjectAttrs::default(),
            precondition: None,
            mtime: 2,
        })
    }

    fn keys(ns: &Namespace, prefix: &str, after: &str, limit: usize) -> (Vec<String>, bool) {
        let page = ns
            .list(
                "bkt",
                &ListQuery {
                    prefix,
                    start_after: after,
                    limit,
                    ..ListQuery::default()
                },
            )
            .unwrap();
        (
            page.objects.into_iter().map(|e| e.key).collect(),
            page.truncated,
        )
    }

    #[test]
    fn put_then_lookup_returns_the_chunks() {
        let mut ns = ns_with_bucket();
        assert!(matches!(
            put(&mut ns, "a/b/c", 10),
            CommandResult::Committed { .. }
        ));
        let view = ns.lookup("bkt", "a/b/c").unwrap();
        assert_eq!(view.entry.size, 10);
        assert_eq!(view.chunks.len(), 1);
        assert!(matches!(
            ns.lookup("bkt", "a/b"),
            Err(NamespaceError::IsDirectory { .. })
        ));
        assert!(matches!(
            ns.lookup("bkt", "nope"),
            Err(NamespaceError::NoSuchKey { .. })
        ));
        assert!(matches!(
            ns.lookup("nob", "x"),
            Err(NamespaceError::NoSuchBucket { .. })
        ));
    }

    #[test]
    fn overwrite_queues_old_shards_for_gc_and_bumps_generation() {
        let mut ns = ns_with_bucket();
        let CommandResult::Committed { generation: g1 } = put(&mut ns, "k", 5) else {
            panic!()
        };
        let CommandResult::Committed { generation: g2 } = put(&mut ns, "k", 6) else {
            panic!()
        };
        assert!(g2 > g1);
        assert_eq!(ns.counts().pending_gc, 3);
        assert_eq!(ns.counts().chunks, 1);
        assert_eq!(ns.lookup("bkt", "k").unwrap().entry.size, 6);
    }

    #[test]
    fn recommitting_the_same_chunks_is_idempotent() {
        let mut ns = ns_with_bucket();
        let c = chunk(10, 3);
        let commit = Command::CommitObject {
            bucket: "bkt".into(),
            key: "k".into(),
            size: 10,
            chunks: vec![c],
            attrs: ObjectAttrs::default(),
            precondition: None,
            mtime: 0,
        };
        let first = ns.apply(commit.clone());
        assert!(matches!(first, CommandResult::Committed { .. }));
        assert_eq!(ns.apply(commit), first);
        assert_eq!(ns.counts().pending_gc, 0);
    }

    #[test]
    fn file_and_directory_cannot_share_a_name() {
        let mut ns = ns_with_bucket();
        put(&mut ns, "a/b", 1);
        let before = ns.clone();
        assert!(matches!(
            put(&mut ns, "a/b/c", 1),
            CommandResult::Rejected(NamespaceError::NotDirectory { .. })
        ));
        assert!(matches!(
            put(&mut ns, "a", 1),
            CommandResult::Rejected(NamespaceError::IsDirectory { .. })
        ));
        assert_eq!(ns, before, "rejected commits change nothing");
    }

    #[test]
    fn delete_removes_empty_implicit_directories() {
        let mut ns = ns_with_bucket();
        put(&mut ns, "x/y/z", 1);
        put(&mut ns, "x/keep", 1);
        ns.apply(Command::DeleteObject {
            bucket: "bkt".into(),
            key: "x/y/z".into(),
            if_generation: None,
        });
        assert_eq!(keys(&ns, "", "", 10).0, vec!["x/keep"]);
        assert!(ns.lookup("bkt", "x/y").is_err());
        ns.apply(Command::DeleteObject {
            bucket: "bkt".into(),
            key: "x/keep".into(),
            if_generation: None,
        });
        assert_eq!(ns.counts().objects, 0);
        assert_eq!(ns.children[&ns.buckets["bkt"].ino].len(), 0);
        assert_eq!(ns.counts().pending_gc, 6);
        assert_eq!(
            ns.apply(Command::DeleteObject {
                bucket: "bkt".into(),
                key: "x/keep".into(),
                if_generation: None,
            }),
            CommandResult::Rejected(NamespaceError::NoSuchKey {
                bucket: "bkt".into(),
                key: "x/keep".into()
            })
        );
    }

    #[test]
    fn list_is_in_byte_order_with_prefix_and_pagination() {
        let mut ns = ns_with_bucket();
        for k in ["a/b", "a-c", "a/a/z", "b", "ab", "a/c"] {
            put(&mut ns, k, 1);
        }
        let mut sorted = vec!["a/b", "a-c", "a/a/z", "b", "ab", "a/c"];
        sorted.sort();
        assert_eq!(keys(&ns, "", "", 100).0, sorted);
        assert_eq!(keys(&ns, "a/", "", 100).0, vec!["a/a/z", "a/b", "a/c"]);
        assert_eq!(keys(&ns, "a", "", 100).0.len(), 5);
        assert_eq!(keys(&ns, "a/a", "", 100).0, vec!["a/a/z"]);
        assert_eq!(keys(&ns, "zz/", "", 100).0, Vec::<String>::new());
        // Page through two at a time.
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let (page, more) = keys(&ns, "", &after, 2);
            all.extend(page.clone());
            if !more {
                break;
            }
            after = page.last().unwrap().clone();
        }
        assert_eq!(all, sorted);
    }

    #[test]
    fn commit_checks_sizes_and_durable_minimum() {
        let mut ns = ns_with_bucket();
        let r = ns.apply(Command::CommitObject {
            bucket: "bkt".into(),
            key: "k".into(),
            size: 99,
            chunks: vec![chunk(10, 3)],
            attrs: ObjectAttrs::default(),
            precondition: None,
            mtime: 0,
        });
        assert!(matches!(
            r,
            CommandResult::Rejected(NamespaceError::SizeMismatch { .. })
        ));
        let r = ns.apply(Command::CommitObject {
            bucket: "bkt".into(),
            key: "k".into(),
            size: 10,
            chunks: vec![chunk(10, 2)],
            attrs: ObjectAttrs::default(),
            precondition: None,
            mtime: 0,
        });
        assert!(matches!(
            r,
            CommandResult::Rejected(NamespaceError::BadChunk { .. })
        ));
    }

    #[test]
    fn shard_lost_marks_the_chunk_degraded() {
        let mut ns = ns_with_bucket();
        put(&mut ns, "k", 10);
        let (id, _) = ns.lookup("bkt", "k").unwrap().chunks[0].clone();
        ns.apply(Command::ShardLost {
            chunk: id,
            index: 0,
            node: 1,
        });
        assert_eq!(ns.counts().degraded_chunks, 1);
        assert!(!ns.chunk(&id).unwrap().shards.contains_key(&0));
    }

    #[test]
    fn namespace_survives_a_json_round_trip() {
        let mut ns = ns_with_bucket();
        put(&mut ns, "a/b", 3);
        let text = serde_json::to_vec(&ns).unwrap();
        let back: Namespace = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, ns);
    }

    fn commit_with(ns: &mut Namespace, key: &str, pre: Option<Precondition>) -> CommandResult {
        ns.apply(Command::CommitObject {
            bucket: "bkt".into(),
            key: key.into(),
            size: 1,
            chunks: vec![chunk(1, 3)],
            attrs: ObjectAttrs::default(),
            precondition: pre,
            mtime: 0,
        })
    }

    #[test]
    fn preconditions_allow_exactly_one_writer() {
        let mut ns = ns_with_bucket();
        let CommandResult::Committed { generation: g1 } =
            commit_with(&mut ns, "k", Some(Precondition::IfAbsent))
        else {
            panic!("first if-absent put must win")
        };
        let lost = commit_with(&mut ns, "k", Some(Precondition::IfAbsent));
        assert!(matches!(
            lost,
            CommandResult::Rejected(NamespaceError::PreconditionFailed { current: Some(g), .. }) if g == g1
        ));
        let CommandResult::Committed { generation: g2 } =
            commit_with(&mut ns, "k", Some(Precondition::IfGeneration(g1)))
        else {
            panic!("matching generation must win")
        };
        let stale = commit_with(&mut ns, "k", Some(Precondition::IfGeneration(g1)));
        assert!(matches!(
            stale,
            CommandResult::Rejected(NamespaceError::PreconditionFailed { .. })
        ));
        let gone = ns.apply(Command::DeleteObject {
            bucket: "bkt".into(),
            key: "k".into(),
            if_generation: Some(g1),
        });
        assert!(matches!(
            gone,
            CommandResult::Rejected(NamespaceError::PreconditionFailed { .. })
        ));
        let gone = ns.apply(Command::DeleteObject {
            bucket: "bkt".into(),
            key: "k".into(),
            if_generation: Some(g2),
        });
        assert_eq!(gone, CommandResult::Done);
    }

    #[test]
    fn only_empty_buckets_can_be_deleted() {
        let mut ns = ns_with_bucket();
        put(&mut ns, "a/b", 1);
        let refused = ns.apply(Command::DeleteBucket { name: "bkt".into() });
        assert!(matches!(
            refused,
            CommandResult::Rejected(NamespaceError::BucketNotEmpty { .. })
        ));
        ns.apply(Command::DeleteObject {
            bucket: "bkt".into(),
            key: "a/b".into(),
            if_generation: None,
        });
        assert_eq!(
            ns.apply(Command::DeleteBucket { name: "bkt".into() }),
            CommandResult::Done
        );
        assert!(ns.bucket("bkt").is_err());
        assert_eq!(ns.children[&ROOT_INO].len(), 0);
    }

    fn page(ns: &Namespace, q: ListQuery) -> (Vec<String>, Vec<String>, bool) {
        let p = ns.list("bkt", &q).unwrap();
        (
            p.objects.into_iter().map(|o| o.key).collect(),
            p.common_prefixes,
            p.truncated,
        )
    }

    #[test]
    fn delimiter_rolls_keys_up_into_common_prefixes() {
        let mut ns = ns_with_bucket();
        for k in [
            "a/1",
            "a/2/x",
            "b",
            "c/d/e",
            "c-d",
            "photos/2026/x.jpg",
            "photos/2025/y.jpg",
        ] {
            put(&mut ns, k, 1);
        }
        let q = |prefix, delimiter| ListQuery {
            prefix,
            delimiter,
            limit: 100,
            ..ListQuery::default()
        };
        assert_eq!(
            page(&ns, q("", "/")),
            (
                vec!["b".into(), "c-d".into()],
                vec!["a/".into(), "c/".into(), "photos/".into()],
                false
            )
        );
        assert_eq!(
            page(&ns, q("a/", "/")),
            (vec!["a/1".into()], vec!["a/2/".into()], false)
        );
        assert_eq!(
            page(&ns, q("photos/", "/")).1,
            vec!["photos/2025/".to_string(), "photos/2026/".to_string()]
        );
        // A delimiter other than "/" is rolled up key by key.
        assert_eq!(
            page(&ns, q("c", "-")),
            (vec!["c/d/e".into()], vec!["c-".into()], false)
        );
        // Paging one entry at a time over objects and prefixes together.
        let mut seen = Vec::new();
        let (mut after, mut skip) = (String::new(), String::new());
        loop {
            let p = ns
                .list(
                    "bkt",
                    &ListQuery {
                        prefix: "",
                        delimiter: "/",
                        start_after: &after,
                        skip_prefix: &skip,
                        limit: 1,
                    },
                )
                .unwrap();
            if let Some(o) = p.objects.first() {
                seen.push(o.key.clone());
                after = o.key.clone();
                skip.clear();
            }
            if let Some(cp) = p.common_prefixes.first() {
                seen.push(cp.clone());
                after = cp.clone();
                skip = cp.clone();
            }
            if !p.truncated {
                break;
            }
        }
        assert_eq!(seen, vec!["a/", "b", "c-d", "c/", "photos/"]);
    }
}
