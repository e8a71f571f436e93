//! The async filesystem core: FUSE semantics over an [`FsBackend`], without FUSE. Owns file
//! and directory handles, open flags (`O_APPEND` becomes append-at-EOF in the backend,
//! `O_TRUNC`, `O_CREAT` with and without `O_EXCL`), directory cursors, lock release on
//! close, blocking lock waits, `mknod`'s file types, `fallocate`'s modes, xattr buffer
//! sizing (and the refusal of POSIX ACLs) and cache TTLs. Permission checks are the
//! kernel's (`default_permissions`), except for a squashed root's (`squash.rs`). Knows
//! nothing of fuser: the adapter calls it, and unit tests call it directly over the
//! memory backend.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod squash;

pub use self::squash::{Access, RootSquash};

use crate::backend::{
    check_name, AccessMode, AttrChanges, Caller, FileLock, FileType, FsAttr, FsBackend, FsError,
    FsStat, HandleId, Ino, LockKind, LockOwner, RenameFlags, Special, XattrMode, MAX_FILE_SIZE,
};

/// Tunables of the core (CLI flags of `cairn-mount` set them).
#[derive(Clone, Copy, Debug)]
pub struct FsOptions {
    /// How long the kernel may cache attributes (default 1 s).
    pub attr_ttl: Duration,
    /// How long the kernel may cache name lookups (default 1 s).
    pub entry_ttl: Duration,
    /// `st_blksize`, the IO size applications are advised to use (default 128 KiB, one FUSE
    /// request).
    pub io_block_size: u32,
    /// Longest sleep between two attempts of a blocking lock (default 100 ms); backends
    /// that implement `wait_lock_change` wake waiters sooner.
    pub lock_retry: Duration,
    /// Give up a blocking lock after this long with `EINTR` (default: wait until granted,
    /// the caller is signalled or the filesystem unmounted).
    pub lock_wait_limit: Option<Duration>,
    /// Entries asked from the backend per `readdir` call (default 256).
    pub readdir_batch: usize,
    /// Serve root's requests as this unprivileged user (default: root is root).
    pub root_squash: Option<RootSquash>,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            io_block_size: 128 * 1024,
            lock_retry: Duration::from_millis(100),
            lock_wait_limit: None,
            readdir_batch: 256,
            root_squash: None,
        }
    }
}

/// One entry of a `readdir` reply: `offset` is the cookie to resume after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirItem {
    pub offset: u64,
    pub ino: Ino,
    pub kind: FileType,
    pub name: OsString,
}

/// The answer to `getxattr`/`listxattr` with a caller buffer of `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// `size` was 0: how many bytes the value needs.
    Size(u32),
    Data(Vec<u8>),
}

/// The attributes holding POSIX ACLs, which `setxattr` refuses.
const POSIX_ACL_XATTRS: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];

/// FUSE offsets 1 and 2 are `.` and `..`; backend entries get cookies from here on.
const FIRST_COOKIE: u64 = 3;

enum Handle {
    File {
        ino: Ino,
        backend: HandleId,
    },
    Dir {
        ino: Ino,
        cookies: BTreeMap<u64, OsString>,
    },
}

/// The filesystem core shared by every request.
pub struct FsCore {
    backend: Arc<dyn FsBackend>,
    opts: FsOptions,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    next_cookie: AtomicU64,
}

fn access_mode(flags: i32) -> AccessMode {
    match flags & libc::O_ACCMODE {
        libc::O_WRONLY => AccessMode::Write,
        libc::O_RDWR => AccessMode::ReadWrite,
        _ => AccessMode::Read,
    }
}

/// What `mknod`'s `mode` asks for: `None` for a regular file.
pub fn special_of(mode: u32, rdev: u32) -> Result<Option<Special>, FsError> {
    match mode & libc::S_IFMT {
        0 | libc::S_IFREG => Ok(None),
        libc::S_IFIFO => Ok(Some(Special::Fifo)),
        libc::S_IFSOCK => Ok(Some(Special::Socket)),
        libc::S_IFCHR => Ok(Some(Special::CharDevice { rdev })),
        libc::S_IFBLK => Ok(Some(Special::BlockDevice { rdev })),
        libc::S_IFDIR => Err(FsError::NotPermitted),
        _ => Err(FsError::InvalidArgument),
    }
}

/// For requests that name an inode the kernel looked up: that inode no longer existing is
/// a stale handle (`ESTALE`, after which the kernel looks the path up again), not a
/// missing name.
fn inode_gone(e: FsError) -> FsError {
    match e {
        FsError::NotFound => FsError::StaleInode,
        e => e,
    }
}

fn xattr_reply(data: Vec<u8>, size: u32) -> Result<XattrReply, FsError> {
    let len = u32::try_from(data.len()).map_err(|_| FsError::Range)?;
    if size == 0 {
        Ok(XattrReply::Size(len))
    } else if len > size {
        Err(FsError::Range)
    } else {
        Ok(XattrReply::Data(data))
    }
}

impl FsCore {
    pub fn new(backend: Arc<dyn FsBackend>, opts: FsOptions) -> Self {
        FsCore {
            backend,
            opts,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            next_cookie: AtomicU64::new(FIRST_COOKIE),
        }
    }

    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    pub fn backend(&self) -> &Arc<dyn FsBackend> {
        &self.backend
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        // Every critical section is a single map operation: a poisoned map is consistent.
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        fh
    }

    fn file_handle(&self, ino: Ino, fh: u64) -> Result<HandleId, FsError> {
        match self.handles().get(&fh) {
            Some(Handle::File { ino: i, backend }) if *i == ino => Ok(*backend),
            _ => Err(FsError::BadHandle),
        }
    }

    /// Who a request from `uid`/`gid` acts as: itself, or the anonymous user if it is root
    /// and root is squashed.
    pub fn caller(&self, uid: u32, gid: u32, pid: u32) -> Caller {
        match self.opts.root_squash {
            Some(anon) if uid == 0 => Caller {
                uid: anon.uid,
                gid: anon.gid,
                pid,
            },
            _ => Caller { uid, gid, pid },
        }
    }

    /// Checks a request from `uid` that is about to do `access`: nothing for anyone the
    /// kernel checked; the unprivileged rules for a squashed root.
    pub async fn guard(&self, uid: u32, access: Access<'_>) -> Result<(), FsError> {
        match self.opts.root_squash {
            Some(anon) if uid == 0 => anon.check(self.backend.as_ref(), access).await,
            _ => Ok(()),
        }
    }

    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FsAttr, FsError> {
        check_name(name)?;
        self.backend.lookup(parent, name).await
    }

    pub async fn getattr(&self, ino: Ino) -> Result<FsAttr, FsError> {
        self.backend.getattr(ino).await.map_err(inode_gone)
    }

    pub async fn setattr(&self, ino: Ino, changes: AttrChanges) -> Result<FsAttr, FsError> {
        self.backend.setattr(ino, changes).await.map_err(inode_gone)
    }

    /// `mknod`: a regular file, FIFO, socket, or character or block device (`rdev` is the
    /// device number as FUSE carries it, kept for devices only). A directory type is
    /// `NotPermitted` and an unknown one `InvalidArgument`, as `mknod(2)` answers (the
    /// kernel refuses both before asking).
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        check_name(name)?;
        let special = special_of(mode, rdev)?;
        let mode = mode & 0o7777 & !umask;
        self.backend
            .mknod(parent, name, mode, special, caller)
            .await
    }

    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        check_name(name)?;
        let mode = mode & 0o7777 & !umask;
        self.backend.mkdir(parent, name, mode, caller).await
    }

    /// `open(O_CREAT)`: creates and opens; with `O_EXCL` an existing name is `Exists`,
    /// without it the existing file is opened (and truncated with `O_TRUNC`).
    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        caller: Caller,
    ) -> Result<(FsAttr, u64), FsError> {
        check_name(name)?;
        let access = access_mode(flags);
        let mode = mode & 0o7777 & !umask;
        match self
            .backend
            .create(parent, name, mode, caller, access)
            .await
        {
            Ok((attr, backend)) => Ok((
                attr,
                self.insert_handle(Handle::File {
                    ino: attr.ino,
                    backend,
                }),
            )),
            Err(FsError::Exists) if flags & libc::O_EXCL == 0 => {
                let existing = self.backend.lookup(parent, name).await?;
                match existing.kind {
                    FileType::File => {}
                    FileType::Dir => return Err(FsError::IsDir),
                    // The kernel opens these itself; one created meanwhile is a conflict.
                    FileType::Symlink
                    | FileType::Fifo
                    | FileType::Socket
                    | FileType::CharDevice
                    | FileType::BlockDevice => return Err(FsError::Exists),
                }
                let fh = self.open(existing.ino, flags).await?;
                Ok((self.backend.getattr(existing.ino).await?, fh))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a regular file. `O_TRUNC` (which the kernel normally turns into a `setattr`
    /// before `open`) truncates when the file is opened for writing.
    pub async fn open(&self, ino: Ino, flags: i32) -> Result<u64, FsError> {
        let access = access_mode(flags);
        let backend = self.backend.open(ino, access).await.map_err(inode_gone)?;
        if flags & libc::O_TRUNC != 0 && access != AccessMode::Read {
            let truncate = AttrChanges {
                size: Some(0),
                ..AttrChanges::default()
            };
            if let Err(e) = self.backend.setattr(ino, truncate).await {
                let _ = self.backend.release(ino, backend).await;
                return Err(e);
            }
        }
        Ok(self.insert_handle(Handle::File { ino, backend }))
    }

    pub async fn read(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        let h = self.file_handle(ino, fh)?;
        self.backend.read(ino, h, offset, size).await
    }

    /// Writes at `offset`, or at the backend's end of file when `flags` has `O_APPEND`
    /// (the kernel's offset comes from its cached size, which another mount may have
    /// made stale).
    pub async fn write(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        data: &[u8],
        flags: i32,
    ) -> Result<u32, FsError> {
        let h = self.file_handle(ino, fh)?;
        let at = (flags & libc::O_APPEND == 0).then_some(offset);
        self.backend.write(ino, h, at, data).await
    }

    /// `close(2)` of one descriptor: POSIX says every lock the process holds on the file is
    /// released, whichever descriptor took it; then the backend publishes the data.
    pub async fn flush(&self, ino: Ino, fh: u64, lock_owner: u64) -> Result<(), FsError> {
        let h = self.file_handle(ino, fh)?;
        // Publish first, then unlock: whoever takes the lock next (on any mount) must find
        // what was written under it.
        let flushed = self.backend.flush(ino, h).await;
        let unlocked = self.backend.unlock_all(ino, LockOwner(lock_owner)).await;
        flushed.and(unlocked)
    }

    /// Last close of an open file: drops its `flock` locks (`flock_owner`, when the file
    /// was flocked) and the handle.
    pub async fn release(
        &self,
        ino: Ino,
        fh: u64,
        flock_owner: Option<u64>,
    ) -> Result<(), FsError> {
        let h = self.file_handle(ino, fh)?;
        self.handles().remove(&fh);
        let unlocked = match flock_owner {
            Some(owner) => self.backend.unlock_all(ino, LockOwner(owner)).await,
            None => Ok(()),
        };
        let released = self.backend.release(ino, h).await;
        unlocked.and(released)
    }

    /// `fallocate(2)` on an open file. Mode 0 makes the file at least `offset + length`
    /// bytes long (the new bytes read as zeros); `FALLOC_FL_KEEP_SIZE` changes nothing;
    /// both first check that the part of the range past the end of file fits in the free
    /// space (`ENOSPC`), but reserve nothing: storage is allocated when bytes are written,
    /// so a later write can still find the disks full. `FALLOC_FL_PUNCH_HOLE |
    /// FALLOC_FL_KEEP_SIZE` makes the range read as zeros and frees its storage. Every
    /// other mode (zeroing, collapsing or inserting ranges) is `Unsupported`
    /// (`EOPNOTSUPP`, after which the kernel still sends the supported modes).
    pub async fn fallocate(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), FsError> {
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let keep_size = match mode {
            0 => false,
            libc::FALLOC_FL_KEEP_SIZE | PUNCH => true,
            _ => return Err(FsError::Unsupported),
        };
        let h = self.file_handle(ino, fh)?;
        if length == 0 {
            return Err(FsError::InvalidArgument);
        }
        let end = offset
            .checked_add(length)
            .filter(|&end| end <= MAX_FILE_SIZE)
            .ok_or(FsError::FileTooBig)?;
        if mode == PUNCH {
            return self.backend.punch_hole(ino, h, offset, length).await;
        }
        let size = self.backend.getattr(ino).await.map_err(inode_gone)?.size;
        if end <= size {
            return Ok(());
        }
        if end - size > self.backend.statfs().await?.free_bytes {
            return Err(FsError::NoSpace);
        }
        if !keep_size {
            self.backend.grow(ino, h, end).await?;
        }
        Ok(())
    }

    pub async fn fsync(&self, ino: Ino, fh: u64, datasync: bool) -> Result<(), FsError> {
        let h = self.file_handle(ino, fh)?;
        self.backend.fsync(ino, Some(h), datasync).await
    }

    pub async fn opendir(&self, ino: Ino) -> Result<u64, FsError> {
        if self.backend.getattr(ino).await.map_err(inode_gone)?.kind != FileType::Dir {
            return Err(FsError::NotDir);
        }
        Ok(self.insert_handle(Handle::Dir {
            ino,
            cookies: BTreeMap::new(),
        }))
    }

    /// Entries from FUSE offset `offset` on (0 = start). Each item's `offset` resumes after
    /// it: the handle remembers the entry name behind each cookie and asks the backend for
    /// names after it, so entries added or removed meanwhile neither shift nor repeat others.
    pub async fn readdir(&self, ino: Ino, fh: u64, offset: u64) -> Result<Vec<DirItem>, FsError> {
        let after = match self.handles().get(&fh) {
            Some(Handle::Dir { ino: i, cookies }) if *i == ino => match offset {
                0..FIRST_COOKIE => None,
                c => Some(cookies.get(&c).cloned().ok_or(FsError::InvalidArgument)?),
            },
            _ => return Err(FsError::BadHandle),
        };
        let mut items = Vec::new();
        if offset == 0 {
            items.push(DirItem {
                offset: 1,
                ino,
                kind: FileType::Dir,
                name: ".".into(),
            });
        }
        if offset <= 1 {
            // The kernel resolves `..` itself; its inode number here is informational.
            items.push(DirItem {
                offset: 2,
                ino,
                kind: FileType::Dir,
                name: "..".into(),
            });
        }
        let entries = self
            .backend
            .readdir(ino, after.as_deref(), self.opts.readdir_batch)
            .await?;
        let mut handles = self.handles();
        let Some(Handle::Dir { cookies, .. }) = handles.get_mut(&fh) else {
            return Err(FsError::BadHandle);
        };
        for e in entries {
            let cookie = self.next_cookie.fetch_add(1, Ordering::Relaxed);
            cookies.insert(cookie, e.name.clone());
            items.push(DirItem {
                offset: cookie,
                ino: e.ino,
                kind: e.kind,
                name: e.name,
            });
        }
        Ok(items)
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles().remove(&fh);
    }

    pub async fn fsyncdir(&self, ino: Ino, datasync: bool) -> Result<(), FsError> {
        self.backend.fsync(ino, None, datasync).await
    }

    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        check_name(name)?;
        self.backend.unlink(parent, name).await
    }

    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        check_name(name)?;
        self.backend.rmdir(parent, name).await
    }

    /// `renameat2` with raw `flags`: `RENAME_NOREPLACE` and `RENAME_EXCHANGE` (not both);
    /// anything else (`RENAME_WHITEOUT`) is `InvalidArgument`.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), FsError> {
        check_name(name)?;
        check_name(newname)?;
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        let f = RenameFlags {
            noreplace: flags & libc::RENAME_NOREPLACE != 0,
            exchange: flags & libc::RENAME_EXCHANGE != 0,
        };
        if flags & !known != 0 || (f.noreplace && f.exchange) {
            return Err(FsError::InvalidArgument);
        }
        self.backend
            .rename(parent, name, newparent, newname, f)
            .await
    }

    pub async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<FsAttr, FsError> {
        check_name(newname)?;
        self.backend.link(ino, newparent, newname).await
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        check_name(name)?;
        self.backend.symlink(parent, name, target, caller).await
    }

    pub async fn readlink(&self, ino: Ino) -> Result<OsString, FsError> {
        self.backend.readlink(ino).await
    }

    pub async fn statfs(&self) -> Result<FsStat, FsError> {
        self.backend.statfs().await
    }

    pub async fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply, FsError> {
        xattr_reply(self.backend.getxattr(ino, name).await?, size)
    }

    /// All names, each followed by a NUL, as `listxattr(2)` returns them.
    pub async fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply, FsError> {
        let mut buf = Vec::new();
        for name in self.backend.listxattr(ino).await? {
            buf.extend_from_slice(name.as_bytes());
            buf.push(0);
        }
        xattr_reply(buf, size)
    }

    /// `setxattr(2)` with raw `flags` (`XATTR_CREATE`, `XATTR_REPLACE`); `position` is a
    /// macOS resource-fork offset and must be 0.
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
    ) -> Result<(), FsError> {
        let how = match flags {
            0 => XattrMode::Any,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return Err(FsError::InvalidArgument),
        };
        if position != 0 {
            return Err(FsError::InvalidArgument);
        }
        if POSIX_ACL_XATTRS.contains(&name.as_bytes()) {
            // No POSIX ACLs. Without FUSE_POSIX_ACL the kernel passes them through as
            // plain attributes and enforces nothing, while tools take a stored ACL as
            // the mode set: `cp -a` (libacl) left copies at 0600. Refused, tools fall
            // back to `chmod`, as on any filesystem without ACLs.
            return Err(FsError::Unsupported);
        }
        self.backend.setxattr(ino, name, value, how).await
    }

    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        self.backend.removexattr(ino, name).await
    }

    /// `F_GETLK`: the first conflicting lock, or `lock` itself turned into `Unlock`.
    pub async fn getlk(&self, ino: Ino, owner: u64, lock: FileLock) -> Result<FileLock, FsError> {
        let found = self.backend.getlk(ino, LockOwner(owner), lock).await?;
        Ok(found.unwrap_or(FileLock {
            kind: LockKind::Unlock,
            pid: 0,
            ..lock
        }))
    }

    /// `F_SETLK` (`wait` false: `WouldBlock` on conflict) or `F_SETLKW` / blocking `flock`
    /// (`wait` true): retries after the backend's `wait_lock_change`, at most
    /// `lock_retry` apart, until granted, the caller is `interrupted` (a signal arrived:
    /// `Interrupted`, which is `EINTR`) or `lock_wait_limit` passes (`Interrupted`).
    pub async fn setlk(
        &self,
        ino: Ino,
        owner: u64,
        lock: FileLock,
        wait: bool,
        interrupted: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), FsError> {
        let deadline = self.opts.lock_wait_limit.map(|d| Instant::now() + d);
        loop {
            match self.backend.setlk(ino, LockOwner(owner), lock).await {
                Err(FsError::WouldBlock) if wait => {}
                other => return other,
            }
            if interrupted() {
                return Err(FsError::Interrupted);
            }
            let mut pause = self.opts.lock_retry;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(FsError::Interrupted);
                }
                pause = pause.min(left);
            }
            self.backend.wait_lock_change(ino, pause).await;
        }
    }
}

#[cfg(test)]
mod tests;
