//! Background compaction of fragmented files. A file written in many small flushes (a
//! database's WAL, fsynced page by page) ends up as many extents in many small chunks;
//! after the last close on the mount that wrote it, the mount rewrites such a file's bytes
//! into as few new chunks as possible and commits `Compact`, which the metadata service
//! applies only if the file did not change and nobody has it open meanwhile. The old
//! chunks are then garbage collected.

use std::collections::HashMap;
use std::sync::Arc;

use cairn_common::fs::{FileExtent, FsChange};
use cairn_common::ChunkId;

use super::dirty::Dirty;
use super::wire::unavailable;
use super::ClusterBackend;
use crate::backend::{FsError, Ino};

/// Files with more stored bytes than this are not compacted (compaction holds a file's
/// bytes in memory).
pub const COMPACT_MAX_BYTES: u64 = 64 << 20;

/// Whether `allocated` bytes spread over `chunks` chunks are worth rewriting: more than
/// twice the chunks the bytes need, plus some slack. (Extents are not counted: a sparse
/// file keeps one per written run however it is packed.)
pub fn is_fragmented(chunks: usize, allocated: u64, chunk_size: usize) -> bool {
    let needed = allocated.div_ceil(chunk_size.max(1) as u64).max(1);
    chunks as u64 > 2 * needed + 8
}

impl ClusterBackend {
    /// Compacts `ino` if it is fragmented; true if it was rewritten.
    pub(super) async fn compact(self: Arc<Self>, ino: Ino) -> Result<bool, FsError> {
        let map = self.extent_map(ino).await?;
        if !is_fragmented(map.chunks.len(), map.attr.allocated, self.chunk_size)
            || map.attr.allocated > COMPACT_MAX_BYTES
        {
            return Ok(false);
        }
        let metas: HashMap<ChunkId, _> = map.chunks.iter().cloned().collect();
        let mut loaded: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        let mut dirty = Dirty::default();
        for e in &map.extents {
            if let std::collections::hash_map::Entry::Vacant(slot) = loaded.entry(e.chunk) {
                let meta = metas.get(&e.chunk).ok_or(FsError::Io {
                    op: "compact",
                    source: std::io::Error::other("extent names a chunk the map lacks"),
                })?;
                let data = self
                    .client
                    .load_chunk(&map.bucket, &e.chunk, meta, &map.nodes)
                    .await
                    .map_err(|e| unavailable("read for compaction", e))?;
                slot.insert(data);
            }
            let data = &loaded[&e.chunk];
            let at = e.chunk_offset as usize;
            let bytes = data.get(at..at + e.len as usize).ok_or(FsError::Io {
                op: "compact",
                source: std::io::Error::other("extent reaches past its chunk"),
            })?;
            dirty.write(e.offset, bytes);
        }
        drop(loaded);
        let packed = dirty.take_packed(self.chunk_size);
        let mut extents = Vec::new();
        let mut chunks = Vec::new();
        for chunk in &packed {
            let (id, meta) = self
                .client
                .store_chunk(&map.bucket, &chunk.data)
                .await
                .map_err(|e| unavailable("store compacted data", e))?;
            extents.extend(chunk.runs.iter().map(|r| FileExtent {
                offset: r.offset,
                len: r.len,
                chunk: id,
                chunk_offset: r.chunk_offset,
            }));
            chunks.push((id, meta));
        }
        let before = map.chunks.len();
        match self
            .change(FsChange::Compact {
                ino,
                generation: map.attr.generation,
                extents,
                chunks,
            })
            .await
        {
            Ok(_) => {
                tracing::debug!(
                    ino,
                    before,
                    after = packed.len(),
                    "compacted a fragmented file"
                );
                Ok(true)
            }
            // Changed or opened meanwhile: the new chunks become orphans for the nodes'
            // sweep; the file stays as it is.
            Err(FsError::Io { op: "compact", .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragmentation_is_relative_to_the_chunks_needed() {
        let mib = 1 << 20;
        assert!(
            !is_fragmented(10, 4 * mib, 4 << 20),
            "slack for small files"
        );
        assert!(is_fragmented(11, 4 * mib, 4 << 20));
        assert!(!is_fragmented(20, 40 * mib, 4 << 20));
        assert!(is_fragmented(29, 40 * mib, 4 << 20));
    }
}
