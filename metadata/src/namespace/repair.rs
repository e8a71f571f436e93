//! Repair bookkeeping: which chunks miss shards (lost, corrupt, or on nodes that are out)
//! and recording the shards repair rebuilt elsewhere.

use std::collections::BTreeSet;

use cairn_common::{ChunkId, NodeId};

use super::{ChunkMeta, CommandResult, GcEntry, Namespace, NamespaceError};

impl Namespace {
    /// Chunks that lack a shard or keep one on an `out` node, those with the fewest
    /// usable shards first (they are closest to loss), at most `limit`.
    pub fn chunks_needing_repair(
        &self,
        out: &BTreeSet<NodeId>,
        limit: usize,
    ) -> Vec<(ChunkId, ChunkMeta)> {
        let mut candidates: BTreeSet<ChunkId> = self.degraded.iter().map(|(id, ())| id).collect();
        for &node in out {
            candidates.extend(self.placements_on(node).map(|(chunk, _)| chunk));
        }
        let mut found: Vec<(usize, ChunkId, ChunkMeta)> = candidates
            .into_iter()
            .filter_map(|id| {
                let c = self.chunks.get(&id)?;
                let usable = c.shards.values().filter(|n| !out.contains(n)).count();
                (usable < c.redundancy.total_shards()).then_some((usable, id, c))
            })
            .collect();
        found.sort_by_key(|(usable, id, _)| (*usable, *id));
        found
            .into_iter()
            .take(limit)
            .map(|(_, id, c)| (id, c))
            .collect()
    }

    pub(super) fn repair_chunk(
        &mut self,
        chunk: ChunkId,
        placed: Vec<(u32, NodeId)>,
        dropped: Vec<(u32, NodeId)>,
    ) -> Result<CommandResult, NamespaceError> {
        let Some(mut meta) = self.chunks.get(&chunk) else {
            return Err(NamespaceError::NoSuchChunk { chunk });
        };
        let total = meta.redundancy.total_shards() as u32;
        let mut garbage = Vec::new();
        let mut cancelled = Vec::new();
        for (index, node) in dropped {
            if meta.shards.get(&index) == Some(&node) {
                meta.shards.remove(&index);
                garbage.push(GcEntry { chunk, index, node });
            }
        }
        for (index, node) in placed {
            match meta.shards.get(&index) {
                // Already recorded (a retried commit): nothing to do, and above all not
                // garbage, since it is the live copy.
                Some(current) if *current == node => {}
                None if index < total => {
                    meta.shards.insert(index, node);
                    cancelled.push((index, node));
                }
                // Someone else placed this index meanwhile: the new copy is surplus.
                _ => garbage.push(GcEntry { chunk, index, node }),
            }
        }
        let degraded = meta.is_degraded();
        self.update_chunk(chunk, |stored| *stored = meta);
        if degraded {
            self.degraded.insert(chunk, ());
        } else {
            self.degraded.remove(&chunk);
        }
        // A shard placed back on a node that still had its old copy queued for deletion:
        // that deletion would now destroy the live copy.
        for (index, node) in cancelled {
            self.cancel_gc(chunk, index, node);
        }
        for entry in garbage {
            self.queue_gc(entry);
        }
        Ok(CommandResult::Done)
    }
}
