//! Buckets and objects: creating and deleting buckets, committing, looking up and
//! deleting objects (with their preconditions).

use cairn_common::names::{validate_bucket, validate_key};
use cairn_common::{ChunkId, Redundancy};

use super::{
    invalid, Bucket, ChunkMeta, CommandResult, Extent, Inode, InodeKind, Namespace, NamespaceError,
    ObjectAttrs, ObjectEntry, ObjectView, Precondition, ROOT_INO,
};

impl Namespace {
    pub(super) fn create_bucket(
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
    pub(super) fn commit_object(
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
        // Checked: sizes come from the network, and a panic here would repeat on every
        // replica and at every replay of the log.
        let total = chunks
            .iter()
            .try_fold(0u64, |sum, (_, c)| sum.checked_add(c.size))
            .ok_or(NamespaceError::SizeMismatch {
                size,
                total: u64::MAX,
            })?;
        if total != size {
            return Err(NamespaceError::SizeMismatch { size, total });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (id, chunk) in &chunks {
            if !seen.insert(*id) {
                return Err(NamespaceError::BadChunk {
                    chunk: *id,
                    reason: "listed twice in one object".into(),
                });
            }
            if self.retired.contains_key(id) {
                return Err(NamespaceError::BadChunk {
                    chunk: *id,
                    reason: "chunk was already released (a stale retry)".into(),
                });
            }
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
                let ino = self.insert_inode(kind, mtime, generation);
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
    pub(super) fn already_committed(
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
    pub(super) fn current_generation(&self, bucket: &str, key: &str) -> Option<u64> {
        self.lookup(bucket, key).ok().map(|v| v.entry.generation)
    }

    pub(super) fn check_precondition(
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

    pub(super) fn delete_bucket(&mut self, name: &str) -> Result<CommandResult, NamespaceError> {
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

    pub(super) fn delete_object(
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
}
