//! Buckets and objects: creating and deleting buckets, committing, looking up and
//! deleting objects (with their preconditions).

use cairn_common::names::{validate_bucket, validate_key};
use cairn_common::{ChunkId, Redundancy};

use super::{
    invalid, Bucket, ChunkMeta, CommandResult, Extent, Ino, Inode, InodeKind, Namespace,
    NamespaceError, ObjectAttrs, ObjectEntry, ObjectView, Precondition, OBJECT_DIR_MODE,
    OBJECT_FILE_MODE, ROOT_INO,
};

pub(super) const NS_PER_SEC: u64 = 1_000_000_000;

/// Object commands carry seconds; inodes keep nanoseconds.
pub(super) fn secs_to_ns(secs: u64) -> u64 {
    secs.saturating_mul(NS_PER_SEC)
}

impl Namespace {
    pub(super) fn create_bucket(
        &mut self,
        name: String,
        redundancy: Redundancy,
        now_ns: u64,
    ) -> Result<Ino, NamespaceError> {
        validate_bucket(&name).map_err(invalid)?;
        redundancy
            .validate()
            .map_err(|e| NamespaceError::InvalidName {
                reason: e.to_string(),
            })?;
        if self.buckets.contains_key(&name) {
            return Err(NamespaceError::BucketExists { name });
        }
        let generation = self.bump_generation();
        let ino = self.alloc_inode(Inode::new(
            InodeKind::Dir { implicit: false },
            now_ns,
            generation,
            OBJECT_DIR_MODE,
            (0, 0),
            0,
        ));
        self.inodes.get_mut(&ino).expect("just inserted").bucket = ino;
        self.add_entry(ROOT_INO, &name, ino);
        self.touch(ROOT_INO, now_ns);
        self.bucket_names.insert(ino, name.clone());
        self.buckets.insert(name, Bucket { ino, redundancy });
        Ok(ino)
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
        let now_ns = secs_to_ns(mtime);
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
            if let Some(reason) = self.new_chunk_problem(id, chunk) {
                return Err(NamespaceError::BadChunk {
                    chunk: *id,
                    reason: reason.into(),
                });
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
                Some(ino) => match self.entry_inode(ino).kind {
                    InodeKind::Dir { .. } => dir = ino,
                    InodeKind::File { .. } | InodeKind::Symlink { .. } | InodeKind::Special(_) => {
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
                if matches!(self.entry_inode(ino).kind, InodeKind::Dir { .. }) {
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
                    let generation = self.bump_generation();
                    let ino = self.alloc_inode(Inode::new(
                        InodeKind::Dir { implicit: true },
                        now_ns,
                        generation,
                        OBJECT_DIR_MODE,
                        (0, 0),
                        bucket_ino,
                    ));
                    self.add_entry(dir, part, ino);
                    self.touch(dir, now_ns);
                    ino
                }
            };
        }
        let mut extents = Vec::with_capacity(chunks.len());
        let mut offset = 0;
        for (id, chunk) in chunks {
            if chunk.size > 0 {
                extents.push(Extent {
                    offset,
                    len: chunk.size,
                    chunk: id,
                    chunk_offset: 0,
                });
                self.ref_chunk(id);
            }
            offset += chunk.size;
            self.put_chunk(id, chunk);
        }
        let generation = self.bump_generation();
        let kind = InodeKind::File {
            size,
            extents,
            attrs,
        };
        match self.child(dir, file_name[0]) {
            Some(ino) => {
                // A new version of the content; the inode keeps its owner, mode, links.
                let inode = self
                    .inodes
                    .get_mut(&ino)
                    .expect("dentry points at an inode");
                let old = std::mem::replace(&mut inode.kind, kind);
                inode.mtime_ns = now_ns;
                inode.ctime_ns = now_ns;
                inode.generation = generation;
                self.release_content(ino, old);
            }
            None => {
                let ino = self.alloc_inode(Inode::new(
                    kind,
                    now_ns,
                    generation,
                    OBJECT_FILE_MODE,
                    (0, 0),
                    bucket_ino,
                ));
                self.add_entry(dir, file_name[0], ino);
                self.touch(dir, now_ns);
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
        if !self.dir_is_empty(ino) {
            return Err(NamespaceError::BucketNotEmpty { name: name.into() });
        }
        self.remove_entry(ROOT_INO, name);
        self.inodes.remove(&ino);
        self.buckets.remove(&name.to_string());
        self.bucket_names.remove(&ino);
        Ok(CommandResult::Done)
    }

    pub(super) fn delete_object(
        &mut self,
        bucket: &str,
        key: &str,
        if_generation: Option<u64>,
        mtime: u64,
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
        if matches!(self.entry_inode(ino).kind, InodeKind::Dir { .. }) {
            return Err(NamespaceError::IsDirectory {
                bucket: bucket.into(),
                path: key.into(),
            });
        }
        let parent = *path.last().expect("bucket at least");
        let now_ns = secs_to_ns(mtime);
        self.remove_entry(parent, parts[parts.len() - 1]);
        self.touch(parent, now_ns);
        self.drop_link(ino, now_ns);
        // Remove implicit directories left empty, innermost first.
        for depth in (1..path.len()).rev() {
            let dir = path[depth];
            let empty = self.dir_is_empty(dir);
            let implicit = matches!(
                self.entry_inode(dir).kind,
                InodeKind::Dir { implicit: true }
            );
            if !(empty && implicit) {
                break;
            }
            self.remove_entry(path[depth - 1], parts[depth - 1]);
            self.touch(path[depth - 1], now_ns);
            self.inodes.remove(&dir);
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
        let inode = self.entry_inode(ino);
        let (size, extents, attrs) = match &inode.kind {
            InodeKind::File {
                size,
                extents,
                attrs,
            } => (size, extents, attrs),
            InodeKind::Dir { .. } => {
                return Err(NamespaceError::IsDirectory {
                    bucket: bucket.into(),
                    path: key.into(),
                })
            }
            InodeKind::Symlink { .. } | InodeKind::Special(_) => {
                return Err(NamespaceError::NoSuchKey {
                    bucket: bucket.into(),
                    key: key.into(),
                })
            }
        };
        Ok(ObjectView {
            entry: ObjectEntry {
                key: key.into(),
                size: *size,
                generation: inode.generation,
                mtime: inode.mtime_ns / NS_PER_SEC,
            },
            attrs: attrs.clone(),
            extents: extents.clone(),
            chunks: self.chunks_of(extents),
            inline: self.inline_of(ino),
        })
    }

    /// Why `chunk` cannot be committed as a new chunk, if it cannot.
    pub(super) fn new_chunk_problem(
        &self,
        id: &ChunkId,
        chunk: &ChunkMeta,
    ) -> Option<&'static str> {
        let shards = chunk.redundancy.total_shards();
        if self.retired.contains_key(id) {
            Some("chunk was already released (a stale retry)")
        } else if self.chunks.contains_key(id) {
            Some("chunk id is already in use")
        } else if chunk.size == 0 {
            Some("empty chunk")
        } else if chunk.redundancy.validate().is_err() {
            Some("invalid redundancy scheme")
        } else if chunk.shard_hashes.len() != shards {
            Some("wrong number of shard hashes")
        } else if chunk.shards.keys().any(|&i| i as usize >= shards) {
            Some("shard index out of range")
        } else if chunk.shards.len() < chunk.redundancy.min_durable_shards() {
            Some("fewer durable shards than the scheme's minimum")
        } else {
            None
        }
    }

    /// Every chunk `extents` use, once each, in order of first use.
    pub(super) fn chunks_of(&self, extents: &[Extent]) -> Vec<(ChunkId, ChunkMeta)> {
        let mut seen = std::collections::BTreeSet::new();
        extents
            .iter()
            .filter(|e| seen.insert(e.chunk))
            .map(|e| {
                let meta = self
                    .chunks
                    .get(&e.chunk)
                    .expect("a file's chunks exist while it references them");
                (e.chunk, meta)
            })
            .collect()
    }

    /// Sets a directory's mtime and ctime (an entry was added or removed).
    /// The inode a directory entry names (an entry always names one).
    pub(super) fn entry_inode(&self, ino: Ino) -> Inode {
        self.inodes
            .get(&ino)
            .expect("a directory entry names an inode")
    }

    pub(super) fn touch(&mut self, dir: Ino, now_ns: u64) {
        if let Some(inode) = self.inodes.get_mut(&dir) {
            inode.mtime_ns = now_ns;
            inode.ctime_ns = now_ns;
        }
    }

    /// Whether any object references this chunk.
    pub fn chunk_known(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// Whether this chunk was committed once and has since been released (a late retry
    /// of its commit is answered, or refused, by the state machine itself).
    pub fn chunk_released(&self, id: &ChunkId) -> bool {
        self.retired.contains_key(id)
    }
}
