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
//!
//! This file holds the backend itself: its options, connecting and closing the session,
//! the metadata call helpers (`call`, `change`, `query`) and the [`FsBackend`]
//! implementation, which hands the larger operations to the module that owns their job:
//! - `wire`: conversions between the metadata protocol and the backend's types, and the
//!   mapping of failures to [`FsError`];
//! - `open_files`: the open-file table (holds, handles, extent maps, last close);
//! - `upload`: write buffering, flushes and the commit of new extents;
//! - `read`: the read path, chunk loads and read-ahead;
//! - `chunk_cache`, `dirty`, `newest`, `session` and `compact`: the pieces they use.

mod chunk_cache;
mod compact;
mod dirty;
mod lock_owners;
mod newest;
mod open_files;
mod read;
mod session;
mod upload;
mod wire;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use cairn_client::Client;
use cairn_common::fs::{FsChange, FsErrorKind, FsQuery, FsReply, FsRequest, FsResult, NewNode};
use cairn_common::ChunkId;

use crate::backend::*;
use chunk_cache::ChunkCache;
use lock_owners::LockOwners;
use newest::NewestSizes;
use open_files::FileRef;
use read::LoadingChunk;
use session::Session;
use wire::{name_of, refused, to_dir_entry, unavailable, unexpected};

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

/// The xattr the kernel reads before every write (to drop file capabilities).
const CAPABILITY_XATTR: &str = "security.capability";

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
    /// The number of this session's next change (`FsRequest::Change::seq`); the client
    /// resends a change with its number when a reply is lost.
    next_change: AtomicU64,
    cache: Mutex<ChunkCache>,
    /// Chunks being loaded now (so a reader and the read-ahead share one load).
    loading: Mutex<HashMap<ChunkId, LoadingChunk>>,
    /// Sizes of this mount's recent commits, so that a reply older than one of them does
    /// not shrink the file in the kernel's eyes.
    newest: Mutex<NewestSizes>,
    /// The kernel's caches of this mount, once attached: a granted lock invalidates the
    /// file's cached pages and attributes.
    kernel: std::sync::OnceLock<Arc<dyn KernelCache>>,
    /// Owners that may hold a lock: a close releases locks only for them.
    lock_owners: Mutex<LockOwners>,
    /// Files closed here whose holds are released a moment later (`open_files`).
    lingering: Mutex<Vec<Ino>>,
    linger_wake: Arc<tokio::sync::Notify>,
}

impl ClusterBackend {
    /// Opens a session with the cluster and starts renewing it (on the current tokio
    /// runtime, which must outlive the backend).
    pub async fn connect(client: Client, opts: ClusterOptions) -> Result<Arc<Self>, FsError> {
        let session = Session::open(&client, opts.session_name.clone()).await?;
        tracing::info!(session = session.id, "mount session opened");
        tokio::spawn(session.clone().renew_forever(client.clone()));
        let backend = Arc::new_cyclic(|me| ClusterBackend {
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
            next_change: AtomicU64::new(1),
            kernel: std::sync::OnceLock::new(),
            lock_owners: Mutex::default(),
            lingering: Mutex::default(),
            linger_wake: Arc::default(),
        });
        tokio::spawn(ClusterBackend::release_lingering(Arc::downgrade(&backend)));
        Ok(backend)
    }

    /// Returns once this backend's session is fenced (its lease ended): from then on
    /// every operation fails with [`FsError::Stale`]. Cancel safe.
    pub async fn fenced(&self) {
        self.session.fenced().await
    }

    /// Ends the session (after unmount): its locks and holds are released at once.
    pub async fn close(&self) {
        self.session.close(&self.client).await;
    }

    async fn call(&self, request: FsRequest) -> Result<FsReply, FsError> {
        self.call_answered(request).await?.map_err(refused)
    }

    /// A metadata call whose refusal the caller reads itself (a fenced session is
    /// noticed here all the same).
    async fn call_answered(&self, request: FsRequest) -> Result<FsResult, FsError> {
        self.session.check()?;
        let result = tokio::select! {
            result = self.client.fs_call(&request) => {
                result.map_err(|e| unavailable("metadata request", e))?
            }
            () = self.session.fenced() => return Err(FsError::Stale),
        };
        if let Err(f) = &result {
            if f.kind == FsErrorKind::Fenced {
                self.session
                    .fence("the metadata service refused a request as fenced");
                return Err(FsError::Stale);
            }
        }
        Ok(result)
    }

    async fn change(&self, change: FsChange) -> Result<FsReply, FsError> {
        self.change_answered(change).await?.map_err(refused)
    }

    /// A change whose refusal the caller reads itself.
    async fn change_answered(&self, change: FsChange) -> Result<FsResult, FsError> {
        self.call_answered(FsRequest::Change {
            session: self.session.id,
            change,
            seq: self.next_change.fetch_add(1, Ordering::Relaxed),
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
    async fn attr_reply(&self, reply: FsReply) -> Result<FsAttr, FsError> {
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
        let mut attr = a;
        attr.size = self
            .newest()
            .settle(a.ino, a.generation, a.size, Instant::now());
        if let Some(file) = file.filter(|f| !f.closed) {
            attr.size = attr.size.max(file.dirty.end());
        }
        Ok(attr)
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
    ) -> Result<FsAttr, FsError> {
        let reply = self
            .create_change(parent, name, node, mode, caller, false)
            .await?;
        self.attr_reply(reply).await
    }
}

impl Drop for ClusterBackend {
    fn drop(&mut self) {
        // Lets the task releasing lingering holds see that the backend is gone.
        self.linger_wake.notify_one();
    }
}

#[async_trait]
impl FsBackend for ClusterBackend {
    fn is_fenced(&self) -> bool {
        // Also fences now if a whole lease passed without a renewal.
        self.session.check().is_err()
    }

    async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FsAttr, FsError> {
        let reply = self
            .query(FsQuery::Lookup {
                parent,
                name: name_of(name)?,
            })
            .await?;
        self.attr_reply(reply).await
    }

    async fn getattr(&self, ino: Ino) -> Result<FsAttr, FsError> {
        match self.query(FsQuery::GetAttr { ino }).await {
            Ok(reply) => self.attr_reply(reply).await,
            Err(FsError::NotFound) => self.unlinked_open_attr(ino).await,
            Err(e) => Err(e),
        }
    }

    async fn setattr(&self, ino: Ino, changes: AttrChanges) -> Result<FsAttr, FsError> {
        // A truncation, and a new mtime (`tar x` and `cp -a` set it before `close`), apply
        // after the buffered bytes, whose commit would otherwise cut the file again or
        // stamp it with the commit's time.
        let open = if changes.size.is_some() || changes.mtime.is_some() {
            self.open_file(ino)
        } else {
            None
        };
        let mut guard = match &open {
            Some(file) => Some(file.lock().await),
            None => None,
        };
        if let Some(file) = guard.as_deref_mut() {
            self.flush_file(ino, file).await?;
        }
        let reply = self.change(FsChange::SetAttr { ino, changes }).await?;
        let FsReply::Attr(a) = reply else {
            return Err(unexpected("setattr", reply));
        };
        if let (Some(file), Some(_)) = (guard.as_deref_mut(), changes.size) {
            file.size = a.size;
            file.map = None;
        }
        self.newest()
            .record(ino, a.generation, a.size, Instant::now());
        drop(guard);
        // The kernel takes the size in this answer as the file's: a `chmod`, `chown` or
        // `utimens` of a file with buffered writes (what `tar x` and `cp -a` do before
        // `close`) must answer with the written size, not the committed one.
        self.attr_reply(FsReply::Attr(a)).await
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
        access: AccessMode,
    ) -> Result<(FsAttr, HandleId), FsError> {
        let reply = self
            .create_change(parent, name, NewNode::File, mode, caller, true)
            .await?;
        let FsReply::Extents(map) = reply else {
            return Err(unexpected("create", reply));
        };
        let attr = map.attr;
        let handle = self.add_open(attr.ino, Some(*map), access).await?;
        Ok((attr, handle))
    }

    async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        special: Option<Special>,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        let node = match special {
            None => NewNode::File,
            Some(special) => NewNode::Special(special),
        };
        self.create_node(parent, name, node, mode, caller).await
    }

    async fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        self.create_node(parent, name, NewNode::Dir, mode, caller)
            .await
    }

    async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
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

    async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<FsAttr, FsError> {
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
        Ok(entries.into_iter().map(to_dir_entry).collect())
    }

    async fn open(&self, ino: Ino, access: AccessMode) -> Result<HandleId, FsError> {
        self.add_open(ino, None, access).await
    }

    async fn read(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, FsError> {
        self.read_file(ino, handle, offset, len).await
    }

    async fn write(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<u32, FsError> {
        self.write_buffered(ino, handle, offset, data).await
    }

    async fn grow(&self, ino: Ino, handle: HandleId, size: u64) -> Result<FsAttr, FsError> {
        self.grow_file(ino, handle, size).await
    }

    async fn clone_file(
        &self,
        ino: Ino,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<FsAttr, FsError> {
        // This mount's buffered writes to the source belong in the copy.
        if let Some(file) = self.open_file(ino) {
            let mut file = file.lock().await;
            if !file.closed {
                self.flush_file(ino, &mut file).await?;
            }
        }
        let reply = self
            .change(FsChange::CloneFile {
                src: ino,
                parent,
                name: name_of(name)?,
                mode,
                uid: caller.uid,
                gid: caller.gid,
            })
            .await?;
        self.attr_reply(reply).await
    }

    async fn punch_hole(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u64,
    ) -> Result<(), FsError> {
        self.punch_file(ino, handle, offset, len).await
    }

    async fn flush(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        self.flush_handle(ino, handle).await
    }

    async fn fsync(
        &self,
        ino: Ino,
        handle: Option<HandleId>,
        _datasync: bool,
    ) -> Result<(), FsError> {
        self.fsync_handle(ino, handle).await
    }

    async fn release(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        self.release_handle(ino, handle).await
    }

    async fn statfs(&self) -> Result<FsStat, FsError> {
        match self.query(FsQuery::StatFs).await? {
            FsReply::Stat(s) => Ok(s),
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
        how: XattrMode,
    ) -> Result<(), FsError> {
        let name = name.to_str().ok_or(FsError::InvalidArgument)?.to_owned();
        self.forget_capability_absence(ino).await;
        self.change(FsChange::SetXattr {
            ino,
            name,
            value: value.to_vec(),
            mode: how,
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

    /// A granted lock also refreshes what this mount knows of the file
    /// ([`ClusterBackend::refresh_after_lock`]): lock-to-read consistency.
    async fn setlk(&self, ino: Ino, owner: LockOwner, lock: FileLock) -> Result<(), FsError> {
        if lock.kind != LockKind::Unlock {
            self.lock_owners
                .lock()
                .expect("lock owners")
                .asking(ino, owner);
        }
        self.change(FsChange::SetLock {
            ino,
            owner: owner.0,
            lock,
        })
        .await?;
        if lock.kind != LockKind::Unlock {
            self.refresh_after_lock(ino).await?;
        }
        Ok(())
    }

    fn attach_kernel_cache(&self, cache: Arc<dyn KernelCache>) {
        let _ = self.kernel.set(cache);
    }

    async fn unlock_all(&self, ino: Ino, owner: LockOwner) -> Result<(), FsError> {
        if self.session.is_fenced() {
            // The session's locks were released when it ended.
            return Ok(());
        }
        let Some(mark) = self
            .lock_owners
            .lock()
            .expect("lock owners")
            .releasing(ino, owner)
        else {
            return Ok(()); // never asked for a lock here: nothing to release, no commit
        };
        self.change(FsChange::UnlockAll {
            ino,
            owner: owner.0,
        })
        .await?;
        self.lock_owners
            .lock()
            .expect("lock owners")
            .released(ino, owner, mark);
        Ok(())
    }
}
