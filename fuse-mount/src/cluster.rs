//! The cluster backend: the namespace lives in the metadata service (every change a Raft
//! commit under this mount's session), file bytes in erasure-coded chunks on the storage
//! nodes, written and read through the client library.
//!
//! Per open file this mount keeps (while any descriptor is open here):
//! - the file's extent map, loaded at `open` and after each own commit (close-to-open:
//!   another mount's changes are seen at the next open);
//! - a write buffer ([`dirty::Dirty`]) that coalesces writes. It is flushed when it holds
//!   `flush_bytes`, at every `close` (`flush`) and `fsync`: its runs are packed into as
//!   few chunks as possible, the chunks stored durably (k+1 shards fdatasynced for EC),
//!   then one Raft commit points the file's ranges at them. A flush is thus visible to
//!   every mount and durable when it returns.
//!
//! Opening a file registers a hold in the metadata service, so an unlinked file's data
//! lives until its last close on every mount. Locks are cluster-wide and belong to this
//! mount's session; they are released when the session ends.

mod chunk_cache;
mod compact;
mod dirty;
mod newest;
mod session;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use cairn_client::Client;
use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{
    AttrChanges, ExtentMap, FileExtent, FileType, FsAttr, FsChange, FsErrorKind, FsFailure,
    FsQuery, FsReply, FsRequest, NewNode, NodeAddr, TimeSet, XattrMode,
};
use cairn_common::ChunkId;
use futures::future::try_join_all;

use crate::backend::*;
use chunk_cache::ChunkCache;
use dirty::Dirty;
use newest::NewestSizes;
use session::Session;

/// How the cluster backend behaves.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// A file's write buffer is flushed once it holds this many bytes; its chunks are then
    /// stored in parallel (default: four chunks, 16 MiB).
    pub flush_bytes: usize,
    /// Memory for decoded chunks recently read or written (default 64 MiB).
    pub chunk_cache_bytes: usize,
    /// How this mount names itself to the metadata service (logs only).
    pub session_name: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            flush_bytes: 4 * cairn_common::DEFAULT_CHUNK_SIZE,
            chunk_cache_bytes: 64 << 20,
            session_name: "cairn-mount".into(),
        }
    }
}

/// One file open on this mount.
#[derive(Default)]
struct OpenFile {
    handles: u32,
    /// Size as last committed.
    size: u64,
    map: Option<ExtentMap>,
    dirty: Dirty,
    /// The last handle was released; whoever still holds this must look again.
    closed: bool,
    /// Writes committed since the file was opened here (many: maybe fragmented).
    commits: u32,
    /// Where the last read ended: a read starting there is sequential.
    last_read_end: u64,
    /// The file has no `security.capability` xattr (asked once per open; the kernel asks
    /// before every write).
    capability_absent: bool,
}

impl OpenFile {
    fn size(&self) -> u64 {
        self.size.max(self.dirty.end())
    }
}

type FileRef = Arc<tokio::sync::Mutex<OpenFile>>;

/// A chunk being loaded: whoever comes first loads it, the others wait for that load.
type LoadingChunk = Arc<tokio::sync::OnceCell<Arc<Vec<u8>>>>;

/// The xattr the kernel reads before every write (to drop file capabilities).
const CAPABILITY_XATTR: &str = "security.capability";

/// Commits during one open after which the last close checks for fragmentation.
const COMPACT_CHECK_AFTER_COMMITS: u32 = 8;

pub struct ClusterBackend {
    /// This backend, for background work spawned from `&self` methods.
    me: std::sync::Weak<ClusterBackend>,
    client: Client,
    session: Arc<Session>,
    opts: ClusterOptions,
    chunk_size: usize,
    files: Mutex<HashMap<Ino, FileRef>>,
    handles: Mutex<HashMap<HandleId, Ino>>,
    next_handle: AtomicU64,
    cache: Mutex<ChunkCache>,
    /// Chunks being loaded now (so a reader and the read-ahead share one load).
    loading: Mutex<HashMap<ChunkId, LoadingChunk>>,
    /// Sizes of this mount's recent commits, so that a reply older than one of them does
    /// not shrink the file in the kernel's eyes.
    newest: Mutex<NewestSizes>,
}

/// The FUSE generation of every inode. The metadata service never reuses an inode number
/// (they come from a counter), so one value serves all. `FsAttr::generation` is something
/// else, the version of a file's content: given to the kernel, a new value for a known
/// inode number reads as "the number was reused" and the kernel marks its inode bad, so
/// descriptors already open on the file fail with EIO (`t115_kernel_caches`).
const INODE_GENERATION: u64 = 1;

/// A failed cluster call as the application sees it: `ENOSPC` when the storage nodes are
/// full, else `EIO` (the cause goes to the log).
pub(crate) fn unavailable(op: &'static str, e: cairn_client::ClientError) -> FsError {
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
pub(crate) fn refused(f: FsFailure) -> FsError {
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

fn unexpected(what: &'static str, reply: FsReply) -> FsError {
    FsError::Io {
        op: what,
        source: std::io::Error::other(format!("unexpected reply {reply:?}")),
    }
}

/// A path component as the namespace stores it (UTF-8).
fn name_of(name: &OsStr) -> Result<String, FsError> {
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

fn to_attr(a: &FsAttr) -> Attr {
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

impl ClusterBackend {
    /// Opens a session with the cluster and starts renewing it (on the current tokio
    /// runtime, which must outlive the backend).
    pub async fn connect(client: Client, opts: ClusterOptions) -> Result<Arc<Self>, FsError> {
        let session = Session::open(&client, opts.session_name.clone()).await?;
        tracing::info!(session = session.id, "mount session opened");
        tokio::spawn(session.clone().renew_forever(client.clone()));
        Ok(Arc::new_cyclic(|me| ClusterBackend {
            me: me.clone(),
            chunk_size: client.chunk_size(),
            cache: Mutex::new(ChunkCache::new(opts.chunk_cache_bytes)),
            loading: Mutex::new(HashMap::new()),
            client,
            session,
            opts,
            files: Mutex::new(HashMap::new()),
            newest: Mutex::default(),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }))
    }

    /// Ends the session (after unmount): its locks and holds are released at once.
    pub async fn close(&self) {
        self.session.close(&self.client).await;
    }

    async fn call(&self, request: FsRequest) -> Result<FsReply, FsError> {
        self.session.check()?;
        let result = self
            .client
            .fs_call(&request)
            .await
            .map_err(|e| unavailable("metadata request", e))?;
        result.map_err(|f| {
            if f.kind == FsErrorKind::Fenced {
                self.session
                    .fence("the metadata service refused a request as fenced");
            }
            refused(f)
        })
    }

    async fn change(&self, change: FsChange) -> Result<FsReply, FsError> {
        self.call(FsRequest::Change {
            session: self.session.id,
            change,
        })
        .await
    }

    async fn query(&self, query: FsQuery) -> Result<FsReply, FsError> {
        self.call(FsRequest::Query {
            session: self.session.id,
            query,
        })
        .await
    }

    fn newest(&self) -> std::sync::MutexGuard<'_, NewestSizes> {
        self.newest.lock().expect("newest sizes poisoned")
    }

    /// The attributes in `reply`, with the size this mount sees: never older than its own
    /// commits ([`NewestSizes`]), and its buffered writes if it has the file open.
    async fn attr_reply(&self, reply: FsReply) -> Result<Attr, FsError> {
        let a = match reply {
            FsReply::Attr(a) => a,
            FsReply::Extents(map) => map.attr,
            other => return Err(unexpected("attributes", other)),
        };
        // An own flush of this file in progress finishes first (it holds the file), so
        // that its commit is known below.
        let open = self.open_file(a.ino);
        let file = match &open {
            Some(file) => Some(file.lock().await),
            None => None,
        };
        let mut attr = to_attr(&a);
        attr.size = self
            .newest()
            .settle(a.ino, a.generation, a.size, Instant::now());
        if let Some(file) = file.filter(|f| !f.closed) {
            attr.size = attr.size.max(file.dirty.end());
        }
        Ok(attr)
    }

    fn open_file(&self, ino: Ino) -> Option<FileRef> {
        self.files
            .lock()
            .expect("file table poisoned")
            .get(&ino)
            .cloned()
    }

    fn new_handle(&self, ino: Ino) -> HandleId {
        let id = HandleId(self.next_handle.fetch_add(1, Ordering::Relaxed));
        self.handles
            .lock()
            .expect("handle table poisoned")
            .insert(id, ino);
        id
    }

    fn file_of(&self, ino: Ino, handle: HandleId) -> Result<FileRef, FsError> {
        let known = self
            .handles
            .lock()
            .expect("handle table poisoned")
            .get(&handle)
            == Some(&ino);
        if !known {
            return Err(FsError::BadHandle);
        }
        self.open_file(ino).ok_or(FsError::BadHandle)
    }

    /// Registers one more open of `ino` here; the first one holds the inode in the
    /// cluster (unless `created` carries the map of a file just created open, which the
    /// create already holds).
    async fn add_open(&self, ino: Ino, created: Option<ExtentMap>) -> Result<HandleId, FsError> {
        let held = created.is_some();
        loop {
            let file = self
                .files
                .lock()
                .expect("file table poisoned")
                .entry(ino)
                .or_default()
                .clone();
            let mut state = file.lock().await;
            if state.closed {
                continue;
            }
            // Close-to-open: see what other mounts committed.
            state.map = None;
            state.capability_absent = false;
            let fresh = if state.handles == 0 && !held {
                // The first open here holds the file, and gets its extents with it.
                match self.change(FsChange::Hold { ino }).await {
                    Ok(FsReply::Extents(map)) => Some(*map),
                    Ok(other) => {
                        self.forget_if_unused(ino, &file, &mut state);
                        return Err(unexpected("hold", other));
                    }
                    Err(e) => {
                        self.forget_if_unused(ino, &file, &mut state);
                        return Err(e);
                    }
                }
            } else {
                created.clone()
            };
            state.handles += 1;
            if let Some(map) = fresh {
                state.size = map.attr.size;
                state.map = Some(map);
            }
            if let Err(e) = self.load_map(ino, &mut state).await {
                state.handles -= 1;
                self.forget_if_unused(ino, &file, &mut state);
                return Err(e);
            }
            return Ok(self.new_handle(ino));
        }
    }

    fn forget_if_unused(&self, ino: Ino, file: &FileRef, state: &mut OpenFile) {
        if state.handles == 0 {
            state.closed = true;
            let mut files = self.files.lock().expect("file table poisoned");
            if files.get(&ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
                files.remove(&ino);
            }
        }
    }

    async fn load_map(&self, ino: Ino, file: &mut OpenFile) -> Result<(), FsError> {
        if file.map.is_some() {
            return Ok(());
        }
        let map = self.extent_map(ino).await?;
        file.size = map.attr.size;
        file.map = Some(map);
        Ok(())
    }

    /// The file's whole extent map, as committed now.
    async fn extent_map(&self, ino: Ino) -> Result<ExtentMap, FsError> {
        let reply = self
            .query(FsQuery::Extents {
                ino,
                offset: 0,
                len: u64::MAX,
            })
            .await?;
        match reply {
            FsReply::Extents(map) => Ok(*map),
            other => Err(unexpected("extents", other)),
        }
    }

    /// Writes the file's buffered bytes to new chunks and commits them: visible to every
    /// mount and durable when this returns.
    async fn flush_file(&self, ino: Ino, file: &mut OpenFile) -> Result<(), FsError> {
        if file.dirty.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.session.check() {
            // Never committed: a fenced mount must not write.
            file.dirty = Dirty::default();
            return Err(e);
        }
        self.load_map(ino, file).await?;
        let bucket = file.map.as_ref().expect("loaded above").bucket.clone();
        let size_at_least = file.size();
        let packed = file.dirty.take_packed(self.chunk_size);
        let stored = try_join_all(
            packed
                .iter()
                .map(|chunk| self.client.store_chunk(&bucket, &chunk.data)),
        )
        .await;
        let stored: Vec<(ChunkId, ChunkMeta)> = match stored {
            Ok(s) => s,
            Err(e) => {
                file.dirty.restore(packed);
                return Err(unavailable("store file data", e));
            }
        };
        let mut extents = Vec::new();
        for (chunk, (id, _)) in packed.iter().zip(&stored) {
            extents.extend(chunk.runs.iter().map(|r| FileExtent {
                offset: r.offset,
                len: r.len,
                chunk: *id,
                chunk_offset: r.chunk_offset,
            }));
        }
        let committed = self
            .change(FsChange::Write {
                ino,
                extents,
                chunks: stored.clone(),
                size_at_least,
            })
            .await;
        match committed {
            Ok(FsReply::Attr(a)) => {
                file.size = a.size;
                file.map = None;
                file.commits += 1;
                self.newest()
                    .record(ino, a.generation, a.size, Instant::now());
                let mut cache = self.cache.lock().expect("chunk cache poisoned");
                for (chunk, (id, _)) in packed.into_iter().zip(stored) {
                    cache.insert(id, Arc::new(chunk.data));
                }
                Ok(())
            }
            Ok(other) => Err(unexpected("write", other)),
            Err(FsError::Stale) => Err(FsError::Stale),
            Err(e) => {
                file.dirty.restore(packed);
                Err(e)
            }
        }
    }

    async fn chunk_data(
        &self,
        id: &ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
    ) -> Result<Arc<Vec<u8>>, FsError> {
        if let Some(data) = self.cache.lock().expect("chunk cache poisoned").get(id) {
            return Ok(data);
        }
        // One load per chunk at a time: a reader and the read-ahead share it.
        let cell = self
            .loading
            .lock()
            .expect("loading table poisoned")
            .entry(*id)
            .or_default()
            .clone();
        let loaded = cell
            .get_or_try_init(|| async {
                self.client
                    .load_chunk(id, meta, nodes)
                    .await
                    .map(Arc::new)
                    .map_err(|e| unavailable("read file data", e))
            })
            .await
            .cloned();
        {
            let mut loading = self.loading.lock().expect("loading table poisoned");
            if loading.get(id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                loading.remove(id);
            }
        }
        let data = loaded?;
        self.cache
            .lock()
            .expect("chunk cache poisoned")
            .insert(*id, data.clone());
        Ok(data)
    }

    /// Starts loading the chunk after `end` in the background (sequential read-ahead).
    fn read_ahead(&self, map: &ExtentMap, end: u64) {
        let Some(next) = map.extents.iter().find(|e| e.offset + e.len > end) else {
            return;
        };
        let cached = self
            .cache
            .lock()
            .expect("chunk cache poisoned")
            .contains(&next.chunk);
        let loading = self
            .loading
            .lock()
            .expect("loading table poisoned")
            .contains_key(&next.chunk);
        let (Some(me), false, false) = (self.me.upgrade(), cached, loading) else {
            return;
        };
        let Some((id, meta)) = map.chunks.iter().find(|(id, _)| *id == next.chunk).cloned() else {
            return;
        };
        let nodes = map.nodes.clone();
        tokio::spawn(async move {
            if let Err(e) = me.chunk_data(&id, &meta, &nodes).await {
                tracing::debug!(chunk = %id, error = %e, "read-ahead failed");
            }
        });
    }

    /// After an xattr change here, `security.capability` must be asked again.
    async fn forget_capability_absence(&self, ino: Ino) {
        if let Some(file) = self.open_file(ino) {
            file.lock().await.capability_absent = false;
        }
    }

    /// Sends `Create`; with `hold`, the new file is open for this session at once.
    async fn create_change(
        &self,
        parent: Ino,
        name: &OsStr,
        node: NewNode,
        mode: u32,
        caller: Caller,
        hold: bool,
    ) -> Result<FsReply, FsError> {
        self.change(FsChange::Create {
            parent,
            name: name_of(name)?,
            node,
            mode,
            uid: caller.uid,
            gid: caller.gid,
            hold,
        })
        .await
    }

    async fn create_node(
        &self,
        parent: Ino,
        name: &OsStr,
        node: NewNode,
        mode: u32,
        caller: Caller,
    ) -> Result<Attr, FsError> {
        let reply = self
            .create_change(parent, name, node, mode, caller, false)
            .await?;
        self.attr_reply(reply).await
    }
}

#[async_trait]
impl FsBackend for ClusterBackend {
    async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, FsError> {
        let reply = self
            .query(FsQuery::Lookup {
                parent,
                name: name_of(name)?,
            })
            .await?;
        self.attr_reply(reply).await
    }

    async fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        let reply = self.query(FsQuery::GetAttr { ino }).await?;
        self.attr_reply(reply).await
    }

    async fn setattr(&self, ino: Ino, changes: SetAttr) -> Result<Attr, FsError> {
        let open = match changes.size {
            Some(_) => self.open_file(ino),
            None => None,
        };
        let mut guard = match &open {
            Some(file) => Some(file.lock().await),
            None => None,
        };
        if let Some(file) = guard.as_deref_mut() {
            // The buffered bytes go first, so the truncation applies after them.
            self.flush_file(ino, file).await?;
        }
        let reply = self
            .change(FsChange::SetAttr {
                ino,
                changes: AttrChanges {
                    mode: changes.mode,
                    uid: changes.uid,
                    gid: changes.gid,
                    size: changes.size,
                    atime: changes.atime.map(time_set),
                    mtime: changes.mtime.map(time_set),
                },
            })
            .await?;
        let FsReply::Attr(a) = reply else {
            return Err(unexpected("setattr", reply));
        };
        if let Some(file) = guard.as_deref_mut() {
            file.size = a.size;
            file.map = None;
        }
        self.newest()
            .record(ino, a.generation, a.size, Instant::now());
        Ok(to_attr(&a))
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
        _access: AccessMode,
    ) -> Result<(Attr, HandleId), FsError> {
        let reply = self
            .create_change(parent, name, NewNode::File, mode, caller, true)
            .await?;
        let FsReply::Extents(map) = reply else {
            return Err(unexpected("create", reply));
        };
        let attr = to_attr(&map.attr);
        let handle = self.add_open(attr.ino, Some(*map)).await?;
        Ok((attr, handle))
    }

    async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<Attr, FsError> {
        self.create_node(parent, name, NewNode::File, mode, caller)
            .await
    }

    async fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<Attr, FsError> {
        self.create_node(parent, name, NewNode::Dir, mode, caller)
            .await
    }

    async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        caller: Caller,
    ) -> Result<Attr, FsError> {
        let target = target.to_str().ok_or(FsError::InvalidArgument)?.to_owned();
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        self.create_node(parent, name, NewNode::Symlink { target }, 0o777, caller)
            .await
    }

    async fn readlink(&self, ino: Ino) -> Result<OsString, FsError> {
        match self.query(FsQuery::ReadLink { ino }).await? {
            FsReply::Target(t) => Ok(t.into()),
            other => Err(unexpected("readlink", other)),
        }
    }

    async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr, FsError> {
        let reply = self
            .change(FsChange::Link {
                ino,
                parent: newparent,
                name: name_of(newname)?,
            })
            .await?;
        self.attr_reply(reply).await
    }

    async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.change(FsChange::Unlink {
            parent,
            name: name_of(name)?,
            dir: false,
        })
        .await
        .map(drop)
    }

    async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.change(FsChange::Unlink {
            parent,
            name: name_of(name)?,
            dir: true,
        })
        .await
        .map(drop)
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), FsError> {
        self.change(FsChange::Rename {
            parent,
            name: name_of(name)?,
            new_parent: newparent,
            new_name: name_of(newname)?,
            noreplace: flags.noreplace,
            exchange: flags.exchange,
        })
        .await
        .map(drop)
    }

    async fn readdir(
        &self,
        ino: Ino,
        after: Option<&OsStr>,
        limit: usize,
    ) -> Result<Vec<DirEntry>, FsError> {
        let after = match after {
            Some(a) => Some(a.to_str().ok_or(FsError::InvalidArgument)?.to_owned()),
            None => None,
        };
        let reply = self
            .query(FsQuery::ReadDir {
                ino,
                after,
                limit: limit.min(u32::MAX as usize) as u32,
            })
            .await?;
        let FsReply::Entries(entries) = reply else {
            return Err(unexpected("readdir", reply));
        };
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                name: e.name.into(),
                ino: e.ino,
                kind: kind_of(e.kind),
            })
            .collect())
    }

    async fn open(&self, ino: Ino, _access: AccessMode) -> Result<HandleId, FsError> {
        self.add_open(ino, None).await
    }

    async fn read(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, FsError> {
        self.session.check()?;
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        self.load_map(ino, &mut file).await?;
        let size = file.size();
        if offset >= size {
            return Ok(Vec::new());
        }
        let len = u64::from(len).min(size - offset);
        let end = offset + len;
        let mut buf = vec![0u8; len as usize];
        // A sequential reader gets whole chunks (decoded once, then cached); a random
        // one reads just its bytes from the data shards.
        let sequential = offset == 0 || offset == file.last_read_end;
        let map = file.map.as_ref().expect("loaded above");
        let chunks: HashMap<&ChunkId, &ChunkMeta> =
            map.chunks.iter().map(|(i, m)| (i, m)).collect();
        for e in &map.extents {
            let e_end = e.offset + e.len;
            if e_end <= offset || e.offset >= end {
                continue;
            }
            let meta = chunks.get(&e.chunk).ok_or(FsError::Io {
                op: "read",
                source: std::io::Error::other("extent names a chunk the map lacks"),
            })?;
            let from = e.offset.max(offset);
            let to = e_end.min(end);
            let at = e.chunk_offset + (from - e.offset);
            let target = &mut buf[(from - offset) as usize..(to - offset) as usize];
            let cached = self
                .cache
                .lock()
                .expect("chunk cache poisoned")
                .get(&e.chunk);
            let whole = match cached {
                Some(data) => Some(data),
                None if sequential => Some(self.chunk_data(&e.chunk, meta, &map.nodes).await?),
                None => None,
            };
            match whole {
                Some(data) => {
                    let src =
                        data.get(at as usize..at as usize + target.len())
                            .ok_or(FsError::Io {
                                op: "read",
                                source: std::io::Error::other("extent reaches past its chunk"),
                            })?;
                    target.copy_from_slice(src);
                }
                None => {
                    let bytes = self
                        .client
                        .load_chunk_range(&e.chunk, meta, &map.nodes, at, target.len() as u64)
                        .await
                        .map_err(|e| unavailable("read file data", e))?;
                    if bytes.len() != target.len() {
                        return Err(FsError::Io {
                            op: "read",
                            source: std::io::Error::other("short read of a chunk range"),
                        });
                    }
                    target.copy_from_slice(&bytes);
                }
            }
        }
        if sequential {
            self.read_ahead(map, end);
        }
        file.dirty.overlay(offset, &mut buf);
        file.last_read_end = end;
        Ok(buf)
    }

    async fn write(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<u32, FsError> {
        self.session.check()?;
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        let offset = offset.unwrap_or_else(|| file.size());
        match offset.checked_add(data.len() as u64) {
            Some(end) if end <= MAX_FILE_SIZE => {}
            _ => return Err(FsError::FileTooBig),
        }
        file.dirty.write(offset, data);
        if file.dirty.bytes() >= self.opts.flush_bytes {
            self.flush_file(ino, &mut file).await?;
        }
        Ok(data.len() as u32)
    }

    async fn flush(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        self.flush_file(ino, &mut file).await
    }

    async fn fsync(
        &self,
        ino: Ino,
        handle: Option<HandleId>,
        _datasync: bool,
    ) -> Result<(), FsError> {
        // Every namespace change is a Raft commit (majority fsynced) before it is
        // answered, so only buffered file bytes need work.
        self.session.check()?;
        let Some(handle) = handle else {
            return Ok(());
        };
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        self.flush_file(ino, &mut file).await
    }

    async fn release(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        let file = self.file_of(ino, handle)?;
        self.handles
            .lock()
            .expect("handle table poisoned")
            .remove(&handle);
        let mut state = file.lock().await;
        state.handles = state.handles.saturating_sub(1);
        if state.handles > 0 {
            return Ok(());
        }
        let flushed = self.flush_file(ino, &mut state).await;
        if let Err(e) = &flushed {
            tracing::error!(ino, error = %e, "buffered writes lost at last close");
        }
        if !self.session.is_fenced() {
            if let Err(e) = self.change(FsChange::Release { ino }).await {
                tracing::warn!(ino, error = %e, "could not release the file's hold");
            }
        }
        if state.commits >= COMPACT_CHECK_AFTER_COMMITS {
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move {
                    if let Err(e) = me.compact(ino).await {
                        tracing::warn!(ino, error = %e, "compaction failed; the file is unchanged");
                    }
                });
            }
        }
        self.forget_if_unused(ino, &file, &mut state);
        flushed
    }

    async fn statfs(&self) -> Result<StatFs, FsError> {
        const BLOCK: u64 = 4096;
        const SPARE_INODES: u64 = 1 << 32;
        match self.query(FsQuery::StatFs).await? {
            FsReply::Stat(s) => Ok(StatFs {
                blocks: s.capacity_bytes / BLOCK,
                blocks_free: s.free_bytes / BLOCK,
                blocks_available: s.free_bytes / BLOCK,
                files: s.inodes + SPARE_INODES,
                files_free: SPARE_INODES,
                block_size: BLOCK as u32,
                name_max: NAME_MAX as u32,
            }),
            other => Err(unexpected("statfs", other)),
        }
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let name = name.to_str().ok_or(FsError::InvalidArgument)?.to_owned();
        let capability = name == CAPABILITY_XATTR;
        let open = if capability {
            self.open_file(ino)
        } else {
            None
        };
        if let Some(file) = &open {
            if file.lock().await.capability_absent {
                return Err(FsError::NoData);
            }
        }
        match self.query(FsQuery::GetXattr { ino, name }).await {
            Ok(FsReply::Value(v)) => Ok(v),
            Ok(other) => Err(unexpected("getxattr", other)),
            Err(FsError::NoData) => {
                if let Some(file) = &open {
                    file.lock().await.capability_absent = true;
                }
                Err(FsError::NoData)
            }
            Err(e) => Err(e),
        }
    }

    async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrSet,
    ) -> Result<(), FsError> {
        let name = name.to_str().ok_or(FsError::InvalidArgument)?.to_owned();
        self.forget_capability_absence(ino).await;
        let mode = match how {
            XattrSet::Any => XattrMode::Any,
            XattrSet::Create => XattrMode::Create,
            XattrSet::Replace => XattrMode::Replace,
        };
        self.change(FsChange::SetXattr {
            ino,
            name,
            value: value.to_vec(),
            mode,
        })
        .await
        .map(drop)
    }

    async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>, FsError> {
        match self.query(FsQuery::ListXattr { ino }).await? {
            FsReply::Names(names) => Ok(names.into_iter().map(OsString::from).collect()),
            other => Err(unexpected("listxattr", other)),
        }
    }

    async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        let name = name.to_str().ok_or(FsError::InvalidArgument)?.to_owned();
        self.forget_capability_absence(ino).await;
        self.change(FsChange::RemoveXattr { ino, name })
            .await
            .map(drop)
    }

    async fn getlk(
        &self,
        ino: Ino,
        owner: LockOwner,
        lock: FileLock,
    ) -> Result<Option<FileLock>, FsError> {
        match self
            .query(FsQuery::GetLock {
                ino,
                owner: owner.0,
                lock,
            })
            .await?
        {
            FsReply::Lock(l) => Ok(l),
            other => Err(unexpected("getlk", other)),
        }
    }

    async fn setlk(&self, ino: Ino, owner: LockOwner, lock: FileLock) -> Result<(), FsError> {
        self.change(FsChange::SetLock {
            ino,
            owner: owner.0,
            lock,
        })
        .await
        .map(drop)
    }

    async fn unlock_all(&self, ino: Ino, owner: LockOwner) -> Result<(), FsError> {
        if self.session.is_fenced() {
            // The session's locks were released when it ended.
            return Ok(());
        }
        self.change(FsChange::UnlockAll {
            ino,
            owner: owner.0,
        })
        .await
        .map(drop)
    }
}
