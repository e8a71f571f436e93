//! The thin `fuser::Filesystem` over [`FsCore`]: each callback copies its arguments, spawns
//! a task on the mount's tokio runtime and replies from it, so no FUSE thread ever waits on
//! the backend (a blocking lock wait holds only its task). Translates fuser types to the
//! core's and errors to errno (through `errno.rs`); no filesystem logic lives here.

mod convert;
mod pending_signal;

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use tokio::runtime::Handle;

pub use self::convert::NotifierCache;
use self::convert::*;
use crate::backend::{AttrChanges, Caller, FileLock, NAME_MAX};

/// The block size `statfs` counts in.
const STATFS_BLOCK: u64 = 4096;
use crate::fs::{Access, FsCore};

/// The `fuser::Filesystem` handed to the session.
pub struct CairnFs {
    core: Arc<FsCore>,
    rt: Handle,
}

impl CairnFs {
    pub fn new(core: Arc<FsCore>, rt: Handle) -> Self {
        CairnFs { core, rt }
    }

    /// Who the request acts as (root squash applied).
    fn caller(&self, req: &Request) -> Caller {
        self.core.caller(req.uid(), req.gid(), req.pid())
    }

    /// `unlink` or (`dir`) `rmdir`.
    fn remove_name(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        reply: ReplyEmpty,
        dir: bool,
    ) {
        let (name, uid) = (name.to_owned(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                let access = Access::RemoveName {
                    dir: parent.0,
                    name: &name,
                };
                core.guard(uid, access).await?;
                if dir {
                    core.rmdir(parent.0, &name).await
                } else {
                    core.unlink(parent.0, &name).await
                }
            }
            .await;
            reply_empty(reply, if dir { "rmdir" } else { "unlink" }, r)
        });
    }

    fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<FsCore>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(f(self.core.clone()));
    }
}

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Locks go to the backend (cluster-wide), not the kernel's local lock table.
        let wanted = InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS;
        if let Err(missing) = config.add_capabilities(wanted) {
            tracing::warn!(?missing, "kernel lacks lock capabilities; locks stay local");
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (name, uid) = (name.to_owned(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::Lookup { dir: parent.0 }).await?;
                core.lookup(parent.0, &name).await
            }
            .await;
            reply_entry(&core, reply, "lookup", r);
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(|core| async move {
            let r = core.getattr(ino.0).await;
            reply_attr(&core, reply, "getattr", r);
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = AttrChanges {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        let (uid, via_handle) = (req.uid(), fh.is_some());
        self.spawn(|core| async move {
            let r = async {
                let access = Access::SetAttr {
                    ino: ino.0,
                    changes: &changes,
                    via_handle,
                };
                core.guard(uid, access).await?;
                core.setattr(ino.0, changes).await
            }
            .await;
            reply_attr(&core, reply, "setattr", r);
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(|core| async move {
            match core.readlink(ino.0).await {
                Ok(t) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str())),
                Err(e) => reply.error(fail("readlink", &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, who, uid) = (name.to_owned(), self.caller(req), req.uid());
        self.spawn(|core| async move {
            let r = async {
                let access = Access::MakeNode {
                    dir: parent.0,
                    mode,
                };
                core.guard(uid, access).await?;
                core.mknod(parent.0, &name, mode, umask, rdev, who).await
            }
            .await;
            reply_entry(&core, reply, "mknod", r);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, who, uid) = (name.to_owned(), self.caller(req), req.uid());
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::AddName { dir: parent.0 }).await?;
                core.mkdir(parent.0, &name, mode, umask, who).await
            }
            .await;
            reply_entry(&core, reply, "mkdir", r);
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove_name(req, parent, name, reply, false);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove_name(req, parent, name, reply, true);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target, who, uid) = (
            link_name.to_owned(),
            target.as_os_str().to_owned(),
            self.caller(req),
            req.uid(),
        );
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::AddName { dir: parent.0 }).await?;
                core.symlink(parent.0, &name, &target, who).await
            }
            .await;
            reply_entry(&core, reply, "symlink", r);
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname, uid) = (name.to_owned(), newname.to_owned(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                let access = Access::Rename {
                    dir: parent.0,
                    name: &name,
                    new_dir: newparent.0,
                    new_name: &newname,
                };
                core.guard(uid, access).await?;
                core.rename(parent.0, &name, newparent.0, &newname, flags.bits())
                    .await
            }
            .await;
            reply_empty(reply, "rename", r);
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (newname, uid) = (newname.to_owned(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::AddName { dir: newparent.0 })
                    .await?;
                core.link(ino.0, newparent.0, &newname).await
            }
            .await;
            reply_entry(&core, reply, "link", r);
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // No FOPEN_KEEP_CACHE: the kernel drops cached pages at every open, which gives
        // close-to-open consistency with other mounts.
        let uid = req.uid();
        self.spawn(|core| async move {
            let r = async {
                let access = Access::Open {
                    ino: ino.0,
                    flags: flags.0,
                };
                core.guard(uid, access).await?;
                core.open(ino.0, flags.0).await
            }
            .await;
            match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(fail("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(|core| async move {
            match core.read(ino.0, fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(fail("read", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(|core| async move {
            match core.write(ino.0, fh.0, offset, &data, flags.0).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(fail("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.spawn(|core| async move {
            reply_empty(reply, "flush", core.flush(ino.0, fh.0, lock_owner.0).await)
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(|core| async move {
            let r = core.release(ino.0, fh.0, lock_owner.map(|o| o.0)).await;
            reply_empty(reply, "release", r);
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(|core| async move {
            reply_empty(reply, "fsync", core.fsync(ino.0, fh.0, datasync).await)
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.spawn(|core| async move {
            let r = core.fallocate(ino.0, fh.0, offset, length, mode).await;
            reply_empty(reply, "fallocate", r)
        });
    }

    /// Not offered: `ENOSYS` makes the kernel copy through this mount's own reads and
    /// writes (its splice fallback) from then on, which is what a copy here would do.
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let uid = req.uid();
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::List { dir: ino.0 }).await?;
                core.opendir(ino.0).await
            }
            .await;
            match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(fail("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(|core| async move {
            match core.readdir(ino.0, fh.0, offset).await {
                Ok(items) => {
                    for item in items {
                        if reply.add(
                            INodeNo(item.ino),
                            item.offset,
                            file_type(item.kind),
                            &item.name,
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(fail("readdir", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(|core| async move {
            reply_empty(reply, "fsyncdir", core.fsyncdir(ino.0, datasync).await)
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.spawn(|core| async move {
            match core.statfs().await {
                Ok(s) => {
                    let blocks = |bytes: u64| bytes / STATFS_BLOCK;
                    reply.statfs(
                        blocks(s.capacity_bytes),
                        blocks(s.free_bytes),
                        blocks(s.free_bytes),
                        s.inodes + s.inodes_free,
                        s.inodes_free,
                        STATFS_BLOCK as u32,
                        NAME_MAX as u32,
                        STATFS_BLOCK as u32,
                    )
                }
                Err(e) => reply.error(fail("statfs", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let (name, value, uid) = (name.to_owned(), value.to_vec(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::WriteXattr { ino: ino.0 }).await?;
                core.setxattr(ino.0, &name, &value, flags, position).await
            }
            .await;
            reply_empty(reply, "setxattr", r);
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let (name, uid) = (name.to_owned(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::ReadXattr { ino: ino.0 }).await?;
                core.getxattr(ino.0, &name, size).await
            }
            .await;
            reply_xattr(reply, "getxattr", r)
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let uid = req.uid();
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::ReadXattr { ino: ino.0 }).await?;
                core.listxattr(ino.0, size).await
            }
            .await;
            reply_xattr(reply, "listxattr", r)
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (name, uid) = (name.to_owned(), req.uid());
        self.spawn(|core| async move {
            let r = async {
                core.guard(uid, Access::WriteXattr { ino: ino.0 }).await?;
                core.removexattr(ino.0, &name).await
            }
            .await;
            reply_empty(reply, "removexattr", r)
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Only called without `default_permissions`; the kernel checks permissions itself.
        self.spawn(|core| async move {
            reply_empty(reply, "access", core.getattr(ino.0).await.map(|_| ()))
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, who, uid) = (name.to_owned(), self.caller(req), req.uid());
        self.spawn(|core| async move {
            let r = async {
                let access = Access::Create {
                    dir: parent.0,
                    name: &name,
                    flags,
                };
                core.guard(uid, access).await?;
                core.create(parent.0, &name, mode, umask, flags, who).await
            }
            .await;
            match r {
                Ok((a, fh)) => reply.created(
                    &core.options().entry_ttl,
                    &file_attr(&a, core.options().io_block_size),
                    Generation(INODE_GENERATION),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(fail("create", &e)),
            }
        });
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        self.spawn(|core| async move {
            let r = match lock_kind(typ) {
                Ok(kind) => {
                    core.getlk(
                        ino.0,
                        lock_owner.0,
                        FileLock {
                            start,
                            end,
                            kind,
                            pid,
                        },
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(l) => reply.locked(l.start, l.end, lock_type(l.kind), l.pid),
                Err(e) => reply.error(fail("getlk", &e)),
            }
        });
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let waiter = req.pid();
        self.spawn(|core| async move {
            let r = match lock_kind(typ) {
                Ok(kind) => {
                    let lock = FileLock {
                        start,
                        end,
                        kind,
                        pid,
                    };
                    let interrupted = move || pending_signal::signal_pending(waiter);
                    core.setlk(ino.0, lock_owner.0, lock, sleep, &interrupted)
                        .await
                }
                Err(e) => Err(e),
            };
            reply_empty(reply, "setlk", r);
        });
    }
}
