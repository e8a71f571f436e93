//! Why a shard call to a storage node failed, as the callers act on it: a shard that is
//! gone or corrupt is reported lost (and rebuilt), a full disk is reported as such, and
//! anything else (the node is down, slow or unreachable) means "try another node".

use cairn_proto::common::ErrorReason;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The node does not have the shard.
    #[error("{addr}: shard {index} of chunk {chunk} is missing")]
    Missing {
        addr: String,
        chunk: cairn_common::ChunkId,
        index: u32,
    },
    /// The node has the shard but it is corrupt (the node's block hashes, or the
    /// metadata's shard hash, do not match).
    #[error("{addr}: shard {index} of chunk {chunk} is corrupt: {reason}")]
    Corrupt {
        addr: String,
        chunk: cairn_common::ChunkId,
        index: u32,
        reason: String,
    },
    /// The node's disk is full.
    #[error("{addr}: no space left on the storage node: {message}")]
    NoSpace { addr: String, message: String },
    /// The address cannot be connected to at all.
    #[error("node address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    /// Any other failure: the node is down, slow, overloaded or refused the call.
    #[error("{addr}: {code:?}: {message}")]
    Failed {
        addr: String,
        code: tonic::Code,
        message: String,
    },
}

impl ShardError {
    /// Whether the shard itself is gone (missing or corrupt), rather than its node
    /// unreachable: such a shard is reported lost and rebuilt.
    pub fn is_lost(&self) -> bool {
        matches!(
            self,
            ShardError::Missing { .. } | ShardError::Corrupt { .. }
        )
    }

    /// The typed failure a node's `status` stands for.
    pub fn from_status(
        status: tonic::Status,
        addr: &str,
        chunk: cairn_common::ChunkId,
        index: u32,
    ) -> ShardError {
        let addr = addr.to_string();
        // A status with a source came from the connection, never from the node's handler.
        let from_connection = std::error::Error::source(&status).is_some();
        if !from_connection {
            if status.code() == tonic::Code::ResourceExhausted
                && cairn_proto::status::reason_of(&status) == Some(ErrorReason::NoSpace)
            {
                return ShardError::NoSpace {
                    addr,
                    message: status.message().to_string(),
                };
            }
            match status.code() {
                tonic::Code::NotFound => return ShardError::Missing { addr, chunk, index },
                tonic::Code::DataLoss => {
                    return ShardError::Corrupt {
                        addr,
                        chunk,
                        index,
                        reason: status.message().to_string(),
                    }
                }
                _ => {}
            }
        }
        ShardError::Failed {
            addr,
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::ChunkId;

    #[test]
    fn node_statuses_become_typed_failures() {
        let id = ChunkId::random();
        let of = |s: tonic::Status| ShardError::from_status(s, "n:1", id, 2);
        assert!(of(tonic::Status::not_found("gone")).is_lost());
        assert!(of(tonic::Status::data_loss("bad block")).is_lost());
        let full = cairn_proto::status::with_reason(
            tonic::Code::ResourceExhausted,
            "disk full",
            ErrorReason::NoSpace,
        );
        assert!(matches!(of(full), ShardError::NoSpace { .. }));
        // The reason counts only with its code: a lost shard is never mistaken for it.
        let odd =
            cairn_proto::status::with_reason(tonic::Code::NotFound, "gone", ErrorReason::NoSpace);
        assert!(of(odd).is_lost());
        // Over its in-flight budget: worth a retry elsewhere, not "no space".
        let busy = of(tonic::Status::resource_exhausted("busy"));
        assert!(matches!(busy, ShardError::Failed { .. }) && !busy.is_lost());
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let broken = of(tonic::Status::from_error(Box::new(reset)));
        assert!(matches!(broken, ShardError::Failed { .. }));
    }
}
