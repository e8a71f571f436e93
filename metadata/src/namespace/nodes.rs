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
        let (draining, weight_pct, registered) =
            old.map_or((false, 100, None), |n| (n.draining, n.weight_pct, n.disk));
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
        for (id, meta) in self.chunks.iter_mut() {
            let before = meta.shards.len();
            meta.shards.retain(|_, n| *n != node);
            if meta.shards.len() < before {
                self.degraded.insert(*id);
            }
        }
    }

    /// Every shard placed on `node`: its chunk, index and blake3.
    pub fn shards_on_node(&self, node: NodeId) -> Vec<(ChunkId, u32, Hash32)> {
        self.chunks
            .iter()
            .flat_map(|(id, meta)| {
                meta.shards
                    .iter()
                    .filter(move |(_, n)| **n == node)
                    .filter_map(move |(index, _)| {
                        let hash = meta.shard_hashes.get(*index as usize)?;
                        Some((*id, *index, *hash))
                    })
            })
            .collect()
    }

    /// The data directory node `node` registered with, if known.
    pub fn disk_of(&self, node: NodeId) -> Option<DiskId> {
        self.nodes.get(&node).and_then(|n| n.disk)
    }
}
