//! The open-file table: one [`OpenFile`] per inode open on this mount (while any of its
//! descriptors is open here), and the handles that point at it.
//!
//! An open here registers a hold in the metadata service (so an unlinked file's data lives
//! until its last close on every mount), except an open for reading only of a file whose
//! bytes are all inline: its whole content comes with its map, which this mount keeps
//! until the last close, so an unlink elsewhere cannot take anything it reads away, and
//! the open costs a read under the leader's lease instead of a commit. Every open loads
//! the file's extent map afresh (close-to-open: another mount's changes are seen at the
//! next open), and so does every lock granted here (lock-to-read: `refresh_after_lock`).
//! The last close flushes the write buffer (`upload`) and leaves the hold in place for a
//! moment ([`HOLD_LINGER`]): a file opened again meanwhile needs no new hold (no commit,
//! only its map), and the holds left are released together, in one Raft entry where the
//! leader's group commit can, rather than each in its own entry between the next file's
//! commits. A file to compact releases its hold at once (compaction needs it unheld);
//! the release (`release_lingering`) drops the entry and marks it `closed`, so that
//! whoever still holds a [`FileRef`] to it knows to look again. A file's state is only
//! touched under its [`FileRef`]'s lock, which is held across the awaits that use it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_common::fs::{ExtentMap, FsChange, FsQuery, FsReply};

use super::dirty::Dirty;
use super::wire::unexpected;
use super::ClusterBackend;
use crate::backend::*;

/// Commits during one open after which the last close checks for fragmentation.
const COMPACT_CHECK_AFTER_COMMITS: u32 = 8;

/// How long a closed file keeps its hold before it is released with the others closed
/// meanwhile. An unlinked file's bytes live this much longer; nothing else waits for it.
pub(super) const HOLD_LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// One file open on this mount.
#[derive(Default)]
pub(super) struct OpenFile {
    pub(super) handles: u32,
    /// Size as last committed.
    pub(super) size: u64,
    pub(super) map: Option<ExtentMap>,
    pub(super) dirty: Dirty,
    /// The last handle was released; whoever still holds this must look again.
    pub(super) closed: bool,
    /// Writes committed since the file was opened here (many: maybe fragmented).
    pub(super) commits: u32,
    /// Where the last read ended: a read starting there is sequential.
    pub(super) last_read_end: u64,
    /// The file has no `security.capability` xattr (asked once per open; the kernel asks
    /// before every write).
    pub(super) capability_absent: bool,
    /// The file's bucket, once its map was loaded (a file never changes bucket: a rename
    /// across buckets is refused), so that a flush needs no map.
    pub(super) bucket: Option<String>,
    /// Closed here (no handle left) but still held in the cluster, until the lingering
    /// holds are released.
    pub(super) lingering: bool,
    /// Buffered writes that all end within this offset are stored inline, in the
    /// metadata (the cluster's threshold, from the file's map; 0 once refused).
    pub(super) inline_max: u64,
    /// This session holds the inode in the cluster (a `Hold`, or a create that opened
    /// it). False only while every open here is for reading and the map holds the whole
    /// content (all inline).
    pub(super) held: bool,
}

impl OpenFile {
    /// The file as committed now.
    pub(super) fn set_map(&mut self, map: ExtentMap) {
        self.size = map.attr.size;
        self.bucket = Some(map.bucket.clone());
        self.inline_max = map.inline_max;
        self.map = Some(map);
    }

    pub(super) fn size(&self) -> u64 {
        self.size.max(self.dirty.end())
    }
}

pub(super) type FileRef = Arc<tokio::sync::Mutex<OpenFile>>;

impl ClusterBackend {
    pub(super) fn open_file(&self, ino: Ino) -> Option<FileRef> {
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

    pub(super) fn file_of(&self, ino: Ino, handle: HandleId) -> Result<FileRef, FsError> {
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

    /// Registers one more open of `ino` here, holding the inode in the cluster unless
    /// this session holds it already (`created` carries the map of a file just created
    /// open, which the create holds) or the open is for reading a file whose bytes are
    /// all inline.
    pub(super) async fn add_open(
        &self,
        ino: Ino,
        created: Option<ExtentMap>,
        access: AccessMode,
    ) -> Result<HandleId, FsError> {
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
            // A file this mount just created has no xattrs: the kernel's question before
            // each write needs no round trip (a setxattr here asks again).
            state.capability_absent = created.is_some();
            // A file closed here a moment ago is still held: no new hold needed.
            state.lingering = false;
            let opened = match created.clone() {
                Some(map) => {
                    state.held = true;
                    state.set_map(map);
                    Ok(())
                }
                None => self.hold_or_load(ino, &mut state, access).await,
            };
            if let Err(e) = opened {
                self.forget_if_unused(ino, &file, &mut state);
                return Err(e);
            }
            state.handles += 1;
            return Ok(self.new_handle(ino));
        }
    }

    /// Close-to-open: the file's map as committed now. A read-only open of a file whose
    /// bytes are all inline needs nothing more; any other open by a session that does not
    /// hold the file yet holds it (the `Hold` answers with the map). The map in place is
    /// replaced only by a newer one, so other descriptors open here keep reading if the
    /// file was removed meanwhile.
    async fn hold_or_load(
        &self,
        ino: Ino,
        state: &mut OpenFile,
        access: AccessMode,
    ) -> Result<(), FsError> {
        if state.held {
            state.map = None;
            return self.load_map(ino, state).await;
        }
        if access == AccessMode::Read {
            let map = self.extent_map(ino).await?;
            if map.is_all_inline() {
                state.set_map(map);
                return Ok(());
            }
        }
        match self.change(FsChange::Hold { ino }).await? {
            FsReply::Extents(map) => {
                state.held = true;
                state.set_map(*map);
                Ok(())
            }
            other => Err(unexpected("hold", other)),
        }
    }

    /// Drops `handle`; the last close of the file here flushes its buffered writes,
    /// releases its hold in the cluster and, after many commits, starts a compaction.
    pub(super) async fn release_handle(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
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
        if !state.held {
            // Only read here, its content all in its map: nothing to release.
            self.forget_if_unused(ino, &file, &mut state);
            return flushed;
        }
        let compact = state.commits >= COMPACT_CHECK_AFTER_COMMITS;
        if !compact && !self.session.is_fenced() {
            // Released a moment later, with the other holds left meanwhile.
            state.lingering = true;
            state.map = None;
            self.lingering
                .lock()
                .expect("lingering holds poisoned")
                .push(ino);
            self.linger_wake.notify_one();
            return flushed;
        }
        state.held = false;
        self.release_hold(ino).await;
        if compact {
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

    /// Releases the holds of files closed here at least [`HOLD_LINGER`] ago and not opened
    /// again; each in its own request, sent together, so the leader's group commit puts
    /// them in as few entries as it can. Runs until the backend is dropped.
    pub(super) async fn release_lingering(me: std::sync::Weak<ClusterBackend>) {
        loop {
            let Some(wake) = me.upgrade().map(|b| b.linger_wake.clone()) else {
                return;
            };
            wake.notified().await;
            tokio::time::sleep(HOLD_LINGER).await;
            let Some(backend) = me.upgrade() else {
                return;
            };
            let inos =
                std::mem::take(&mut *backend.lingering.lock().expect("lingering holds poisoned"));
            futures::future::join_all(inos.into_iter().map(|ino| backend.release_one(ino))).await;
        }
    }

    /// Releases `ino`'s hold if it is still closed here and lingering.
    async fn release_one(&self, ino: Ino) {
        let Some(file) = self.open_file(ino) else {
            return;
        };
        let mut state = file.lock().await;
        if !state.lingering || state.handles > 0 || state.closed {
            return;
        }
        state.lingering = false;
        state.held = false;
        self.release_hold(ino).await;
        self.forget_if_unused(ino, &file, &mut state);
    }

    /// Releases this session's hold on `ino` (nothing to do once the session is fenced:
    /// its holds went with it).
    async fn release_hold(&self, ino: Ino) {
        if !self.session.is_fenced() {
            if let Err(e) = self.change(FsChange::Release { ino }).await {
                tracing::warn!(ino, error = %e, "could not release the file's hold");
            }
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

    pub(super) async fn load_map(&self, ino: Ino, file: &mut OpenFile) -> Result<(), FsError> {
        if file.map.is_some() {
            return Ok(());
        }
        let map = self.extent_map(ino).await?;
        file.set_map(map);
        Ok(())
    }

    /// Lock-to-read consistency (as NFS and CephFS give): once a lock on `ino` is granted
    /// to this mount, it forgets what it knew of the file, so reads and appends under the
    /// lock see everything written under the lock's earlier holders (who publish before
    /// they unlock). Buffered writes of this mount go out first; the extent map is loaded
    /// again, and the kernel drops the file's cached pages and attributes.
    pub(super) async fn refresh_after_lock(&self, ino: Ino) -> Result<(), FsError> {
        if let Some(file) = self.open_file(ino) {
            let mut file = file.lock().await;
            if !file.closed {
                self.flush_file(ino, &mut file).await?;
                file.map = None;
                self.load_map(ino, &mut file).await?;
            }
        }
        if let Some(kernel) = self.kernel.get() {
            kernel.invalidate_inode(ino, 0, 0);
        }
        Ok(())
    }

    /// The file's whole extent map, as committed now.
    pub(super) async fn extent_map(&self, ino: Ino) -> Result<ExtentMap, FsError> {
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

    /// `getattr` of an inode the cluster no longer has: a file removed elsewhere while it
    /// is open here for reading without a hold (all inline) is still what its descriptors
    /// read, with no link left.
    pub(super) async fn unlinked_open_attr(&self, ino: Ino) -> Result<FsAttr, FsError> {
        let Some(file) = self.open_file(ino) else {
            return Err(FsError::NotFound);
        };
        let file = file.lock().await;
        match &file.map {
            Some(map) if !file.closed && !file.held => Ok(FsAttr {
                nlink: 0,
                ..map.attr
            }),
            _ => Err(FsError::NotFound),
        }
    }

    /// After an xattr change here, `security.capability` must be asked again.
    pub(super) async fn forget_capability_absence(&self, ino: Ino) {
        if let Some(file) = self.open_file(ino) {
            file.lock().await.capability_absent = false;
        }
    }
}
