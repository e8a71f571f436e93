//! Inode-level filesystem operations for mounts: create, link, unlink, rename, setattr,
//! writes of extents, xattrs, holds (open files) and locks, and the queries a mount
//! makes. Same tree as the object API: the root's entries are the buckets, so `mkdir`
//! at the root creates a bucket and nothing else may live there. Every change is checked
//! completely before anything is modified, so a refused change changes nothing.
//!
//! This file dispatches changes and answers queries; the tree's changes are in
//! `fs_tree.rs`, a file's content and xattrs in `fs_content.rs`.

use std::collections::BTreeSet;
use std::ops::Bound;

use cairn_common::fs::{
    check_name, DirEntry, ExtentMap, FileExtent, FsAttr, FsChange, FsErrorKind, FsFailure, FsQuery,
    FsReply, FsResult, Ino, SessionId,
};
use cairn_common::Redundancy;

use super::extents;
use super::{Extent, Inode, InodeKind, Namespace};

/// Size reported for a directory.
const DIR_SIZE: u64 = 4096;
pub(super) const S_ISGID: u32 = 0o2000;

pub(super) type FsRes<T> = Result<T, FsFailure>;

pub(super) fn fail<T>(kind: FsErrorKind, detail: impl Into<String>) -> FsRes<T> {
    Err(FsFailure::new(kind, detail))
}

/// Redundancy of a bucket made by `mkdir` in a mount's root: ec 4+2 when the cluster
/// has the six nodes it needs, else three (or fewer) replicas. A mount's `statfs` reports
/// what can be stored with it.
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
                self.holds
                    .entry_or_insert_with(ino, BTreeSet::new)
                    .insert(session);
                let inode = self.inode(ino)?;
                let (bucket, redundancy) = self.bucket_of(&inode)?;
                Ok(FsReply::Extents(Box::new(ExtentMap {
                    attr: attr_of(ino, &inode),
                    bucket,
                    redundancy,
                    extents: Vec::new(),
                    chunks: Vec::new(),
                    nodes: Vec::new(),
                    inline: Vec::new(),
                    inline_max: self.inline_limits().max_bytes,
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
                self.holds
                    .entry_or_insert_with(ino, BTreeSet::new)
                    .insert(session);
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
                if self.holds.get(&ino).is_some_and(|h| h.is_empty()) {
                    self.holds.remove(&ino);
                }
                Ok(FsReply::Done)
            }
            FsChange::SetLock { ino, owner, lock } => {
                self.inode(ino)?;
                let table = self.locks.entry_or_insert_with(ino, Default::default);
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
            FsChange::CreateMany {
                parent,
                prefix,
                first,
                count,
                mode,
                uid,
                gid,
            } => self
                .fs_create_many(parent, &prefix, first, count, mode, (uid, gid), now)
                .map(|()| FsReply::Done),
            FsChange::RemoveMany {
                parent,
                prefix,
                first,
                count,
            } => self
                .fs_remove_many(parent, &prefix, first, count, now)
                .map(|()| FsReply::Done),
            FsChange::WriteInline {
                ino,
                runs,
                size_at_least,
            } => {
                self.fs_write_inline(ino, runs, size_at_least, now)?;
                self.fs_attr(ino).map(FsReply::Attr)
            }
            FsChange::CloneFile {
                src,
                parent,
                name,
                mode,
                uid,
                gid,
            } => {
                let ino = self.fs_clone_file(src, parent, &name, mode, (uid, gid), now)?;
                self.fs_attr(ino).map(FsReply::Attr)
            }
            FsChange::PunchHole { ino, offset, len } => {
                self.fs_punch_hole(ino, offset, len, now)?;
                self.fs_attr(ino).map(FsReply::Attr)
            }
        }
    }

    /// Answers a mount's read. `Extents` comes back without node addresses (the service
    /// adds them from its liveness view).
    pub fn fs_query(&self, session: SessionId, query: FsQuery) -> FsResult {
        match query {
            FsQuery::Lookup { parent, name } => {
                check_name(&name)?;
                match self.dir_entry(parent, &name)? {
                    Some(ino) => self.fs_attr(ino).map(FsReply::Attr),
                    None => fail(FsErrorKind::NotFound, format!("no entry {name:?}")),
                }
            }
            FsQuery::GetAttr { ino } => self.fs_attr(ino).map(FsReply::Attr),
            FsQuery::ReadDir { ino, after, limit } => {
                self.require_dir(ino)?;
                let from = match &after {
                    Some(a) => Bound::Excluded(a.as_str()),
                    None => Bound::Unbounded,
                };
                let entries = self
                    .entries_from(ino, from)
                    .take(limit.clamp(1, 10_000) as usize)
                    .filter_map(|(name, ino)| {
                        self.inodes.get(&ino).map(|inode| DirEntry {
                            name,
                            ino,
                            kind: inode.kind.file_type(),
                        })
                    })
                    .collect();
                Ok(FsReply::Entries(entries))
            }
            FsQuery::ReadLink { ino } => match self.inode(ino)?.kind {
                InodeKind::Symlink { target } => Ok(FsReply::Target(target)),
                _ => fail(FsErrorKind::InvalidArgument, "not a symlink"),
            },
            FsQuery::Extents { ino, offset, len } => {
                let inode = self.inode(ino)?;
                let InodeKind::File { extents, .. } = &inode.kind else {
                    return fail(FsErrorKind::IsDir, "not a regular file");
                };
                let (bucket, redundancy) = self.bucket_of(&inode)?;
                let extents = extents::in_range(extents, offset, len);
                Ok(FsReply::Extents(Box::new(ExtentMap {
                    attr: attr_of(ino, &inode),
                    bucket,
                    redundancy,
                    extents: extents.iter().map(to_file_extent).collect(),
                    chunks: self.chunks_of(extents),
                    nodes: Vec::new(),
                    inline: self.inline_of(ino),
                    inline_max: self.inline_limits().max_bytes,
                })))
            }
            FsQuery::GetXattr { ino, name } => match self.inode(ino)?.xattrs.remove(&name) {
                Some(v) => Ok(FsReply::Value(v)),
                None => fail(FsErrorKind::NoData, format!("no attribute {name:?}")),
            },
            FsQuery::ListXattr { ino } => Ok(FsReply::Names(
                self.inode(ino)?.xattrs.into_keys().collect(),
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
    pub(super) fn bucket_of(&self, inode: &Inode) -> FsRes<(String, Redundancy)> {
        let gone = || FsFailure::new(FsErrorKind::NotFound, "the file's bucket is gone");
        let name = self.bucket_names.get(&inode.bucket).ok_or_else(gone)?;
        let bucket = self.bucket(&name).map_err(|_| gone())?;
        Ok((name, bucket.redundancy))
    }

    /// Number of inodes (for `statfs`).
    pub fn inode_count(&self) -> u64 {
        self.counters.inodes
    }

    pub(super) fn inode(&self, ino: Ino) -> FsRes<Inode> {
        self.inodes
            .get(&ino)
            .ok_or_else(|| FsFailure::new(FsErrorKind::NotFound, format!("no inode {ino}")))
    }

    pub(super) fn inode_mut(&mut self, ino: Ino) -> FsRes<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| FsFailure::new(FsErrorKind::NotFound, format!("no inode {ino}")))
    }

    /// Fails unless `ino` is a directory.
    pub(super) fn require_dir(&self, ino: Ino) -> FsRes<()> {
        if !self.inode(ino)?.kind.is_dir() {
            return fail(
                FsErrorKind::NotDir,
                format!("inode {ino} is not a directory"),
            );
        }
        Ok(())
    }

    /// The inode `name` in directory `dir` names, if any (fails unless `dir` is one).
    pub(super) fn dir_entry(&self, dir: Ino, name: &str) -> FsRes<Option<Ino>> {
        self.require_dir(dir)?;
        Ok(self.child(dir, name))
    }

    pub fn fs_attr(&self, ino: Ino) -> FsRes<FsAttr> {
        Ok(attr_of(ino, &self.inode(ino)?))
    }
}

/// What `stat` shows of inode `ino`.
fn attr_of(ino: Ino, inode: &Inode) -> FsAttr {
    let (size, allocated, nlink) = match &inode.kind {
        InodeKind::File { size, extents, .. } => (*size, extents::allocated(extents), inode.nlink),
        InodeKind::Symlink { target } => (target.len() as u64, 0, inode.nlink),
        InodeKind::Special(_) => (0, 0, inode.nlink),
        InodeKind::Dir { .. } => (DIR_SIZE, DIR_SIZE, inode.nlink),
    };
    FsAttr {
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
        rdev: inode.kind.rdev(),
    }
}

pub(super) fn to_file_extent(e: &Extent) -> FileExtent {
    FileExtent {
        offset: e.offset,
        len: e.len,
        chunk: e.chunk,
        chunk_offset: e.chunk_offset,
    }
}
