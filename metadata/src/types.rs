//! The Raft type configuration: the namespace's commands in, their results out, a node
//! address as the node type.

use crate::namespace::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Cairn's metadata Raft: commands in, results out, node address as the node type.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = crate::snapshot_archive::SnapshotData,
);

pub type Raft = openraft::Raft<TypeConfig>;
