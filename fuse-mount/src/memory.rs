//! `MemoryBackend`: a complete in-memory [`FsBackend`] with POSIX semantics, for tests and
//! `cairn-mount --memory`. It is the reference every other backend is compared with, so it
//! implements the rules exactly (see `backend.rs`): link counts, setgid directories,
//! rename replacement rules, unlinked-but-open files, sparse data, special files,
//! byte-range locks, capacity (`ENOSPC`). Nothing is persisted; `fsync` is trivially durable for its lifetime.
//!
//! Timestamps: atime is set at creation and by `setattr` only (no atime updates on read,
//! like `noatime`); mtime/ctime follow POSIX for writes, truncates and namespace changes.

mod sparse;
mod state;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use self::sparse::{SparseData, PAGE};
use self::state::{now, Content, State};
use crate::backend::*;

/// Largest extended attribute value (Linux `XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 64 * 1024;
/// Longest extended attribute name (Linux `XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;

/// Limits and the root directory's owner.
#[derive(Clone, Copy, Debug)]
pub struct MemoryOptions {
    /// Bytes of file data that fit (default 16 GiB); beyond, writes fail with `NoSpace`.
    pub capacity_bytes: u64,
    /// Inodes that fit (default 1 Mi).
    pub max_inodes: u64,
    pub root_uid: u32,
    pub root_gid: u32,
    /// Root directory permissions (default `0o755`).
    pub root_mode: u32,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            capacity_bytes: 16 << 30,
            max_inodes: 1 << 20,
            root_uid: 0,
            root_gid: 0,
            root_mode: 0o755,
        }
    }
}

/// The in-memory backend (cheap to share behind an `Arc`).
pub struct MemoryBackend {
    state: Mutex<State>,
    lock_changed: Notify,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(MemoryOptions::default())
    }
}

fn set_time(t: TimeSet) -> u64 {
    match t {
        TimeSet::Now => now(),
        TimeSet::AtNs(ns) => ns,
    }
}

impl MemoryBackend {
    pub fn new(opts: MemoryOptions) -> Self {
        MemoryBackend {
            state: Mutex::new(State::new(opts)),
            lock_changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent map (every mutation is
        // completed before the next may fail), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inodes currently alive, the root included (tests check that unlinked files are
    /// freed at their last close).
    pub fn inode_count(&self) -> usize {
        self.state().inodes.len()
    }
}

#[async_trait]
impl FsBackend for MemoryBackend {
    async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FsAttr, FsError> {
        let s = self.state();
        let ino = s.child(parent, name)?;
        Ok(s.inode(ino)?.attr())
    }

    async fn getattr(&self, ino: Ino) -> Result<FsAttr, FsError> {
        Ok(self.state().inode(ino)?.attr())
    }

    async fn setattr(&self, ino: Ino, c: AttrChanges) -> Result<FsAttr, FsError> {
        let mut s = self.state();
        let inode = s.inode_mut(ino)?;
        let mut freed = 0;
        if let Some(size) = c.size {
            let Content::File(data) = &mut inode.content else {
                return Err(match inode.content {
                    Content::Dir { .. } => FsError::IsDir,
                    _ => FsError::InvalidArgument,
                });
            };
            if size > MAX_FILE_SIZE {
                return Err(FsError::FileTooBig);
            }
            freed = data.truncate(size);
            inode.meta.mtime_ns = now();
            inode.meta.generation += 1;
        }
        let m = &mut inode.meta;
        if let Some(mode) = c.mode {
            m.mode = mode & 0o7777;
        }
        if let Some(uid) = c.uid {
            m.uid = uid;
        }
        if let Some(gid) = c.gid {
            m.gid = gid;
        }
        if let Some(t) = c.atime {
            m.atime_ns = set_time(t);
        }
        if let Some(t) = c.mtime {
            m.mtime_ns = set_time(t);
        }
        m.ctime_ns = now();
        let attr = inode.attr();
        s.used_pages -= freed;
        Ok(attr)
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
        access: AccessMode,
    ) -> Result<(FsAttr, HandleId), FsError> {
        let mut s = self.state();
        s.check_free(parent, name)?;
        let ino = s.new_inode(
            parent,
            name,
            mode,
            caller,
            Content::File(SparseData::default()),
        )?;
        let h = s.open_handle(ino, access)?;
        Ok((s.inode(ino)?.attr(), h))
    }

    async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        special: Option<Special>,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        let mut s = self.state();
        s.check_free(parent, name)?;
        let content = match special {
            None => Content::File(SparseData::default()),
            Some(special) => Content::Special(special),
        };
        let ino = s.new_inode(parent, name, mode, caller, content)?;
        Ok(s.inode(ino)?.attr())
    }

    async fn clone_file(
        &self,
        ino: Ino,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        let mut s = self.state();
        let data = match &s.inode(ino)?.content {
            Content::File(d) => d.clone(),
            Content::Dir { .. } => return Err(FsError::IsDir),
            _ => return Err(FsError::InvalidArgument),
        };
        s.check_free(parent, name)?;
        // Memory has no shared pages: the copy takes its own.
        let pages = data.allocated_pages();
        if pages > (s.opts.capacity_bytes / PAGE).saturating_sub(s.used_pages) {
            return Err(FsError::NoSpace);
        }
        let new = s.new_inode(parent, name, mode, caller, Content::File(data))?;
        s.used_pages += pages;
        Ok(s.inode(new)?.attr())
    }

    async fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        let mut s = self.state();
        s.check_free(parent, name)?;
        let content = Content::Dir {
            entries: BTreeMap::new(),
            parent,
        };
        let ino = s.new_inode(parent, name, mode, caller, content)?;
        Ok(s.inode(ino)?.attr())
    }

    async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        let mut s = self.state();
        s.check_free(parent, name)?;
        let ino = s.new_inode(
            parent,
            name,
            0o777,
            caller,
            Content::Symlink(target.to_owned()),
        )?;
        Ok(s.inode(ino)?.attr())
    }

    async fn readlink(&self, ino: Ino) -> Result<OsString, FsError> {
        match &self.state().inode(ino)?.content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::InvalidArgument),
        }
    }

    async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<FsAttr, FsError> {
        let mut s = self.state();
        let inode = s.inode(ino)?;
        if matches!(inode.content, Content::Dir { .. }) {
            return Err(FsError::NotPermitted);
        }
        if inode.meta.nlink == 0 {
            return Err(FsError::NotFound);
        }
        if inode.meta.nlink == u32::MAX {
            return Err(FsError::TooManyLinks);
        }
        s.check_free(newparent, newname)?;
        s.entries_mut(newparent)?.insert(newname.to_owned(), ino);
        s.add_nlink(ino, 1);
        s.touch_dir(newparent);
        Ok(s.inode(ino)?.attr())
    }

    async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let mut s = self.state();
        let ino = s.child(parent, name)?;
        if s.is_dir(ino) {
            return Err(FsError::IsDir);
        }
        s.entries_mut(parent)?.remove(name);
        s.add_nlink(ino, -1);
        s.touch_dir(parent);
        s.maybe_free(ino);
        Ok(())
    }

    async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let mut s = self.state();
        let ino = s.child(parent, name)?;
        if !s.entries(ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        s.entries_mut(parent)?.remove(name);
        s.inode_mut(ino)?.meta.nlink = 0;
        s.add_nlink(parent, -1);
        s.touch_dir(parent);
        s.maybe_free(ino);
        Ok(())
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), FsError> {
        self.state().rename(parent, name, newparent, newname, flags)
    }

    async fn readdir(
        &self,
        ino: Ino,
        after: Option<&OsStr>,
        limit: usize,
    ) -> Result<Vec<DirEntry>, FsError> {
        let s = self.state();
        let entries = s.entries(ino)?;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for (name, &child) in entries
            .range::<OsStr, _>((lower, Bound::Unbounded))
            .take(limit)
        {
            out.push(DirEntry {
                name: name.clone(),
                ino: child,
                kind: s.inode(child)?.attr().kind,
            });
        }
        Ok(out)
    }

    async fn open(&self, ino: Ino, access: AccessMode) -> Result<HandleId, FsError> {
        self.state().open_handle(ino, access)
    }

    async fn read(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, FsError> {
        let s = self.state();
        s.check_handle(ino, handle, false)?;
        match &s.inode(ino)?.content {
            Content::File(d) => Ok(d.read(offset, u64::from(len))),
            _ => Err(FsError::IsDir),
        }
    }

    async fn write(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<u32, FsError> {
        let len = u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument)?;
        let mut s = self.state();
        s.check_handle(ino, handle, true)?;
        let free_pages = (s.opts.capacity_bytes / PAGE).saturating_sub(s.used_pages);
        let inode = s.inode_mut(ino)?;
        let Content::File(d) = &mut inode.content else {
            return Err(FsError::IsDir);
        };
        let offset = offset.unwrap_or(d.size());
        if offset
            .checked_add(u64::from(len))
            .is_none_or(|end| end > MAX_FILE_SIZE)
        {
            return Err(FsError::FileTooBig);
        }
        if d.pages_needed(offset, u64::from(len)) > free_pages {
            return Err(FsError::NoSpace);
        }
        let allocated = d.write(offset, data);
        inode.content_changed();
        s.used_pages += allocated;
        Ok(len)
    }

    async fn grow(&self, ino: Ino, handle: HandleId, size: u64) -> Result<FsAttr, FsError> {
        let mut s = self.state();
        s.check_handle(ino, handle, true)?;
        let inode = s.inode_mut(ino)?;
        let Content::File(d) = &mut inode.content else {
            return Err(FsError::IsDir);
        };
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        if size > d.size() {
            // Growing frees nothing and allocates nothing: the new bytes are a hole.
            d.truncate(size);
            inode.content_changed();
        }
        Ok(inode.attr())
    }

    async fn punch_hole(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u64,
    ) -> Result<(), FsError> {
        let mut s = self.state();
        s.check_handle(ino, handle, true)?;
        let inode = s.inode_mut(ino)?;
        let Content::File(d) = &mut inode.content else {
            return Err(FsError::IsDir);
        };
        if offset >= d.size() || len == 0 {
            return Ok(());
        }
        let freed = d.punch(offset, len);
        inode.content_changed();
        s.used_pages -= freed;
        Ok(())
    }

    async fn flush(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        let s = self.state();
        match s.handles.get(&handle) {
            Some(&(i, _)) if i == ino => Ok(()),
            _ => Err(FsError::BadHandle),
        }
    }

    async fn fsync(
        &self,
        ino: Ino,
        _handle: Option<HandleId>,
        _datasync: bool,
    ) -> Result<(), FsError> {
        self.state().inode(ino).map(|_| ())
    }

    async fn release(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        let mut s = self.state();
        match s.handles.remove(&handle) {
            Some((i, _)) if i == ino => {}
            Some(other) => {
                s.handles.insert(handle, other);
                return Err(FsError::BadHandle);
            }
            None => return Err(FsError::BadHandle),
        }
        let inode = s.inode_mut(ino)?;
        inode.open_handles -= 1;
        s.maybe_free(ino);
        Ok(())
    }

    async fn statfs(&self) -> Result<FsStat, FsError> {
        let s = self.state();
        let capacity_bytes = s.opts.capacity_bytes / PAGE * PAGE;
        let inodes = s.inodes.len() as u64;
        Ok(FsStat {
            capacity_bytes,
            free_bytes: capacity_bytes.saturating_sub(s.used_pages * PAGE),
            inodes,
            inodes_free: s.opts.max_inodes.saturating_sub(inodes),
        })
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let s = self.state();
        s.inode(ino)?
            .xattrs
            .get(name)
            .cloned()
            .ok_or(FsError::NoData)
    }

    async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrMode,
    ) -> Result<(), FsError> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(FsError::Range);
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::ValueTooBig);
        }
        let mut s = self.state();
        let inode = s.inode_mut(ino)?;
        let present = inode.xattrs.contains_key(name);
        match how {
            XattrMode::Create if present => return Err(FsError::Exists),
            XattrMode::Replace if !present => return Err(FsError::NoData),
            _ => {}
        }
        inode.xattrs.insert(name.to_owned(), value.to_vec());
        inode.meta.ctime_ns = now();
        Ok(())
    }

    async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>, FsError> {
        Ok(self.state().inode(ino)?.xattrs.keys().cloned().collect())
    }

    async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        let mut s = self.state();
        let inode = s.inode_mut(ino)?;
        inode.xattrs.remove(name).ok_or(FsError::NoData)?;
        inode.meta.ctime_ns = now();
        Ok(())
    }

    async fn getlk(
        &self,
        ino: Ino,
        owner: LockOwner,
        lock: FileLock,
    ) -> Result<Option<FileLock>, FsError> {
        Ok(self.state().inode(ino)?.locks.conflict(owner, &lock)?)
    }

    async fn setlk(&self, ino: Ino, owner: LockOwner, lock: FileLock) -> Result<(), FsError> {
        self.state().inode_mut(ino)?.locks.set(owner, &lock)?;
        self.lock_changed.notify_waiters();
        Ok(())
    }

    async fn unlock_all(&self, ino: Ino, owner: LockOwner) -> Result<(), FsError> {
        let changed = match self.state().inodes.get_mut(&ino) {
            Some(inode) => inode.locks.unlock_all(owner),
            None => false,
        };
        if changed {
            self.lock_changed.notify_waiters();
        }
        Ok(())
    }

    async fn wait_lock_change(&self, _ino: Ino, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.lock_changed.notified()).await;
    }
}

#[cfg(test)]
mod tests;
