//! Conversions between fuser's types and the core's (attributes, times, lock types,
//! errors) and the reply helpers the adapter's callbacks share; plus [`NotifierCache`],
//! the kernel-cache invalidation handle given to backends.

use std::ffi::OsStr;

use fuser::{
    Errno, FileAttr, FileType, Generation, INodeNo, ReplyAttr, ReplyEmpty, ReplyEntry, ReplyXattr,
    TimeOrNow,
};

use crate::backend::{Attr, FileKind, FsError, KernelCache, LockKind, SetTime};
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

pub(super) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

pub(super) fn file_attr(a: &Attr, blksize: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize,
        flags: 0,
    }
}

pub(super) fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
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
    r: Result<Attr, FsError>,
) {
    match r {
        Ok(a) => reply.entry(
            &core.options().entry_ttl,
            &file_attr(&a, core.options().io_block_size),
            Generation(a.generation),
        ),
        Err(e) => reply.error(fail(op, &e)),
    }
}

pub(super) fn reply_attr(
    core: &FsCore,
    reply: ReplyAttr,
    op: &'static str,
    r: Result<Attr, FsError>,
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
