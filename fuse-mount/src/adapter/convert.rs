//! Conversions between fuser's types and the core's (attributes, times, capacity, lock
//! types, errors) and the reply helpers the adapter's callbacks share; plus
//! [`NotifierCache`], the kernel-cache invalidation handle given to backends.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileType as KernelFileType, Generation, INodeNo, ReplyAttr, ReplyEmpty,
    ReplyEntry, ReplyXattr, TimeOrNow,
};

use crate::backend::{FileType, FsAttr, FsError, KernelCache, LockKind, TimeSet};
use crate::errno::errno;
use crate::fs::{FsCore, XattrReply};

/// A fuser errno for `err`, logging the errors a person should see.
pub(super) fn fail(op: &'static str, err: &FsError) -> Errno {
    match err {
        FsError::Io { .. } | FsError::Unavailable { .. } | FsError::Stale => {
            tracing::warn!(op, error = %err, "request failed");
        }
        _ => tracing::trace!(op, error = %err, "request failed"),
    }
    Errno::from_i32(errno(err))
}

pub(super) fn file_type(kind: FileType) -> KernelFileType {
    match kind {
        FileType::File => KernelFileType::RegularFile,
        FileType::Dir => KernelFileType::Directory,
        FileType::Symlink => KernelFileType::Symlink,
        FileType::Fifo => KernelFileType::NamedPipe,
        FileType::Socket => KernelFileType::Socket,
        FileType::CharDevice => KernelFileType::CharDevice,
        FileType::BlockDevice => KernelFileType::BlockDevice,
    }
}

/// The FUSE generation of every inode. Backends never reuse an inode number, so one value
/// serves all. [`FsAttr::generation`] is something else, the version of a file's content:
/// given to the kernel, a new value for a known inode number reads as "the number was
/// reused" and the kernel marks its inode bad, so descriptors already open on the file
/// fail with EIO (`t115_kernel_caches`).
pub(super) const INODE_GENERATION: u64 = 1;

fn system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

pub(super) fn file_attr(a: &FsAttr, blksize: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.allocated.div_ceil(512),
        atime: system_time(a.atime_ns),
        mtime: system_time(a.mtime_ns),
        ctime: system_time(a.ctime_ns),
        crtime: system_time(a.ctime_ns),
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize,
        flags: 0,
    }
}

pub(super) fn set_time(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::AtNs(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        ),
    })
}

pub(super) fn lock_kind(typ: i32) -> Result<LockKind, FsError> {
    match typ {
        libc::F_RDLCK => Ok(LockKind::Read),
        libc::F_WRLCK => Ok(LockKind::Write),
        libc::F_UNLCK => Ok(LockKind::Unlock),
        _ => Err(FsError::InvalidArgument),
    }
}

pub(super) fn lock_type(kind: LockKind) -> i32 {
    match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    }
}

pub(super) fn reply_entry(
    core: &FsCore,
    reply: ReplyEntry,
    op: &'static str,
    r: Result<FsAttr, FsError>,
) {
    match r {
        Ok(a) => reply.entry(
            &core.options().entry_ttl,
            &file_attr(&a, core.options().io_block_size),
            Generation(INODE_GENERATION),
        ),
        Err(e) => reply.error(fail(op, &e)),
    }
}

pub(super) fn reply_attr(
    core: &FsCore,
    reply: ReplyAttr,
    op: &'static str,
    r: Result<FsAttr, FsError>,
) {
    match r {
        Ok(a) => reply.attr(
            &core.options().attr_ttl,
            &file_attr(&a, core.options().io_block_size),
        ),
        Err(e) => reply.error(fail(op, &e)),
    }
}

pub(super) fn reply_empty(reply: ReplyEmpty, op: &'static str, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(fail(op, &e)),
    }
}

pub(super) fn reply_xattr(reply: ReplyXattr, op: &'static str, r: Result<XattrReply, FsError>) {
    match r {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        Err(e) => reply.error(fail(op, &e)),
    }
}

/// Kernel cache invalidation through the session's notifier.
pub struct NotifierCache(pub fuser::Notifier);

impl KernelCache for NotifierCache {
    fn invalidate_inode(&self, ino: u64, offset: i64, len: i64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), offset, len) {
            tracing::debug!(ino, error = %e, "inode invalidation failed");
        }
    }

    fn invalidate_entry(&self, parent: u64, name: &OsStr) {
        if let Err(e) = self.0.inval_entry(INodeNo(parent), name) {
            tracing::debug!(parent, error = %e, "entry invalidation failed");
        }
    }
}
