//! Writes and their upload: `write` only buffers bytes in the open file's [`Dirty`]
//! buffer; [`ClusterBackend::flush_file`] (when the buffer holds `flush_bytes`, at every
//! `close` and `fsync`) packs its runs into as few chunks as possible, stores them durably
//! and in parallel, then commits the new extents in one Raft commit. A flush is thus
//! visible to every mount and durable when it returns. The chunks it stored go to the
//! chunk cache, for reads that follow. `fallocate` grows a file here too, by a commit of
//! no extents, and punches holes in it.
//!
//! Every function here takes the open file already locked (or locks it itself), so that a
//! flush and the writes, reads and attribute replies of the same file never interleave.
//! Nothing here depends on the read path (`read`).

use std::sync::Arc;
use std::time::Instant;

use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{FileExtent, FsChange, FsErrorKind, FsReply, InlineRun};
use cairn_common::ChunkId;
use futures::future::try_join_all;

use super::dirty::Dirty;
use super::open_files::OpenFile;
use super::wire::{refused, unavailable, unexpected};
use super::ClusterBackend;
use crate::backend::*;

impl ClusterBackend {
    /// `write`: buffers `data`, and flushes once the buffer holds `flush_bytes`.
    pub(super) async fn write_buffered(
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

    /// `fallocate` past the end of file: one commit that grows the file to at least
    /// `size` (a `Write` of no extents), so it never shrinks a file another mount or this
    /// one's buffered writes made longer meanwhile. The new bytes are a hole (zeros).
    pub(super) async fn grow_file(
        &self,
        ino: Ino,
        handle: HandleId,
        size: u64,
    ) -> Result<FsAttr, FsError> {
        self.session.check()?;
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        let reply = self
            .change(FsChange::Write {
                ino,
                extents: Vec::new(),
                chunks: Vec::new(),
                size_at_least: size,
            })
            .await?;
        let FsReply::Attr(a) = reply else {
            return Err(unexpected("grow", reply));
        };
        // The extents did not change: the map stays, only the committed size moves.
        file.size = a.size;
        self.newest()
            .record(ino, a.generation, a.size, Instant::now());
        let mut attr = a;
        attr.size = file.size();
        Ok(attr)
    }

    /// `fallocate(PUNCH_HOLE)`: the buffered writes first (some may lie in the range),
    /// then one commit that cuts the range out of the file's extents.
    pub(super) async fn punch_file(
        &self,
        ino: Ino,
        handle: HandleId,
        offset: u64,
        len: u64,
    ) -> Result<(), FsError> {
        self.session.check()?;
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        self.flush_file(ino, &mut file).await?;
        let reply = self
            .change(FsChange::PunchHole { ino, offset, len })
            .await?;
        let FsReply::Attr(a) = reply else {
            return Err(unexpected("punch hole", reply));
        };
        self.adopt_commit(ino, &mut file, &a);
        file.commits += 1;
        Ok(())
    }

    /// After an own commit that changed the file's content: its committed size, a map
    /// to load again, and the size remembered so no older reply shrinks the file.
    fn adopt_commit(&self, ino: Ino, file: &mut OpenFile, a: &FsAttr) {
        file.size = a.size;
        file.map = None;
        self.newest()
            .record(ino, a.generation, a.size, Instant::now());
    }

    /// `flush` (every `close`): the file's buffered writes are committed.
    pub(super) async fn flush_handle(&self, ino: Ino, handle: HandleId) -> Result<(), FsError> {
        let file = self.file_of(ino, handle)?;
        let mut file = file.lock().await;
        self.flush_file(ino, &mut file).await
    }

    /// `fsync`: as `flush`, but fails at once on a fenced session.
    pub(super) async fn fsync_handle(
        &self,
        ino: Ino,
        handle: Option<HandleId>,
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

    /// Commits the file's buffered bytes inline, in the metadata (they all end within the
    /// cluster's inline threshold): one Raft commit, no chunk. False if the cluster
    /// refused to keep them inline (threshold or budget): they are buffered again, for
    /// chunks, and this open stops trying inline.
    async fn flush_inline(&self, ino: Ino, file: &mut OpenFile) -> Result<bool, FsError> {
        let size_at_least = file.size();
        let runs = file.dirty.take_runs();
        let answered = self
            .change_answered(FsChange::WriteInline {
                ino,
                runs: runs
                    .iter()
                    .map(|(offset, data)| InlineRun {
                        offset: *offset,
                        data: data.clone(),
                    })
                    .collect(),
                size_at_least,
            })
            .await;
        match answered {
            Ok(Ok(FsReply::Attr(a))) => {
                self.adopt_commit(ino, file, &a);
                Ok(true)
            }
            Ok(Ok(other)) => Err(unexpected("write inline", other)),
            Ok(Err(f)) if f.kind == FsErrorKind::NotInline => {
                tracing::debug!(ino, reason = %f.detail, "bytes not stored inline; storing them in chunks");
                file.dirty.restore_runs(runs);
                file.inline_max = 0;
                Ok(false)
            }
            Ok(Err(f)) => {
                file.dirty.restore_runs(runs);
                Err(refused(f))
            }
            Err(FsError::Stale) => Err(FsError::Stale),
            Err(e) => {
                file.dirty.restore_runs(runs);
                Err(e)
            }
        }
    }

    /// Writes the file's buffered bytes to new chunks and commits them: visible to every
    /// mount and durable when this returns.
    pub(super) async fn flush_file(&self, ino: Ino, file: &mut OpenFile) -> Result<(), FsError> {
        if file.dirty.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.session.check() {
            // Never committed: a fenced mount must not write.
            file.dirty = Dirty::default();
            return Err(e);
        }
        if file.bucket.is_none() {
            self.load_map(ino, file).await?;
        }
        if file.dirty.end() <= file.inline_max && self.flush_inline(ino, file).await? {
            return Ok(());
        }
        let bucket = file.bucket.clone().expect("set when the map was loaded");
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
                self.adopt_commit(ino, file, &a);
                file.commits += 1;
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
}
