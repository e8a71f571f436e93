//! The mapping between the metadata service's protocol (`cairn_common::fs`) and the
//! backend's types: attributes, file kinds, times, setattr and xattr arguments, statfs and
//! directory entries, and the one mapping of failed or refused calls to [`FsError`].
//!
//! Pure functions only: nothing here may depend on [`super::ClusterBackend`], its session
//! or its open files, so that every reply is read the same way wherever it comes from.

use std::ffi::OsStr;
use std::time::{Duration, UNIX_EPOCH};

use cairn_common::fs::{
    self as wire, AttrChanges, FileType, FsAttr, FsErrorKind, FsFailure, FsReply, FsStat, TimeSet,
    XattrMode,
};

use crate::backend::*;

/// The FUSE generation of every inode. The metadata service never reuses an inode number
/// (they come from a counter), so one value serves all. `FsAttr::generation` is something
/// else, the version of a file's content: given to the kernel, a new value for a known
/// inode number reads as "the number was reused" and the kernel marks its inode bad, so
/// descriptors already open on the file fail with EIO (`t115_kernel_caches`).
const INODE_GENERATION: u64 = 1;

/// A failed cluster call as the application sees it: `ENOSPC` when the storage nodes are
/// full, else `EIO` (the cause goes to the log).
pub(super) fn unavailable(op: &'static str, e: cairn_client::ClientError) -> FsError {
    if matches!(e, cairn_client::ClientError::NoSpace { .. }) {
        tracing::warn!(op, error = %e, "cluster out of space");
        return FsError::NoSpace;
    }
    FsError::Unavailable {
        op,
        source: Box::new(e),
    }
}

/// The one mapping of the metadata service's refusals to backend errors.
pub(super) fn refused(f: FsFailure) -> FsError {
    tracing::debug!(error = %f, "refused");
    match f.kind {
        FsErrorKind::NotFound => FsError::NotFound,
        FsErrorKind::Exists => FsError::Exists,
        FsErrorKind::NotEmpty => FsError::NotEmpty,
        FsErrorKind::IsDir => FsError::IsDir,
        FsErrorKind::NotDir => FsError::NotDir,
        FsErrorKind::NotPermitted => FsError::NotPermitted,
        FsErrorKind::InvalidArgument => FsError::InvalidArgument,
        FsErrorKind::NameTooLong => FsError::NameTooLong,
        FsErrorKind::CrossDevice => FsError::CrossDevice,
        FsErrorKind::NoData => FsError::NoData,
        FsErrorKind::TooBig => FsError::ValueTooBig,
        FsErrorKind::WouldBlock => FsError::WouldBlock,
        FsErrorKind::NoSpace => FsError::NoSpace,
        FsErrorKind::FileTooBig => FsError::FileTooBig,
        FsErrorKind::Fenced => FsError::Stale,
        FsErrorKind::Changed => FsError::Io {
            op: "compact",
            source: std::io::Error::other("the file changed or was opened meanwhile"),
        },
    }
}

pub(super) fn unexpected(what: &'static str, reply: FsReply) -> FsError {
    FsError::Io {
        op: what,
        source: std::io::Error::other(format!("unexpected reply {reply:?}")),
    }
}

/// A path component as the namespace stores it (UTF-8).
pub(super) fn name_of(name: &OsStr) -> Result<String, FsError> {
    check_name(name)?;
    name.to_str()
        .map(str::to_owned)
        .ok_or(FsError::InvalidArgument)
}

fn kind_of(t: FileType) -> FileKind {
    match t {
        FileType::File => FileKind::File,
        FileType::Dir => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
    }
}

pub(super) fn to_attr(a: &FsAttr) -> Attr {
    let time = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
    Attr {
        ino: a.ino,
        kind: kind_of(a.kind),
        size: a.size,
        blocks: a.allocated.div_ceil(512),
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        atime: time(a.atime_ns),
        mtime: time(a.mtime_ns),
        ctime: time(a.ctime_ns),
        generation: INODE_GENERATION,
    }
}

fn time_set(t: SetTime) -> TimeSet {
    match t {
        SetTime::Now => TimeSet::Now,
        SetTime::At(at) => TimeSet::AtNs(
            at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        ),
    }
}

/// A `setattr` as the metadata service takes it.
pub(super) fn attr_changes(changes: SetAttr) -> AttrChanges {
    AttrChanges {
        mode: changes.mode,
        uid: changes.uid,
        gid: changes.gid,
        size: changes.size,
        atime: changes.atime.map(time_set),
        mtime: changes.mtime.map(time_set),
    }
}

pub(super) fn xattr_mode(how: XattrSet) -> XattrMode {
    match how {
        XattrSet::Any => XattrMode::Any,
        XattrSet::Create => XattrMode::Create,
        XattrSet::Replace => XattrMode::Replace,
    }
}

pub(super) fn to_dir_entry(e: wire::DirEntry) -> DirEntry {
    DirEntry {
        name: e.name.into(),
        ino: e.ino,
        kind: kind_of(e.kind),
    }
}

/// The cluster's capacity in `statfs` terms (inodes are not limited: 2^32 are always
/// reported free).
pub(super) fn to_statfs(s: FsStat) -> StatFs {
    const BLOCK: u64 = 4096;
    const SPARE_INODES: u64 = 1 << 32;
    StatFs {
        blocks: s.capacity_bytes / BLOCK,
        blocks_free: s.free_bytes / BLOCK,
        blocks_available: s.free_bytes / BLOCK,
        files: s.inodes + SPARE_INODES,
        files_free: SPARE_INODES,
        block_size: BLOCK as u32,
        name_max: NAME_MAX as u32,
    }
}
