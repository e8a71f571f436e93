//! Inode-level filesystem operations for mounts: create, link, unlink, rename, setattr,
//! writes of extents, xattrs, holds (open files) and locks, and the queries a mount
//! makes. Same tree as the object API: the root's entries are the buckets, so `mkdir`
//! at the root creates a bucket and nothing else may live there. Every change is checked
//! completely before anything is modified, so a refused change changes nothing.

use std::collections::BTreeSet;

use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{
    check_name, AttrChanges, DirEntry, ExtentMap, FileExtent, FsAttr, FsChange, FsErrorKind,
    FsFailure, FsQuery, FsReply, FsResult, Ino, NewNode, SessionId, TimeSet, XattrMode,
    MAX_EXTENTS_PER_WRITE, MAX_FILE_SIZE, SYMLINK_MAX, XATTRS_PER_INODE_MAX, XATTR_NAME_MAX,
    XATTR_VALUE_MAX,
};
use cairn_common::names::validate_bucket;
use cairn_common::{ChunkId, Redundancy};

use super::extents::{self, RefChange};
use super::{Extent, Inode, InodeKind, Namespace, ROOT_INO};

/// Size reported for a directory.
const DIR_SIZE: u64 = 4096;
const S_ISGID: u32 = 0o2000;

type FsRes<T> = Result<T, FsFailure>;

fn fail<T>(kind: FsErrorKind, detail: impl Into<String>) -> FsRes<T> {
    Err(FsFailure::new(kind, detail))
}

/// Redundancy of a bucket made by `mkdir` in a mount's root: ec 4+2 when the cluster
/// has the six nodes it needs, else three (or fewer) replicas.
pub fn default_redundancy(nodes: usize) -> Redundancy {
    if nodes >= 6 {
        Redundancy::DEFAULT
    } else {
        Redundancy::Replicas {
            n: nodes.clamp(2, 3) as u32,
        }
    }
}

impl Namespace {
    pub(super) fn apply_fs(&mut self, session: SessionId, change: FsChange, now: u64) -> FsResult {
        if !self.sessions.contains_key(&session) {
            return fail(
                FsErrorKind::Fenced,
                format!("session {session} is not open (its lease expired or it was closed)"),
            );
        }
        match change {
            FsChange::Create {
                parent,
                name,
                node,
                mode,
                uid,
                gid,
                hold,
            } => {
                let ino = self.fs_create(parent, &name, node, mode, (uid, gid), now)?;
                if !hold {
                    return self.fs_attr(ino).map(FsReply::Attr);
                }
                // Created open: the mount gets the (empty) extent map at once.
                self.holds.entry(ino).or_default().insert(session);
                let (bucket, redundancy) = self.bucket_of(ino)?;
                Ok(FsReply::Extents(Box::new(ExtentMap {
                    attr: self.fs_attr(ino)?,
                    bucket,
                    redundancy,
                    extents: Vec::new(),
                    chunks: Vec::new(),
                    nodes: Vec::new(),
                })))
            }
            FsChange::Link { ino, parent, name } => {
                self.fs_link(ino, parent, &name, now)?;
                self.fs_attr(ino).map(FsReply::Attr)
            }
            FsChange::Unlink { parent, name, dir } => {
                self.fs_unlink(parent, &name, dir, now)?;
                Ok(FsReply::Done)
            }
            FsChange::Rename {
                parent,
                name,
                new_parent,
                new_name,
                noreplace,
                exchange,
            } => {
                self.fs_rename(
                    (parent, &name),
                    (new_parent, &new_name),
                    noreplace,
                    exchange,
                    now,
                )?;
                Ok(FsReply::Done)
            }
            FsChange::SetAttr { ino, changes } => {
                self.fs_setattr(ino, changes, now)?;
                self.fs_attr(ino).map(FsReply::Attr)
            }
            FsChange::Write {
                ino,
                extents,
                chunks,
                size_at_least,
            } => {
                self.fs_write(ino, extents, chunks, size_at_least, now)?;
                self.fs_attr(ino).map(FsReply::Attr)
            }
            FsChange::Compact {
                ino,
                generation,
                extents,
                chunks,
            } => {
                self.fs_compact(ino, generation, extents, chunks)?;
                Ok(FsReply::Done)
            }
            FsChange::SetXattr {
                ino,
                name,
                value,
                mode,
            } => {
                self.fs_setxattr(ino, name, value, mode, now)?;
                Ok(FsReply::Done)
            }
            FsChange::RemoveXattr { ino, name } => {
                let inode = self.inode_mut(ino)?;
                if inode.xattrs.remove(&name).is_none() {
                    return fail(FsErrorKind::NoData, format!("no attribute {name:?}"));
                }
                inode.ctime_ns = now;
                Ok(FsReply::Done)
            }
            FsChange::Hold { ino } => {
                if !matches!(self.inode(ino)?.kind, InodeKind::File { .. }) {
                    return fail(FsErrorKind::IsDir, "only regular files are opened");
                }
                self.holds.entry(ino).or_default().insert(session);
                // An open: the mount needs the file's extents next, so they come along.
                self.fs_query(
                    session,
                    FsQuery::Extents {
                        ino,
                        offset: 0,
                        len: u64::MAX,
                    },
                )
            }
            FsChange::Release { ino } => {
                if let Some(holders) = self.holds.get_mut(&ino) {
                    holders.remove(&session);
                }
                self.free_if_unused(ino);
                if self.holds.get(&ino).is_some_and(BTreeSet::is_empty) {
                    self.holds.remove(&ino);
                }
                Ok(FsReply::Done)
            }
            FsChange::SetLock { ino, owner, lock } => {
                self.inode(ino)?;
                let table = self.locks.entry(ino).or_default();
                let result = table.set((session, owner), &lock);
                if table.is_empty() {
                    self.locks.remove(&ino);
                }
                match result {
                    Ok(()) => Ok(FsReply::Done),
                    Err(cairn_common::locks::LockError::Conflict) => {
                        fail(FsErrorKind::WouldBlock, "lock held by another owner")
                    }
                    Err(cairn_common::locks::LockError::InvalidRange) => fail(
                        FsErrorKind::InvalidArgument,
                        "lock range starts after it ends",
                    ),
                }
            }
            FsChange::UnlockAll { ino, owner } => {
                if let Some(table) = self.locks.get_mut(&ino) {
                    table.unlock_all((session, owner));
                    if table.is_empty() {
                        self.locks.remove(&ino);
                    }
                }
                Ok(FsReply::Done)
            }
        }
    }

    /// Answers a mount's read. `Extents` comes back without node addresses (the service
    /// adds them from its liveness view).
    pub fn fs_query(&self, session: SessionId, query: FsQuery) -> FsResult {
        match query {
            FsQuery::Lookup { parent, name } => {
                check_name(&name)?;
                let children = self.dir_entries(parent)?;
                match children.get(&name) {
                    Some(&ino) => self.fs_attr(ino).map(FsReply::Attr),
                    None => fail(FsErrorKind::NotFound, format!("no entry {name:?}")),
                }
            }
            FsQuery::GetAttr { ino } => self.fs_attr(ino).map(FsReply::Attr),
            FsQuery::ReadDir { ino, after, limit } => {
                let children = self.dir_entries(ino)?;
                let range = match &after {
                    Some(a) => children.range::<String, _>((
                        std::ops::Bound::Excluded(a),
                        std::ops::Bound::Unbounded,
                    )),
                    None => children.range::<String, _>(..),
                };
                let entries = range
                    .take(limit.clamp(1, 10_000) as usize)
                    .filter_map(|(name, ino)| {
                        self.inodes.get(ino).map(|inode| DirEntry {
                            name: name.clone(),
                            ino: *ino,
                            kind: inode.kind.file_type(),
                        })
                    })
                    .collect();
                Ok(FsReply::Entries(entries))
            }
            FsQuery::ReadLink { ino } => match &self.inode(ino)?.kind {
                InodeKind::Symlink { target } => Ok(FsReply::Target(target.clone())),
                _ => fail(FsErrorKind::InvalidArgument, "not a symlink"),
            },
            FsQuery::Extents { ino, offset, len } => {
                let inode = self.inode(ino)?;
                let InodeKind::File { extents, .. } = &inode.kind else {
                    return fail(FsErrorKind::IsDir, "not a regular file");
                };
                let (bucket, redundancy) = self.bucket_of(ino)?;
                let extents = extents::in_range(extents, offset, len);
                Ok(FsReply::Extents(Box::new(ExtentMap {
                    attr: self.fs_attr(ino)?,
                    bucket,
                    redundancy,
                    extents: extents.iter().map(to_file_extent).collect(),
                    chunks: self.chunks_of(extents),
                    nodes: Vec::new(),
                })))
            }
            FsQuery::GetXattr { ino, name } => match self.inode(ino)?.xattrs.get(&name) {
                Some(v) => Ok(FsReply::Value(v.clone())),
                None => fail(FsErrorKind::NoData, format!("no attribute {name:?}")),
            },
            FsQuery::ListXattr { ino } => Ok(FsReply::Names(
                self.inode(ino)?.xattrs.keys().cloned().collect(),
            )),
            FsQuery::GetLock { ino, owner, lock } => {
                self.inode(ino)?;
                let conflict = match self.locks.get(&ino) {
                    Some(table) => table.conflict((session, owner), &lock).map_err(|_| {
                        FsFailure::new(
                            FsErrorKind::InvalidArgument,
                            "lock range starts after it ends",
                        )
                    })?,
                    None => None,
                };
                Ok(FsReply::Lock(conflict))
            }
            FsQuery::StatFs => fail(
                FsErrorKind::InvalidArgument,
                "statfs is answered by the service",
            ),
        }
    }

    /// The name and redundancy of the bucket `ino` lives in.
    fn bucket_of(&self, ino: Ino) -> FsRes<(String, Redundancy)> {
        let bucket = self.inode(ino)?.bucket;
        self.buckets
            .iter()
            .find(|(_, b)| b.ino == bucket)
            .map(|(name, b)| (name.clone(), b.redundancy))
            .ok_or_else(|| FsFailure::new(FsErrorKind::NotFound, "the file's bucket is gone"))
    }

    /// Number of inodes (for `statfs`).
    pub fn inode_count(&self) -> u64 {
        self.inodes.len() as u64
    }

    fn inode(&self, ino: Ino) -> FsRes<&Inode> {
        self.inodes
            .get(&ino)
            .ok_or_else(|| FsFailure::new(FsErrorKind::NotFound, format!("no inode {ino}")))
    }

    fn inode_mut(&mut self, ino: Ino) -> FsRes<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| FsFailure::new(FsErrorKind::NotFound, format!("no inode {ino}")))
    }

    fn dir_entries(&self, ino: Ino) -> FsRes<&std::collections::BTreeMap<String, Ino>> {
        if !self.inode(ino)?.kind.is_dir() {
            return fail(
                FsErrorKind::NotDir,
                format!("inode {ino} is not a directory"),
            );
        }
        self.children
            .get(&ino)
            .ok_or_else(|| FsFailure::new(FsErrorKind::NotFound, format!("no directory {ino}")))
    }

    pub fn fs_attr(&self, ino: Ino) -> FsRes<FsAttr> {
        let inode = self.inode(ino)?;
        let (size, allocated, nlink) = match &inode.kind {
            InodeKind::File { size, extents, .. } => {
                (*size, extents::allocated(extents), inode.nlink)
            }
            InodeKind::Symlink { target } => (target.len() as u64, 0, inode.nlink),
            InodeKind::Dir { .. } => {
                let subdirs = self.children.get(&ino).map_or(0, |c| {
                    c.values()
                        .filter(|i| self.inodes.get(i).is_some_and(|n| n.kind.is_dir()))
                        .count()
                });
                (DIR_SIZE, DIR_SIZE, 2 + subdirs as u32)
            }
        };
        Ok(FsAttr {
            ino,
            kind: inode.kind.file_type(),
            size,
            allocated,
            mode: inode.mode,
            uid: inode.uid,
            gid: inode.gid,
            nlink,
            atime_ns: inode.atime_ns,
            mtime_ns: inode.mtime_ns,
            ctime_ns: inode.ctime_ns,
            generation: inode.generation,
        })
    }

    fn fs_create(
        &mut self,
        parent: Ino,
        name: &str,
        node: NewNode,
        mode: u32,
        (uid, gid): (u32, u32),
        now: u64,
    ) -> FsRes<Ino> {
        check_name(name)?;
        if self.dir_entries(parent)?.contains_key(name) {
            return fail(FsErrorKind::Exists, format!("{name:?} exists"));
        }
        if parent == ROOT_INO {
            if node != NewNode::Dir {
                return fail(
                    FsErrorKind::NotPermitted,
                    "only directories (buckets) can be created at the root",
                );
            }
            if let Err(e) = validate_bucket(name) {
                return fail(FsErrorKind::InvalidArgument, e.to_string());
            }
            let redundancy = default_redundancy(self.nodes.len());
            let ino = self
                .create_bucket(name.to_string(), redundancy, now)
                .map_err(|e| FsFailure::new(FsErrorKind::InvalidArgument, e.to_string()))?;
            let inode = self.inode_mut(ino)?;
            inode.mode = mode & 0o7777;
            inode.uid = uid;
            inode.gid = gid;
            return Ok(ino);
        }
        let parent_inode = self.inode(parent)?;
        let (bucket, parent_mode, parent_gid) =
            (parent_inode.bucket, parent_inode.mode, parent_inode.gid);
        let (gid, mut mode) = if parent_mode & S_ISGID != 0 {
            (parent_gid, mode)
        } else {
            (gid, mode)
        };
        let kind = match node {
            NewNode::File => InodeKind::File {
                size: 0,
                extents: Vec::new(),
                attrs: Default::default(),
            },
            NewNode::Dir => {
                if parent_mode & S_ISGID != 0 {
                    mode |= S_ISGID;
                }
                InodeKind::Dir { implicit: false }
            }
            NewNode::Symlink { target } => {
                if target.is_empty() || target.len() > SYMLINK_MAX || target.contains('\0') {
                    return fail(FsErrorKind::InvalidArgument, "invalid symlink target");
                }
                mode = 0o777;
                InodeKind::Symlink { target }
            }
        };
        let generation = self.bump_generation();
        let ino = self.alloc_inode(Inode::new(kind, now, generation, mode, (uid, gid), bucket));
        self.add_entry(parent, name, ino);
        self.touch(parent, now);
        Ok(ino)
    }

    fn fs_link(&mut self, ino: Ino, parent: Ino, name: &str, now: u64) -> FsRes<()> {
        check_name(name)?;
        let inode = self.inode(ino)?;
        if inode.kind.is_dir() {
            return fail(FsErrorKind::NotPermitted, "hard links to directories");
        }
        if inode.nlink == 0 {
            return fail(FsErrorKind::NotFound, "the file was deleted");
        }
        let bucket = inode.bucket;
        if self.dir_entries(parent)?.contains_key(name) {
            return fail(FsErrorKind::Exists, format!("{name:?} exists"));
        }
        if self.inode(parent)?.bucket != bucket {
            return fail(FsErrorKind::CrossDevice, "a hard link cannot cross buckets");
        }
        if parent == ROOT_INO {
            return fail(FsErrorKind::NotPermitted, "only buckets live at the root");
        }
        let inode = self.inode_mut(ino)?;
        inode.nlink += 1;
        inode.ctime_ns = now;
        self.add_entry(parent, name, ino);
        self.touch(parent, now);
        Ok(())
    }

    fn fs_unlink(&mut self, parent: Ino, name: &str, dir: bool, now: u64) -> FsRes<()> {
        check_name(name)?;
        let Some(&ino) = self.dir_entries(parent)?.get(name) else {
            return fail(FsErrorKind::NotFound, format!("no entry {name:?}"));
        };
        let is_dir = self.inode(ino)?.kind.is_dir();
        match (dir, is_dir) {
            (true, false) => {
                return fail(FsErrorKind::NotDir, format!("{name:?} is not a directory"))
            }
            (false, true) => return fail(FsErrorKind::IsDir, format!("{name:?} is a directory")),
            _ => {}
        }
        if is_dir {
            if self.children.get(&ino).is_some_and(|c| !c.is_empty()) {
                return fail(FsErrorKind::NotEmpty, format!("{name:?} is not empty"));
            }
            if parent == ROOT_INO {
                self.delete_bucket(name)
                    .map_err(|e| FsFailure::new(FsErrorKind::NotEmpty, e.to_string()))?;
                self.touch(ROOT_INO, now);
                return Ok(());
            }
            self.remove_dir(parent, name, ino);
        } else {
            self.remove_entry(parent, name);
            self.drop_link(ino, now);
        }
        self.touch(parent, now);
        Ok(())
    }

    /// Removes an empty directory's entry and inode.
    fn remove_dir(&mut self, parent: Ino, name: &str, ino: Ino) {
        self.remove_entry(parent, name);
        self.children.remove(&ino);
        self.inodes.remove(&ino);
        self.locks.remove(&ino);
    }

    /// Whether `ino` is `dir` or lies below it.
    fn is_within(&self, ino: Ino, dir: Ino) -> bool {
        if ino == dir {
            return true;
        }
        let mut stack = vec![dir];
        let mut steps = 0usize;
        while let Some(d) = stack.pop() {
            for &child in self.children.get(&d).into_iter().flat_map(|c| c.values()) {
                if child == ino {
                    return true;
                }
                if self.children.contains_key(&child) {
                    stack.push(child);
                }
            }
            steps += 1;
            if steps > self.inodes.len() {
                break;
            }
        }
        false
    }

    fn fs_rename(
        &mut self,
        (parent, name): (Ino, &str),
        (new_parent, new_name): (Ino, &str),
        noreplace: bool,
        exchange: bool,
        now: u64,
    ) -> FsRes<()> {
        check_name(name)?;
        check_name(new_name)?;
        let Some(&src) = self.dir_entries(parent)?.get(name) else {
            return fail(FsErrorKind::NotFound, format!("no entry {name:?}"));
        };
        let dst = self.dir_entries(new_parent)?.get(new_name).copied();
        if parent == ROOT_INO || new_parent == ROOT_INO {
            return fail(
                FsErrorKind::NotPermitted,
                "buckets cannot be renamed, and only buckets live at the root",
            );
        }
        let src_dir = self.inode(src)?.kind.is_dir();
        if self.inode(src)?.bucket != self.inode(new_parent)?.bucket {
            return fail(FsErrorKind::CrossDevice, "a rename cannot cross buckets");
        }
        if exchange {
            let Some(dst) = dst else {
                return fail(FsErrorKind::NotFound, format!("no entry {new_name:?}"));
            };
            let dst_dir = self.inode(dst)?.kind.is_dir();
            if (src_dir && self.is_within(new_parent, src))
                || (dst_dir && self.is_within(parent, dst))
            {
                return fail(
                    FsErrorKind::InvalidArgument,
                    "a directory cannot move into itself",
                );
            }
            self.add_entry(parent, name, dst);
            self.add_entry(new_parent, new_name, src);
            for ino in [src, dst] {
                self.inode_mut(ino)?.ctime_ns = now;
            }
            self.touch(parent, now);
            self.touch(new_parent, now);
            return Ok(());
        }
        if dst == Some(src) {
            return Ok(());
        }
        if src_dir && self.is_within(new_parent, src) {
            return fail(
                FsErrorKind::InvalidArgument,
                "a directory cannot move into itself",
            );
        }
        if let Some(dst) = dst {
            if noreplace {
                return fail(FsErrorKind::Exists, format!("{new_name:?} exists"));
            }
            let dst_dir = self.inode(dst)?.kind.is_dir();
            match (src_dir, dst_dir) {
                (true, false) => {
                    return fail(
                        FsErrorKind::NotDir,
                        format!("{new_name:?} is not a directory"),
                    )
                }
                (false, true) => {
                    return fail(FsErrorKind::IsDir, format!("{new_name:?} is a directory"))
                }
                (true, true) if self.children.get(&dst).is_some_and(|c| !c.is_empty()) => {
                    return fail(FsErrorKind::NotEmpty, format!("{new_name:?} is not empty"))
                }
                (true, true) => self.remove_dir(new_parent, new_name, dst),
                (false, false) => {
                    self.remove_entry(new_parent, new_name);
                    self.drop_link(dst, now);
                }
            }
        }
        self.remove_entry(parent, name);
        self.add_entry(new_parent, new_name, src);
        self.inode_mut(src)?.ctime_ns = now;
        self.touch(parent, now);
        self.touch(new_parent, now);
        Ok(())
    }

    fn fs_setattr(&mut self, ino: Ino, changes: AttrChanges, now: u64) -> FsRes<()> {
        let time = |t: TimeSet| match t {
            TimeSet::Now => now,
            TimeSet::AtNs(ns) => ns,
        };
        let inode = self.inode(ino)?;
        if let Some(size) = changes.size {
            if size > MAX_FILE_SIZE {
                return fail(FsErrorKind::FileTooBig, format!("size {size}"));
            }
            match inode.kind {
                InodeKind::File { .. } => {}
                InodeKind::Dir { .. } => {
                    return fail(FsErrorKind::IsDir, "truncate of a directory")
                }
                InodeKind::Symlink { .. } => {
                    return fail(FsErrorKind::InvalidArgument, "truncate of a symlink")
                }
            }
        }
        let mut refs = Vec::new();
        let generation = changes.size.map(|_| self.bump_generation());
        let inode = self.inode_mut(ino)?;
        if let Some(mode) = changes.mode {
            inode.mode = mode & 0o7777;
        }
        if let Some(uid) = changes.uid {
            inode.uid = uid;
        }
        if let Some(gid) = changes.gid {
            inode.gid = gid;
        }
        if let Some(t) = changes.atime {
            inode.atime_ns = time(t);
        }
        if let (Some(new_size), InodeKind::File { size, extents, .. }) =
            (changes.size, &mut inode.kind)
        {
            if new_size < *size {
                extents::truncate(extents, new_size, &mut refs);
            }
            *size = new_size;
            inode.mtime_ns = now;
            inode.generation = generation.expect("bumped for a size change");
        }
        if let Some(t) = changes.mtime {
            inode.mtime_ns = time(t);
        }
        inode.ctime_ns = now;
        self.apply_refs(refs);
        Ok(())
    }

    fn fs_write(
        &mut self,
        ino: Ino,
        new_extents: Vec<FileExtent>,
        chunks: Vec<(ChunkId, ChunkMeta)>,
        size_at_least: u64,
        now: u64,
    ) -> FsRes<()> {
        let InodeKind::File { .. } = self.inode(ino)?.kind else {
            return fail(FsErrorKind::IsDir, "write to something not a regular file");
        };
        // A retry of a write that already applied (its chunks are known or were already
        // replaced and released): answer as the first time.
        if let Some((first, _)) = chunks.first() {
            if self.chunks.contains_key(first) || self.retired.contains_key(first) {
                return Ok(());
            }
        }
        if new_extents.len() > MAX_EXTENTS_PER_WRITE {
            return fail(
                FsErrorKind::InvalidArgument,
                "too many extents in one write",
            );
        }
        let mut sizes = std::collections::BTreeMap::new();
        for (id, chunk) in &chunks {
            if let Some(reason) = self.new_chunk_problem(id, chunk) {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!("chunk {id}: {reason}"),
                );
            }
            if sizes.insert(*id, chunk.size).is_some() {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!("chunk {id} listed twice"),
                );
            }
        }
        let mut end = size_at_least;
        for e in &new_extents {
            let Some(&chunk_size) = sizes.get(&e.chunk) else {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!(
                        "extent names chunk {} that the write does not carry",
                        e.chunk
                    ),
                );
            };
            let file_end = e.offset.checked_add(e.len).filter(|&x| x <= MAX_FILE_SIZE);
            let chunk_end = e
                .chunk_offset
                .checked_add(e.len)
                .filter(|&x| x <= chunk_size);
            match (file_end, chunk_end) {
                (Some(file_end), Some(_)) if e.len > 0 => end = end.max(file_end),
                _ => return fail(FsErrorKind::InvalidArgument, "extent out of range"),
            }
        }
        if end > MAX_FILE_SIZE {
            return fail(FsErrorKind::FileTooBig, format!("size {end}"));
        }
        for (id, chunk) in chunks {
            if chunk.is_degraded() {
                self.degraded.insert(id);
            }
            self.chunks.insert(id, chunk);
        }
        let generation = self.bump_generation();
        let mut refs = Vec::new();
        let inode = self.inode_mut(ino)?;
        let InodeKind::File { size, extents, .. } = &mut inode.kind else {
            unreachable!("checked above");
        };
        for e in &new_extents {
            extents::overlay(
                extents,
                Extent {
                    offset: e.offset,
                    len: e.len,
                    chunk: e.chunk,
                    chunk_offset: e.chunk_offset,
                },
                &mut refs,
            );
        }
        *size = (*size).max(end);
        inode.mtime_ns = now;
        inode.ctime_ns = now;
        inode.generation = generation;
        self.apply_refs(refs);
        // A chunk the write carried but no extent kept (overwritten within the same
        // write) is released at once.
        let unreferenced: Vec<ChunkId> = sizes
            .keys()
            .filter(|id| !self.chunk_refs.contains_key(id))
            .copied()
            .collect();
        for id in unreferenced {
            self.release_chunk(id);
        }
        Ok(())
    }

    fn fs_compact(
        &mut self,
        ino: Ino,
        generation: u64,
        new_extents: Vec<FileExtent>,
        chunks: Vec<(ChunkId, ChunkMeta)>,
    ) -> FsRes<()> {
        for (id, chunk) in &chunks {
            if let Some(reason) = self.new_chunk_problem(id, chunk) {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!("chunk {id}: {reason}"),
                );
            }
        }
        let held = self.holds.get(&ino).is_some_and(|h| !h.is_empty());
        let inode = self.inode(ino)?;
        let same_runs = match &inode.kind {
            InodeKind::File { extents, .. } => {
                // The new extents must cover exactly the bytes the old ones did (in
                // order, without overlaps).
                let covered = |runs: &mut dyn Iterator<Item = (u64, u64)>| {
                    let mut merged: Vec<(u64, u64)> = Vec::new();
                    for (start, end) in runs {
                        match merged.last_mut() {
                            Some(last) if start < last.1 => return None,
                            Some(last) if last.1 == start => last.1 = end,
                            _ => merged.push((start, end)),
                        }
                    }
                    Some(merged)
                };
                let sizes: std::collections::BTreeMap<ChunkId, u64> =
                    chunks.iter().map(|(id, c)| (*id, c.size)).collect();
                let fits = new_extents.iter().all(|e| {
                    e.len > 0
                        && sizes.get(&e.chunk).is_some_and(|&size| {
                            e.chunk_offset
                                .checked_add(e.len)
                                .is_some_and(|end| end <= size)
                        })
                });
                let old = covered(&mut extents.iter().map(|e| (e.offset, e.end())));
                fits && old.is_some()
                    && old
                        == covered(
                            &mut new_extents
                                .iter()
                                .map(|e| (e.offset, e.offset.saturating_add(e.len))),
                        )
            }
            _ => false,
        };
        if held || inode.generation != generation || !same_runs {
            return fail(
                FsErrorKind::Changed,
                "file changed, open or not the same runs",
            );
        }
        for (id, chunk) in chunks {
            if chunk.is_degraded() {
                self.degraded.insert(id);
            }
            self.chunks.insert(id, chunk);
        }
        let mut refs = Vec::new();
        let inode = self.inode_mut(ino)?;
        let InodeKind::File { extents, .. } = &mut inode.kind else {
            unreachable!("checked above");
        };
        for old in extents.drain(..) {
            refs.push(RefChange::Drop(old.chunk));
        }
        for e in &new_extents {
            refs.push(RefChange::Take(e.chunk));
            extents.push(Extent {
                offset: e.offset,
                len: e.len,
                chunk: e.chunk,
                chunk_offset: e.chunk_offset,
            });
        }
        extents.sort_by_key(|e| e.offset);
        self.apply_refs(refs);
        Ok(())
    }

    /// Applies reference changes: takes first, so a chunk that only moved is not released.
    fn apply_refs(&mut self, refs: Vec<RefChange>) {
        for r in &refs {
            if let RefChange::Take(c) = r {
                self.ref_chunk(*c);
            }
        }
        for r in refs {
            if let RefChange::Drop(c) = r {
                self.unref_chunk(c);
            }
        }
    }

    fn fs_setxattr(
        &mut self,
        ino: Ino,
        name: String,
        value: Vec<u8>,
        mode: XattrMode,
        now: u64,
    ) -> FsRes<()> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return fail(FsErrorKind::InvalidArgument, "bad attribute name length");
        }
        if value.len() > XATTR_VALUE_MAX {
            return fail(
                FsErrorKind::TooBig,
                format!("value of {} bytes", value.len()),
            );
        }
        let inode = self.inode_mut(ino)?;
        let exists = inode.xattrs.contains_key(&name);
        match mode {
            XattrMode::Create if exists => {
                return fail(FsErrorKind::Exists, format!("attribute {name:?} exists"))
            }
            XattrMode::Replace if !exists => {
                return fail(FsErrorKind::NoData, format!("no attribute {name:?}"))
            }
            _ => {}
        }
        if !exists && inode.xattrs.len() >= XATTRS_PER_INODE_MAX {
            return fail(FsErrorKind::NoSpace, "too many attributes on one inode");
        }
        inode.xattrs.insert(name, value);
        inode.ctime_ns = now;
        Ok(())
    }
}

fn to_file_extent(e: &Extent) -> FileExtent {
    FileExtent {
        offset: e.offset,
        len: e.len,
        chunk: e.chunk,
        chunk_offset: e.chunk_offset,
    }
}
