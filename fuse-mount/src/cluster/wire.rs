//! What the backend's contract adds to the metadata service's protocol (`cairn_common::fs`,
//! whose vocabulary both share): names as the kernel's bytes (UTF-8 on the wire), and the
//! one mapping of failed or refused calls to [`FsError`].
//!
//! Pure functions only: nothing here may depend on [`super::ClusterBackend`], its session
//! or its open files, so that every reply is read the same way wherever it comes from.

use std::ffi::OsStr;

use cairn_common::fs::{self as wire, FsErrorKind, FsFailure, FsReply};

use crate::backend::*;

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
        FsErrorKind::AccessDenied => {
            tracing::warn!(error = %f, "refused by the cluster's grants");
            FsError::PermissionDenied
        }
        FsErrorKind::Changed => FsError::Io {
            op: "compact",
            source: std::io::Error::other("the file changed or was opened meanwhile"),
        },
        // Read by the flush itself (it stores the bytes in chunks instead).
        FsErrorKind::NotInline => FsError::Io {
            op: "write inline",
            source: std::io::Error::other(f.detail),
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

pub(super) fn to_dir_entry(e: wire::DirEntry) -> DirEntry {
    DirEntry {
        name: e.name.into(),
        ino: e.ino,
        kind: e.kind,
    }
}
