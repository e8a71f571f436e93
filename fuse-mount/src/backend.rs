//! The contract between the filesystem core (`fs.rs`) and whatever stores the namespace and
//! the bytes: [`FsBackend`], its typed results ([`FsAttr`], [`DirEntry`], [`FsStat`], locks)
//! and its one error type [`FsError`]. Knows nothing of FUSE, the kernel or errno
//! (`errno.rs` maps errors); `memory.rs` is the reference implementation that every other
//! backend is tested against.
//!
//! The vocabulary is `cairn_common::fs`'s, the same the metadata service speaks:
//! attributes ([`FsAttr`], times in nanoseconds), file types, `setattr` changes and times,
//! xattr modes, capacity ([`FsStat`]) and the limits. What is the backend's own: names as
//! raw bytes ([`DirEntry`], [`check_name`]; the kernel's names are bytes, while the
//! cluster's protocol carries UTF-8), handles, lock owners, and [`FsError`], which adds
//! local failures (IO, an unavailable cluster, bad handles) to the protocol's refusals.
//!
//! Semantics every backend must keep (the POSIX tests and the model test check them):
//! - Inode numbers are stable while an inode exists and never reused; [`ROOT_INO`] is the
//!   root directory. (So the adapter gives the kernel one FUSE generation for every inode;
//!   [`FsAttr::generation`] is the version of a file's content, bumped by every change of
//!   it.)
//! - Names are raw bytes, at most [`NAME_MAX`] bytes, never empty, `.`, `..`, or containing
//!   `/` or NUL ([`check_name`]). Every method that takes a name validates it.
//! - Directory `nlink` is 2 plus the number of subdirectories; file `nlink` counts hard links.
//! - Special files (FIFOs, sockets, device nodes) are inodes with a type, a device number
//!   ([`FsAttr::rdev`]), owner and mode, linked, renamed and unlinked like regular files,
//!   with no content: they are never opened through the backend and have no size to set.
//! - A write is visible to every later read on this mount, whatever the handle (buffering,
//!   if any, is per inode, not per handle). [`FsBackend::flush`] (on every `close`) makes the
//!   data visible to other mounts (close-to-open); [`FsBackend::fsync`] returns only when data
//!   and metadata are durable (DESIGN.md invariant 1).
//! - Unlinked-but-open: an inode whose `nlink` drops to 0 keeps its data while any handle
//!   from [`FsBackend::open`] / [`FsBackend::create`] is not yet released, and is freed at the
//!   last [`FsBackend::release`].
//! - Locks: [`FsBackend::setlk`] never blocks; a conflict is [`FsError::WouldBlock`]. The core
//!   makes blocking requests (`F_SETLKW`, blocking `flock`) by retrying after
//!   [`FsBackend::wait_lock_change`] returns, so a backend only needs to wake waiters early
//!   (or not: the default just sleeps). Locks belong to an owner ([`LockOwner`]): POSIX
//!   locks to the kernel's per-process owner, `flock` locks to the open file (the kernel
//!   sends `flock` as a whole-file lock, as NFS does: fuser 0.18 does not pass the
//!   `FUSE_LK_FLOCK` flag, so `flock` and `fcntl` locks on one file conflict with each other).
//!   The core releases an owner's locks on `close` (POSIX) and last close (`flock`) through
//!   [`FsBackend::unlock_all`]; a cluster backend must also drop them when its session
//!   lease expires. Lock pids of other hosts mean nothing here (the kernel cannot map them).
//!   fuser 0.18 answers FUSE_INTERRUPT with ENOSYS, so the adapter tells a waiting lock
//!   that its caller was signalled (`flock -w`'s alarm) by looking for the caller's
//!   pending signal (`adapter/pending_signal.rs`): the wait ends with `EINTR`;
//!   `FsOptions::lock_wait_limit` bounds it too if set.
//! - Permissions are checked by the kernel (`default_permissions`) against the attributes
//!   the backend returns; backends do not check them again. New inodes get `mode` with the
//!   umask already applied.
//! - The kernel caches attributes and entries for the core's TTLs (1 s by default) and file
//!   pages until the next `open`. A backend that learns of changes made elsewhere calls the
//!   [`KernelCache`] it was given. The kernel's `forget` is not forwarded: an inode may be
//!   freed while the kernel still knows its number; later calls for it get `NotFound`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use cairn_common::fs::FsErrorKind;
pub use cairn_common::fs::{
    AttrChanges, FileType, FsAttr, FsStat, Ino, Special, TimeSet, XattrMode, MAX_FILE_SIZE,
    NAME_MAX, ROOT_INO, SYMLINK_MAX,
};

/// Errors of every backend operation, each mapped to one errno in `errno.rs`.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("is a directory")]
    IsDir,
    #[error("not a directory")]
    NotDir,
    #[error("name longer than {NAME_MAX} bytes")]
    NameTooLong,
    /// The caller lacks permission (`EACCES`).
    #[error("permission denied")]
    PermissionDenied,
    /// The operation is never allowed on this object (`EPERM`): hard link to a directory,
    /// a device node made by a squashed root.
    #[error("operation not permitted")]
    NotPermitted,
    #[error("invalid argument")]
    InvalidArgument,
    #[error("no space left")]
    NoSpace,
    #[error("file too large")]
    FileTooBig,
    /// An extended attribute value above the size limit (`E2BIG`).
    #[error("attribute value too large")]
    ValueTooBig,
    /// This mount's session was fenced (lease expired); nothing it sends is accepted.
    #[error("session is fenced (stale)")]
    Stale,
    /// An inode the kernel named is gone (another mount removed or replaced the file
    /// between the kernel's lookup and this request). `ESTALE` makes the kernel look the
    /// path up again once, so `open` of a file being replaced by `rename` finds the new
    /// one instead of failing with `ENOENT`.
    #[error("stale file handle: the inode is gone")]
    StaleInode,
    /// Local IO failed.
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The cluster could not serve the request (no leader, too few shards, timeout).
    #[error("{op}: cluster unavailable: {source}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cross-device link")]
    CrossDevice,
    /// The extended attribute does not exist (`ENODATA`).
    #[error("no such attribute")]
    NoData,
    /// A caller's buffer is too small (`ERANGE`).
    #[error("result does not fit the buffer")]
    Range,
    /// A non-blocking lock conflicts with another owner's lock (`EAGAIN`).
    #[error("lock held by another owner")]
    WouldBlock,
    /// A blocking lock wait gave up (`EINTR`).
    #[error("interrupted")]
    Interrupted,
    #[error("too many links")]
    TooManyLinks,
    /// The handle is unknown or not open for this access (`EBADF`).
    #[error("bad file handle")]
    BadHandle,
    /// Not offered by this filesystem (`EOPNOTSUPP`): `fallocate` modes other than 0,
    /// `FALLOC_FL_KEEP_SIZE` and punching holes, POSIX ACLs.
    #[error("operation not supported")]
    Unsupported,
    #[error("read-only filesystem")]
    ReadOnly,
}

/// Who asks for a new inode: it becomes the owner (the setgid bit of the parent directory
/// overrides `gid`, as POSIX says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    /// Root, for inodes made by tools rather than by a process on a mount.
    pub const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 0,
    };
}

/// One directory entry, in the byte order of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub ino: Ino,
    pub kind: FileType,
}

/// A backend's id for one open file (from `open`/`create`, until `release`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(pub u64);

/// How a file is opened (the access mode; `O_TRUNC` and `O_APPEND` are handled by the core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    Read,
    Write,
    ReadWrite,
}

/// Identifies who holds a lock: the kernel's lock owner id (per process for POSIX locks,
/// per open file for `flock`). Unique within one mount; a cluster backend qualifies it
/// with its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockOwner(pub u64);

pub use cairn_common::locks::{FileLock, LockKind};

impl From<cairn_common::locks::LockError> for FsError {
    fn from(e: cairn_common::locks::LockError) -> Self {
        match e {
            cairn_common::locks::LockError::InvalidRange => FsError::InvalidArgument,
            cairn_common::locks::LockError::Conflict => FsError::WouldBlock,
        }
    }
}

/// What the kernel caches and the backend may need to invalidate when another mount
/// changes something (attach with [`FsBackend::attach_kernel_cache`]). Calls must not be
/// made while handling a request for the same inode synchronously on a FUSE thread; the
/// core never does, since every request runs on a tokio task.
pub trait KernelCache: Send + Sync {
    /// Forget cached attributes of `ino` and cached data in `offset..offset+len`
    /// (`len` 0 means to the end; a negative `offset` means attributes only).
    fn invalidate_inode(&self, ino: Ino, offset: i64, len: i64);
    /// Forget the cached entry `name` in directory `parent`.
    fn invalidate_entry(&self, parent: Ino, name: &OsStr);
}

/// Checks one path component (see the module header; the rules are
/// [`cairn_common::fs::name_fault`]'s).
pub fn check_name(name: &OsStr) -> Result<(), FsError> {
    match cairn_common::fs::name_fault(name.as_bytes()) {
        None => Ok(()),
        Some(FsErrorKind::NameTooLong) => Err(FsError::NameTooLong),
        Some(_) => Err(FsError::InvalidArgument),
    }
}

/// The storage behind a mount: inode-based, async, shared by every FUSE request.
///
/// `async-trait` rather than native `async fn` in traits: the mount takes an
/// `Arc<dyn FsBackend>` (the binary chooses memory or cluster at run time) and native async
/// trait methods are not object safe; async-trait boxes each future as `Send`, which the
/// core needs because it runs every request on a multi-threaded tokio runtime. One
/// allocation per request is noise next to a FUSE round trip.
///
/// Cancel safety: the core never drops these futures midway except at shutdown, so a
/// backend need not be cancel safe, but a dropped call must not corrupt its state.
#[async_trait]
pub trait FsBackend: Send + Sync + 'static {
    /// Called once after mounting with a way to invalidate kernel caches.
    fn attach_kernel_cache(&self, _cache: Arc<dyn KernelCache>) {}

    /// Whether every operation is refused from now on (`Stale`): a cluster backend whose
    /// session ended or whose lease lapsed without renewal.
    fn is_fenced(&self) -> bool {
        false
    }

    /// The entry `name` in directory `parent`.
    async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FsAttr, FsError>;
    async fn getattr(&self, ino: Ino) -> Result<FsAttr, FsError>;
    async fn setattr(&self, ino: Ino, changes: AttrChanges) -> Result<FsAttr, FsError>;

    /// Creates an empty regular file and opens it; `Exists` if the name is taken
    /// (always `O_EXCL`: the core handles `O_CREAT` without it). Owner from `caller`, group
    /// from `caller` or a setgid parent.
    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
        access: AccessMode,
    ) -> Result<(FsAttr, HandleId), FsError>;
    /// `mknod`: creates an empty regular file without opening it (`special` is `None`),
    /// or a FIFO, socket or device node, which is stored with its type and device number
    /// and never opened through the backend (the kernel serves those itself).
    async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        special: Option<Special>,
        caller: Caller,
    ) -> Result<FsAttr, FsError>;
    async fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError>;
    async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        caller: Caller,
    ) -> Result<FsAttr, FsError>;
    async fn readlink(&self, ino: Ino) -> Result<OsString, FsError>;
    /// A new hard link `newparent/newname` to `ino` (`NotPermitted` for directories).
    async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<FsAttr, FsError>;
    /// Removes a non-directory entry (`IsDir` for a directory).
    async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError>;
    /// Removes an empty directory (`NotDir`, `NotEmpty`).
    async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError>;
    /// Atomically moves `parent/name` to `newparent/newname`, replacing a file with a
    /// non-directory or an empty directory with a directory. `noreplace`: `Exists` if the
    /// target exists. `exchange`: swap two existing entries. Moving a directory into its
    /// own subtree is `InvalidArgument`; two names of one inode: nothing happens.
    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), FsError>;

    /// Up to `limit` entries of directory `ino` whose names sort strictly after `after`
    /// (byte order), without `.` and `..`. Resuming after a name keeps a listing correct
    /// while the directory changes: names present throughout appear exactly once.
    async fn readdir(
        &self,
        ino: Ino,
        after: Option<&OsStr>,
        limit: usize,
    ) -> Result<Vec<DirEntry>, FsError>;

    /// Opens a regular file (directories are never opened through the backend).
    async fn open(&self, ino: Ino, access: AccessMode) -> Result<HandleId, FsError>;
    /// Reads up to `len` bytes at `offset`: short only at end of file; holes read as zeros.
    async fn read(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, FsError>;
    /// Writes `data` at `offset`, or at the current end of file when `offset` is `None`
    /// (`O_APPEND`, atomic with respect to other appends). Returns the bytes written.
    async fn write(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<u32, FsError>;
    /// `fallocate` mode 0 past the end of file: makes the file (open for writing through
    /// `handle`) at least `size` bytes long, never shorter, also when another writer grew
    /// or wrote it meanwhile; the new bytes read as zeros. Reserves no space: storage is
    /// taken when bytes are written (the core checked the free space first).
    async fn grow(&self, ino: Ino, handle: HandleId, size: u64) -> Result<FsAttr, FsError>;
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)` on a file open for writing through `handle`:
    /// `offset..offset + len` reads as zeros afterwards and holds no storage (where it
    /// covers whole pages or chunk runs); the size does not change, the part past the end
    /// of file is ignored. Ordered after this mount's earlier writes to the file.
    async fn punch_hole(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u64,
    ) -> Result<(), FsError>;
    /// A new regular file `parent/name` (`Exists` if taken) holding `ino`'s content as
    /// this mount sees it (its buffered writes included), sharing the storage where the
    /// backend can: the cluster's chunks are immutable, so a clone is one metadata commit
    /// and the two files diverge from then on. Owner from `caller`.
    async fn clone_file(
        &self,
        ino: Ino,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError>;
    /// Called at every `close(2)` of a descriptor: make written data visible to other
    /// mounts (close-to-open). Need not be durable.
    async fn flush(&self, ino: Ino, handle: HandleId) -> Result<(), FsError>;
    /// Returns only when the file's data (and, unless `datasync`, its metadata) is durable.
    /// `handle` is `None` for directories (`fsyncdir`): make the namespace durable.
    async fn fsync(
        &self,
        ino: Ino,
        handle: Option<HandleId>,
        datasync: bool,
    ) -> Result<(), FsError>;
    /// The last close of an open file: drop the handle; free the inode if it is unlinked
    /// and this was its last handle.
    async fn release(&self, ino: Ino, handle: HandleId) -> Result<(), FsError>;

    async fn statfs(&self) -> Result<FsStat, FsError>;

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError>;
    async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrMode,
    ) -> Result<(), FsError>;
    async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>, FsError>;
    async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError>;

    /// The first lock of another owner that conflicts with `lock`, if any.
    async fn getlk(
        &self,
        ino: Ino,
        owner: LockOwner,
        lock: FileLock,
    ) -> Result<Option<FileLock>, FsError>;
    /// Takes, converts or (with `LockKind::Unlock`) releases `lock` for `owner`, splitting
    /// or merging the owner's own ranges as POSIX says. Never waits: `WouldBlock`.
    async fn setlk(&self, ino: Ino, owner: LockOwner, lock: FileLock) -> Result<(), FsError>;
    /// Releases every lock `owner` holds on `ino` (close of a descriptor / open file).
    async fn unlock_all(&self, ino: Ino, owner: LockOwner) -> Result<(), FsError>;
    /// Returns when locks on `ino` may have changed, or after `max_wait`. The default
    /// sleeps `max_wait`: correct, only slower to grant.
    async fn wait_lock_change(&self, _ino: Ino, max_wait: Duration) {
        tokio::time::sleep(max_wait).await;
    }
}

/// `renameat2` flags the backend understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_name_accepts_255_bytes_and_rejects_256() {
        let ok = OsString::from("a".repeat(NAME_MAX));
        assert!(check_name(&ok).is_ok());
        let long = OsString::from("a".repeat(NAME_MAX + 1));
        assert!(matches!(check_name(&long), Err(FsError::NameTooLong)));
    }

    #[test]
    fn check_name_rejects_dots_slash_nul_and_empty() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            let name = OsStr::from_bytes(bad);
            assert!(
                matches!(check_name(name), Err(FsError::InvalidArgument)),
                "{name:?}"
            );
        }
        assert!(check_name(OsStr::from_bytes(b"...")).is_ok());
        assert!(check_name(OsStr::from_bytes(&[0xff, 0xfe])).is_ok());
    }
}
