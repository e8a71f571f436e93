//! The one mapping from [`FsError`] to a Linux errno (exhaustive: a new error variant does
//! not compile until it has an errno here). Knows nothing of fuser; the adapter wraps the
//! number.

use crate::backend::FsError;

/// The errno the kernel returns to the application for `err`.
pub fn errno(err: &FsError) -> i32 {
    match err {
        FsError::NotFound => libc::ENOENT,
        FsError::Exists => libc::EEXIST,
        FsError::NotEmpty => libc::ENOTEMPTY,
        FsError::IsDir => libc::EISDIR,
        FsError::NotDir => libc::ENOTDIR,
        FsError::NameTooLong => libc::ENAMETOOLONG,
        FsError::PermissionDenied => libc::EACCES,
        FsError::NotPermitted => libc::EPERM,
        FsError::InvalidArgument => libc::EINVAL,
        FsError::NoSpace => libc::ENOSPC,
        FsError::FileTooBig => libc::EFBIG,
        FsError::ValueTooBig => libc::E2BIG,
        FsError::Stale | FsError::StaleInode => libc::ESTALE,
        FsError::Io { .. } | FsError::Unavailable { .. } => libc::EIO,
        FsError::CrossDevice => libc::EXDEV,
        FsError::NoData => libc::ENODATA,
        FsError::Range => libc::ERANGE,
        FsError::WouldBlock => libc::EAGAIN,
        FsError::Interrupted => libc::EINTR,
        FsError::TooManyLinks => libc::EMLINK,
        FsError::BadHandle => libc::EBADF,
        FsError::Unsupported => libc::EOPNOTSUPP,
        FsError::ReadOnly => libc::EROFS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_errors_map_to_their_errno() {
        assert_eq!(errno(&FsError::NotFound), libc::ENOENT);
        assert_eq!(errno(&FsError::Exists), libc::EEXIST);
        assert_eq!(errno(&FsError::NotEmpty), libc::ENOTEMPTY);
        assert_eq!(errno(&FsError::NameTooLong), libc::ENAMETOOLONG);
        assert_eq!(errno(&FsError::NoData), libc::ENODATA);
        assert_eq!(errno(&FsError::WouldBlock), libc::EAGAIN);
    }

    #[test]
    fn fenced_session_is_estale_and_cluster_failure_is_eio() {
        assert_eq!(errno(&FsError::Stale), libc::ESTALE);
        let err = FsError::Unavailable {
            op: "commit",
            source: "no leader".into(),
        };
        assert_eq!(errno(&err), libc::EIO);
        let err = FsError::Io {
            op: "read",
            source: std::io::Error::other("disk"),
        };
        assert_eq!(errno(&err), libc::EIO);
    }
}
