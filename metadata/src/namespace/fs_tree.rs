//! The namespace tree's changes for mounts: create (files, directories, symlinks, special
//! files), link, unlink, rmdir, rename (also across directories, replacing the target) and
//! attribute changes. Each checks everything before it modifies anything. Pure: no IO.

use cairn_common::fs::{
    check_name, AttrChanges, FsErrorKind, FsFailure, Ino, NewNode, TimeSet, MAX_FILE_SIZE,
    SYMLINK_MAX,
};
use cairn_common::names::validate_bucket;

use super::extents;
use super::fs::{default_redundancy, fail, FsRes, S_ISGID};
use super::{Inode, InodeKind, Namespace, ROOT_INO};

impl Namespace {
    pub(super) fn fs_create(
        &mut self,
        parent: Ino,
        name: &str,
        node: NewNode,
        mode: u32,
        (uid, gid): (u32, u32),
        now: u64,
    ) -> FsRes<Ino> {
        check_name(name)?;
        if self.dir_entry(parent, name)?.is_some() {
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
            let redundancy = default_redundancy(self.nodes.iter().count());
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
            NewNode::Special(special) => InodeKind::Special(special),
        };
        let generation = self.bump_generation();
        let ino = self.alloc_inode(Inode::new(kind, now, generation, mode, (uid, gid), bucket));
        self.add_entry(parent, name, ino);
        self.touch(parent, now);
        Ok(ino)
    }

    pub(super) fn fs_link(&mut self, ino: Ino, parent: Ino, name: &str, now: u64) -> FsRes<()> {
        check_name(name)?;
        let inode = self.inode(ino)?;
        if inode.kind.is_dir() {
            return fail(FsErrorKind::NotPermitted, "hard links to directories");
        }
        if inode.nlink == 0 {
            return fail(FsErrorKind::NotFound, "the file was deleted");
        }
        let bucket = inode.bucket;
        if self.dir_entry(parent, name)?.is_some() {
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

    pub(super) fn fs_unlink(&mut self, parent: Ino, name: &str, dir: bool, now: u64) -> FsRes<()> {
        check_name(name)?;
        let Some(ino) = self.dir_entry(parent, name)? else {
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
            if !self.dir_is_empty(ino) {
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
    pub(super) fn remove_dir(&mut self, parent: Ino, name: &str, ino: Ino) {
        self.remove_entry(parent, name);
        self.inodes.remove(&ino);
        self.locks.remove(&ino);
    }

    /// Whether `ino` is `dir` or lies below it.
    pub(super) fn is_within(&self, ino: Ino, dir: Ino) -> bool {
        if ino == dir {
            return true;
        }
        let mut stack = vec![dir];
        // A guard against a cycle (a tree has none): no walk visits more directories
        // than there are inodes.
        let mut steps = 0u64;
        while let Some(d) = stack.pop() {
            for (_, child) in self.entries_from(d, std::ops::Bound::Unbounded) {
                if child == ino {
                    return true;
                }
                if self.inodes.get(&child).is_some_and(|i| i.kind.is_dir()) {
                    stack.push(child);
                }
            }
            steps += 1;
            if steps > self.counters.next_ino {
                break;
            }
        }
        false
    }

    pub(super) fn fs_rename(
        &mut self,
        (parent, name): (Ino, &str),
        (new_parent, new_name): (Ino, &str),
        noreplace: bool,
        exchange: bool,
        now: u64,
    ) -> FsRes<()> {
        check_name(name)?;
        check_name(new_name)?;
        let Some(src) = self.dir_entry(parent, name)? else {
            return fail(FsErrorKind::NotFound, format!("no entry {name:?}"));
        };
        let dst = self.dir_entry(new_parent, new_name)?;
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
                (true, true) if !self.dir_is_empty(dst) => {
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

    pub(super) fn fs_setattr(&mut self, ino: Ino, changes: AttrChanges, now: u64) -> FsRes<()> {
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
                InodeKind::Special(_) => {
                    return fail(FsErrorKind::InvalidArgument, "truncate of a special file")
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
        let mut cut_inline = None;
        if let (Some(new_size), InodeKind::File { size, extents, .. }) =
            (changes.size, &mut inode.kind)
        {
            if new_size < *size {
                extents::truncate(extents, new_size, &mut refs);
                cut_inline = Some(new_size);
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
        if let Some(new_size) = cut_inline {
            self.truncate_inline(ino, new_size);
        }
        Ok(())
    }
}
