//! Reads: the file's committed bytes come from its extent map, its buffered writes are laid
//! over them. A sequential reader gets whole chunks, decoded once and then served from the
//! chunk cache, and the next chunk is loaded in the background (read-ahead); a random
//! reader reads just its bytes from the data shards. One load per chunk at a time: a
//! reader and the read-ahead share it ([`LoadingChunk`]).
//!
//! A read that fails on the file's extent map reloads the map and reads once more: a
//! long-open file (a database's) outlives the placements it was opened with. Reads never
//! store anything; before that reload they publish the file's buffered writes
//! (`upload::flush_file`), as a lock does, so the fresh map holds them.

use std::collections::HashMap;
use std::sync::Arc;

use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{ExtentMap, NodeAddr};
use cairn_common::ChunkId;

use super::open_files::OpenFile;
use super::wire::unavailable;
use super::ClusterBackend;
use crate::backend::*;

/// A chunk being loaded: whoever comes first loads it, the others wait for that load.
pub(super) type LoadingChunk = Arc<tokio::sync::OnceCell<Arc<Vec<u8>>>>;

impl ClusterBackend {
    /// `read`: up to `len` bytes at `offset`, short at the end of the file.
    pub(super) async fn read_file(
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
        match self.read_mapped(&mut file, offset, len).await {
            Err(e @ FsError::Unavailable { .. }) => {
                // The map this file was opened with may be stale: its chunks moved (drain,
                // repair, rebalance: the old shards are deleted once the move commits) or
                // were replaced (another mount's overwrite). Publish this mount's buffered
                // writes, fetch the map as committed now and read once more.
                tracing::info!(ino, error = %e, "read failed on the open file's extent map; reloading it");
                self.flush_file(ino, &mut file).await?;
                file.map = None;
                self.load_map(ino, &mut file).await?;
                self.read_mapped(&mut file, offset, len).await
            }
            other => other,
        }
    }

    /// `read` on the file's current extent map (loaded by the caller).
    async fn read_mapped(
        &self,
        file: &mut OpenFile,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, FsError> {
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
        // The inline bytes first: extents lie over them.
        if let Some(inline) = map.inline.get(offset as usize..) {
            let n = inline.len().min(buf.len());
            buf[..n].copy_from_slice(&inline[..n]);
        }
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
                None if sequential => Some(
                    self.chunk_data(&map.bucket, &e.chunk, meta, &map.nodes)
                        .await?,
                ),
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
                        .load_chunk_range(
                            &map.bucket,
                            &e.chunk,
                            meta,
                            &map.nodes,
                            at,
                            target.len() as u64,
                        )
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

    async fn chunk_data(
        &self,
        bucket: &str,
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
                    .load_chunk(bucket, id, meta, nodes)
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
        let (bucket, nodes) = (map.bucket.clone(), map.nodes.clone());
        tokio::spawn(async move {
            if let Err(e) = me.chunk_data(&bucket, &id, &meta, &nodes).await {
                tracing::debug!(chunk = %id, error = %e, "read-ahead failed");
            }
        });
    }
}
