//! The node registry: registration with the data directory check (a node id is bound to
//! the disk id it first registered with), and forgetting a replaced node's placements.

use cairn_common::{ChunkId, DiskId, NodeId};

use super::{CommandResult, Hash32, Namespace, NamespaceError, NodeRecord};

impl Namespace {
    /// Records node `id` at `addr` in `zone`, keeping its drain flag and weight. A node
    /// presenting another data directory than the registered one is refused, or with
    /// `replace_empty` taken as a new, empty node: every placement on it is forgotten (its
    /// chunks become degraded, and repair rebuilds them). A node presenting no disk id
    /// (older than disk ids) keeps the recorded one; a record without one adopts the
    /// first presented (nothing to compare it with: the shard-count check is what notices
    /// such a node returning empty).
    pub(super) fn register_node(
        &mut self,
        id: NodeId,
        addr: String,
        zone: String,
        disk: Option<DiskId>,
        replace_empty: bool,
    ) -> Result<CommandResult, NamespaceError> {
        let old = self.nodes.get(&id);
        let (draining, weight_pct, registered) = old
            .as_ref()
            .map_or((false, 100, None), |n| (n.draining, n.weight_pct, n.disk));
        if let (Some(registered), Some(presented)) = (registered, disk) {
            if registered != presented {
                if !replace_empty {
                    return Err(NamespaceError::WrongDisk {
                        node: id,
                        registered,
                        presented,
                    });
                }
                self.forget_placements_on(id);
            }
        }
        self.nodes.insert(
            id,
            NodeRecord {
                addr,
                zone,
                draining,
                weight_pct,
                disk: disk.or(registered),
            },
        );
        Ok(CommandResult::Done)
    }

    /// Drops every placement on `node` (its data is gone) and marks those chunks
    /// degraded. Nothing is queued for deletion: the shards no longer exist.
    fn forget_placements_on(&mut self, node: NodeId) {
        let chunks: std::collections::BTreeSet<ChunkId> =
            self.placements_on(node).map(|(chunk, _)| chunk).collect();
        for id in chunks {
            self.update_chunk(id, |meta| meta.shards.retain(|_, n| *n != node));
            self.degraded.insert(id, ());
        }
    }

    /// Every shard placed on `node`: its chunk, index and blake3.
    pub fn shards_on_node(&self, node: NodeId) -> Vec<(ChunkId, u32, Hash32)> {
        let mut out = Vec::new();
        let mut meta: Option<(ChunkId, super::ChunkMeta)> = None;
        for (chunk, index) in self.placements_on(node) {
            if meta.as_ref().is_none_or(|(id, _)| *id != chunk) {
                meta = self.chunk(&chunk).map(|m| (chunk, m));
            }
            if let Some((_, m)) = &meta {
                if let Some(hash) = m.shard_hashes.get(index as usize) {
                    out.push((chunk, index, *hash));
                }
            }
        }
        out
    }

    /// The data directory node `node` registered with, if known.
    pub fn disk_of(&self, node: NodeId) -> Option<DiskId> {
        self.nodes.get(&node).and_then(|n| n.disk)
    }
}
