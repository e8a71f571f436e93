//! The filesystem protocol between a mount (`cairn-mount`) and the metadata service:
//! inode-level requests, their replies and their errors. Internal to Cairn (like the Raft
//! RPCs): it travels as JSON inside one gRPC method (`MetaService.FsCall`), so the mount
//! and the metadata service share these types instead of a second schema. Every change
//! names the session it comes from; a change from a session that is not open (its lease
//! expired, it was closed, or it never existed) is refused with [`FsErrorKind::Fenced`].

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkMeta;
use crate::locks::FileLock;
use crate::{ChunkId, Redundancy};

/// An inode number.
pub type Ino = u64;
pub type SessionId = u64;

/// The root directory (FUSE's `FUSE_ROOT_ID`): its entries are the buckets.
pub const ROOT_INO: Ino = 1;

/// Longest name of one path component, in bytes (`ENAMETOOLONG` beyond).
pub const NAME_MAX: usize = 255;
/// Longest symlink target, in bytes (Linux `PATH_MAX` including the NUL).
pub const SYMLINK_MAX: usize = 4095;
/// Largest extended attribute value and most attributes per inode.
pub const XATTR_VALUE_MAX: usize = 64 * 1024;
pub const XATTR_NAME_MAX: usize = 255;
pub const XATTRS_PER_INODE_MAX: usize = 128;
/// Most extents one write may commit.
pub const MAX_EXTENTS_PER_WRITE: usize = 4096;
/// Largest file size and end of any write: Linux's `MAX_LFS_FILESIZE` (`EFBIG` beyond).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// The largest inline threshold a cluster may be set to (`FsChange::WriteInline`): inline
/// bytes travel in one Raft entry and live on every metadata replica.
pub const INLINE_MAX_LIMIT: u64 = 1 << 20;

/// What an inode is. New kinds are added at the end, never renamed: the names are in the
/// Raft log and in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileType {
    File,
    Dir,
    Symlink,
    /// A named pipe (`mkfifo`).
    Fifo,
    /// A unix domain socket's name (`bind` of an `AF_UNIX` socket).
    Socket,
    CharDevice,
    BlockDevice,
}

/// A special file: what `mknod(2)` makes besides a regular file. The filesystem stores
/// it (type, device number) like any inode; its bytes never are (a FIFO's and a socket's
/// data stay in the kernel of the host that opens them, and a device node names a device
/// of the host that opens it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Special {
    Fifo,
    Socket,
    /// `rdev`: the device number as FUSE carries it (the kernel's `new_encode_dev`: 12 bits
    /// of major, 20 of minor).
    CharDevice {
        rdev: u32,
    },
    BlockDevice {
        rdev: u32,
    },
}

impl Special {
    pub fn file_type(self) -> FileType {
        match self {
            Special::Fifo => FileType::Fifo,
            Special::Socket => FileType::Socket,
            Special::CharDevice { .. } => FileType::CharDevice,
            Special::BlockDevice { .. } => FileType::BlockDevice,
        }
    }

    /// The device number (0 for a FIFO or a socket).
    pub fn rdev(self) -> u32 {
        match self {
            Special::Fifo | Special::Socket => 0,
            Special::CharDevice { rdev } | Special::BlockDevice { rdev } => rdev,
        }
    }

    /// Whether this is a device node (making one takes `CAP_MKNOD`).
    pub fn is_device(self) -> bool {
        matches!(
            self,
            Special::CharDevice { .. } | Special::BlockDevice { .. }
        )
    }
}

/// An inode's attributes, as `stat(2)` shows them. Times in nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsAttr {
    pub ino: Ino,
    pub kind: FileType,
    pub size: u64,
    /// Bytes stored in extents (smaller than `size` for sparse files).
    pub allocated: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub atime_ns: u64,
    pub mtime_ns: u64,
    pub ctime_ns: u64,
    /// The version of the content, bumped by every change of it (not a FUSE inode
    /// generation: inode numbers are never reused).
    pub generation: u64,
    /// A device node's device number ([`Special::rdev`]); 0 for everything else.
    #[serde(default)]
    pub rdev: u32,
}

/// What `Create` makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NewNode {
    File,
    Dir,
    Symlink {
        target: String,
    },
    /// A FIFO, socket or device node.
    Special(Special),
}

/// A new time for `setattr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeSet {
    /// The clock of whoever applies the change (for a cluster, the metadata leader's).
    Now,
    AtNs(u64),
}

/// The changes of one `setattr`; `None` leaves a field alone. Setting anything updates
/// `ctime`; changing `size` also updates `mtime` unless `mtime` is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

/// A run of file bytes `offset..offset+len` stored at `chunk_offset` in `chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileExtent {
    pub offset: u64,
    pub len: u64,
    pub chunk: ChunkId,
    pub chunk_offset: u64,
}

/// `setxattr` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrMode {
    /// Create or replace.
    Any,
    /// Fail with `Exists` if present.
    Create,
    /// Fail with `NoData` if absent.
    Replace,
}

/// A change to the namespace, applied through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsChange {
    /// A new file, directory, symlink or special file. A directory at the root is a new
    /// bucket. `hold`: the session opens the new file at once (see `Hold`).
    Create {
        parent: Ino,
        name: String,
        node: NewNode,
        mode: u32,
        uid: u32,
        gid: u32,
        hold: bool,
    },
    Link {
        ino: Ino,
        parent: Ino,
        name: String,
    },
    /// Removes a non-directory entry, or (`dir`) an empty directory.
    Unlink {
        parent: Ino,
        name: String,
        dir: bool,
    },
    Rename {
        parent: Ino,
        name: String,
        new_parent: Ino,
        new_name: String,
        noreplace: bool,
        exchange: bool,
    },
    SetAttr {
        ino: Ino,
        changes: AttrChanges,
    },
    /// Points the byte ranges of `extents` at new, durable chunks (described in `chunks`)
    /// and grows the file to at least `size_at_least`.
    Write {
        ino: Ino,
        extents: Vec<FileExtent>,
        chunks: Vec<(ChunkId, ChunkMeta)>,
        size_at_least: u64,
    },
    /// Rewrites a fragmented file's extents into fewer, new chunks holding the same
    /// bytes. Applies only if the file's generation is still `generation` and no session
    /// has it open; the content, generation and times do not change.
    Compact {
        ino: Ino,
        generation: u64,
        extents: Vec<FileExtent>,
        chunks: Vec<(ChunkId, ChunkMeta)>,
    },
    SetXattr {
        ino: Ino,
        name: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        mode: XattrMode,
    },
    RemoveXattr {
        ino: Ino,
        name: String,
    },
    /// The session has the inode open: an unlinked inode lives until every holder
    /// releases it (or its session ends). Answered with the file's extent map.
    Hold {
        ino: Ino,
    },
    Release {
        ino: Ino,
    },
    /// Takes, converts or releases a byte-range lock for (session, `owner`); never waits.
    SetLock {
        ino: Ino,
        owner: u64,
        lock: FileLock,
    },
    UnlockAll {
        ino: Ino,
        owner: u64,
    },
    /// Creates `count` empty regular files named [`bulk_name`]`(prefix, first + i)` in
    /// `parent`, exactly as `count` `Create`s of files would, in one Raft entry: all or
    /// none (a name that exists or is invalid refuses the whole batch). At most
    /// [`MAX_BULK_FILES`]. For filling a namespace in benchmarks and tests; cluster
    /// admins only.
    CreateMany {
        parent: Ino,
        prefix: String,
        first: u64,
        count: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Removes the files `CreateMany` with the same `parent`, `prefix`, `first` and
    /// `count` made, exactly as `count` `Unlink`s would: all or none (a name that is
    /// missing or a directory refuses the whole batch). At most [`MAX_BULK_FILES`];
    /// cluster admins only.
    RemoveMany {
        parent: Ino,
        prefix: String,
        first: u64,
        count: u32,
    },
    /// Stores `runs` in the file's inline bytes, kept in the metadata itself (replicated
    /// by Raft like the rest of it): no chunk, no shard write. Every run must end within
    /// the cluster's inline threshold (`ExtentMap::inline_max`) and the cluster's inline
    /// budget must have room, else it is refused with `NotInline` (the mount then stores
    /// the bytes in chunks). The runs replace the file's bytes they cover, chunk extents
    /// included, and grow the file to at least `size_at_least`.
    WriteInline {
        ino: Ino,
        runs: Vec<InlineRun>,
        size_at_least: u64,
    },
    /// Makes `offset..offset + len` of a file read as zeros and hold no storage: the
    /// chunk extents in the range are cut away (a chunk no extent points into any more is
    /// released) and inline bytes in it are zeroed. The size does not change (the part of
    /// the range past the end of file is ignored). `fallocate`'s `PUNCH_HOLE` and a block
    /// volume's TRIM and WRITE_ZEROES. Idempotent.
    PunchHole {
        ino: Ino,
        offset: u64,
        len: u64,
    },
    /// A new regular file `parent/name` with the content of file `src` as committed now:
    /// the same size, extents (pointing into the same chunks, whose reference counts
    /// grow: chunks are immutable, so nothing is copied) and inline bytes. The copies
    /// diverge from then on, and a chunk is freed when the last file pointing into it
    /// drops it. Block volume snapshots and clones. `parent` may be in another bucket.
    CloneFile {
        src: Ino,
        parent: Ino,
        name: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// File bytes `data` at `offset`, for [`FsChange::WriteInline`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineRun {
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Most files one `CreateMany` or `RemoveMany` may name: the batch is applied in one
/// Raft entry, holding the state machine for its whole length.
pub const MAX_BULK_FILES: u32 = 10_000;

/// The name of file `n` of a bulk batch with `prefix` (`CreateMany`, `RemoveMany`).
pub fn bulk_name(prefix: &str, n: u64) -> String {
    format!("{prefix}{n}")
}

impl FsChange {
    /// Whether applying this change twice differs from applying it once, so that the
    /// answer to it is remembered for retries (see `FsRequest::Change`). Writes and
    /// compactions are recognised by their new chunks; holds, releases and locks are
    /// idempotent for one session and owner.
    pub fn needs_first_answer(&self) -> bool {
        matches!(
            self,
            FsChange::Create { .. }
                | FsChange::Link { .. }
                | FsChange::Unlink { .. }
                | FsChange::Rename { .. }
                | FsChange::SetAttr { .. }
                | FsChange::SetXattr { .. }
                | FsChange::RemoveXattr { .. }
                | FsChange::CreateMany { .. }
                | FsChange::RemoveMany { .. }
                | FsChange::WriteInline { .. }
                | FsChange::CloneFile { .. }
        )
    }
}

/// A read, answered from the leader's applied state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsQuery {
    Lookup {
        parent: Ino,
        name: String,
    },
    GetAttr {
        ino: Ino,
    },
    /// Entries whose names sort after `after`, at most `limit`.
    ReadDir {
        ino: Ino,
        after: Option<String>,
        limit: u32,
    },
    ReadLink {
        ino: Ino,
    },
    /// The file's extents overlapping `offset..offset+len`, with their chunks.
    Extents {
        ino: Ino,
        offset: u64,
        len: u64,
    },
    GetXattr {
        ino: Ino,
        name: String,
    },
    ListXattr {
        ino: Ino,
    },
    /// The first lock of another (session, owner) that conflicts with `lock`.
    GetLock {
        ino: Ino,
        owner: u64,
        lock: FileLock,
    },
    StatFs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsRequest {
    /// Starts a session (one per mount); its lease must be renewed.
    OpenSession {
        name: String,
    },
    /// Extends the lease; `Fenced` if the session already ended.
    RenewSession {
        session: SessionId,
    },
    /// Ends the session: its locks and holds are released.
    CloseSession {
        session: SessionId,
    },
    /// `seq` numbers the session's changes (from 1; a retry of a change carries its
    /// number again): the metadata service answers a change it has applied already with
    /// the answer it gave the first time, so a retry after a lost reply neither fails
    /// (`rename`: ENOENT, `mkdir`: EEXIST) nor applies twice. 0: not numbered.
    Change {
        session: SessionId,
        change: FsChange,
        #[serde(default)]
        seq: u64,
    },
    Query {
        session: SessionId,
        query: FsQuery,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub ino: Ino,
    pub kind: FileType,
}

pub use crate::chunk::NodeAddr;

/// A file's extents in a range and what is needed to read and extend it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentMap {
    pub attr: FsAttr,
    /// The bucket the file belongs to (chunks are allocated for it).
    pub bucket: String,
    pub redundancy: Redundancy,
    pub extents: Vec<FileExtent>,
    pub chunks: Vec<(ChunkId, ChunkMeta)>,
    pub nodes: Vec<NodeAddr>,
    /// The file's inline bytes: its content from offset 0 where no extent covers it
    /// (extents lie over them); past their end, gaps between extents are holes.
    #[serde(default, with = "serde_bytes")]
    pub inline: Vec<u8>,
    /// The cluster's inline threshold: a write whose runs all end within it may be
    /// stored inline (`FsChange::WriteInline`); 0: never.
    #[serde(default)]
    pub inline_max: u64,
}

impl ExtentMap {
    /// The file's whole content is in the map: no extent points into a chunk (its bytes
    /// are inline, and past them the file is a hole).
    pub fn is_all_inline(&self) -> bool {
        self.extents.is_empty()
    }
}

/// A filesystem's capacity, for `statfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStat {
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    /// Inodes in use.
    pub inodes: u64,
    /// Inodes that can still be made ([`UNLIMITED_INODES`] where only space limits them).
    #[serde(default = "unlimited_inodes")]
    pub inodes_free: u64,
}

/// What a filesystem whose inodes only space limits reports as free inodes.
pub const UNLIMITED_INODES: u64 = 1 << 32;

fn unlimited_inodes() -> u64 {
    UNLIMITED_INODES
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsReply {
    Session { id: SessionId, lease_ms: u64 },
    Done,
    Attr(FsAttr),
    Entries(Vec<DirEntry>),
    Target(String),
    Extents(Box<ExtentMap>),
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Names(Vec<String>),
    Lock(Option<FileLock>),
    Stat(FsStat),
}

/// Why a request was refused; each maps to one errno in the mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FsErrorKind {
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
    #[error("operation not permitted")]
    NotPermitted,
    #[error("invalid argument")]
    InvalidArgument,
    #[error("name too long")]
    NameTooLong,
    #[error("rename or link across buckets")]
    CrossDevice,
    #[error("no such attribute")]
    NoData,
    #[error("attribute value too large")]
    TooBig,
    #[error("lock held by another owner")]
    WouldBlock,
    #[error("too many extended attributes")]
    NoSpace,
    #[error("file too large")]
    FileTooBig,
    #[error("session is fenced: its lease expired or it was closed")]
    Fenced,
    /// A conditional change found the file changed or open (compaction is skipped).
    #[error("the file changed or is open")]
    Changed,
    /// The mount's user has no grant for this on the inode's bucket (`EACCES`).
    #[error("permission denied")]
    AccessDenied,
    /// `WriteInline` refused: past the cluster's inline threshold or budget (the bytes
    /// go to chunks instead).
    #[error("not stored inline")]
    NotInline,
}

/// A refusal with a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct FsFailure {
    pub kind: FsErrorKind,
    pub detail: String,
}

impl FsFailure {
    pub fn new(kind: FsErrorKind, detail: impl Into<String>) -> Self {
        FsFailure {
            kind,
            detail: detail.into(),
        }
    }
}

pub type FsResult = Result<FsReply, FsFailure>;

/// What is wrong with one path component, if anything: empty, `.`, `..`, a `/` or a NUL
/// is `InvalidArgument`; more than [`NAME_MAX`] bytes is `NameTooLong`. The one set of
/// name rules: the metadata service and every mount backend check names with it.
pub fn name_fault(name: &[u8]) -> Option<FsErrorKind> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Some(FsErrorKind::InvalidArgument);
    }
    (name.len() > NAME_MAX).then_some(FsErrorKind::NameTooLong)
}

/// Checks one path component ([`name_fault`]).
pub fn check_name(name: &str) -> Result<(), FsFailure> {
    match name_fault(name.as_bytes()) {
        None => Ok(()),
        Some(FsErrorKind::NameTooLong) => Err(FsFailure::new(
            FsErrorKind::NameTooLong,
            format!("name of {} bytes; the limit is {NAME_MAX}", name.len()),
        )),
        Some(kind) => Err(FsFailure::new(kind, format!("invalid file name {name:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte fields are encoded as byte strings (one copy, not one serde call per
    /// byte), which in postcard is exactly the encoding of a sequence of `u8`: records
    /// written before the change read the same, and the other way round.
    #[test]
    fn byte_fields_keep_the_encoding_of_a_sequence_of_bytes() {
        #[derive(Serialize)]
        struct PlainRun {
            offset: u64,
            data: Vec<u8>,
        }
        let data: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let run = InlineRun {
            offset: 300,
            data: data.clone(),
        };
        let plain = PlainRun { offset: 300, data };
        let encoded = postcard::to_stdvec(&run).unwrap();
        assert_eq!(encoded, postcard::to_stdvec(&plain).unwrap());
        assert_eq!(postcard::from_bytes::<InlineRun>(&encoded).unwrap(), run);

        // The filesystem protocol is JSON: an array of numbers, as before.
        let json = serde_json::to_string(&FsReply::Value(vec![1, 2, 255])).unwrap();
        assert_eq!(json, r#"{"Value":[1,2,255]}"#);
        let back: FsReply = serde_json::from_str(&json).unwrap();
        assert_eq!(back, FsReply::Value(vec![1, 2, 255]));
        let change = FsChange::WriteInline {
            ino: 7,
            runs: vec![run],
            size_at_least: 9,
        };
        let json = serde_json::to_vec(&change).unwrap();
        assert_eq!(serde_json::from_slice::<FsChange>(&json).unwrap(), change);
    }
}
