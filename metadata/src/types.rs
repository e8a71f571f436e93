//! The Raft type configuration: the namespace's commands in, their results out, a node
//! address as the node type.

use std::io::Cursor;

use crate::namespace::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Cairn's metadata Raft: commands in, results out, node address as the node type.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
