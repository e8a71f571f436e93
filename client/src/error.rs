//! The client's typed errors, and the one mapping from gRPC status codes to them.

use cairn_common::ChunkId;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    AlreadyExists { message: String },
    #[error("invalid request: {message}")]
    InvalidArgument { message: String },
    #[error("{message}")]
    FailedPrecondition { message: String },
    #[error("permission denied: {message}")]
    PermissionDenied { message: String },
    /// The call's credentials were not accepted (an unknown or revoked API token).
    #[error("not authenticated: {message}")]
    Unauthenticated { message: String },
    #[error("cluster unavailable: {message}")]
    Unavailable { message: String },
    /// A chunk could not be read: too few verified shards (`Unavailable`), or they did
    /// not decode (`Corrupt`); never wrong bytes.
    #[error(transparent)]
    ChunkRead(#[from] cairn_shard_io::ChunkReadError),
    #[error(
        "write failed: chunk {chunk} reached only {durable} durable shards, {needed} are required"
    )]
    NotDurable {
        chunk: ChunkId,
        durable: usize,
        needed: usize,
    },
    /// A write could not become durable because storage nodes are out of space.
    #[error(
        "no space: chunk {chunk} reached only {durable} durable shards of the {needed} \
         required ({reason}); free space on the storage nodes or add nodes"
    )]
    NoSpace {
        chunk: ChunkId,
        durable: usize,
        needed: usize,
        /// A node's refusal, as it gave it.
        reason: String,
    },
    #[error("content hash mismatch: expected blake3 {expected}, the data hashes to {actual}; nothing was stored")]
    HashMismatch { expected: String, actual: String },
    #[error("metadata reply is malformed: {what}")]
    Malformed { what: String },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] cairn_common::config::ConfigError),
    #[error("server error ({code:?}): {message}")]
    Server { code: tonic::Code, message: String },
}

impl ClientError {
    /// Whether retrying the same call (on another replica) may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ClientError::Unavailable { .. })
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_string();
        // A status with a source came from the connection (reset, GOAWAY, a TLS close
        // while a server restarts), never from a handler: the server may be back soon.
        if std::error::Error::source(&status).is_some() {
            return ClientError::Unavailable {
                message: format!("connection failed: {message}"),
            };
        }
        match status.code() {
            tonic::Code::NotFound => ClientError::NotFound { message },
            tonic::Code::AlreadyExists => ClientError::AlreadyExists { message },
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => {
                ClientError::InvalidArgument { message }
            }
            tonic::Code::FailedPrecondition => ClientError::FailedPrecondition { message },
            tonic::Code::PermissionDenied => ClientError::PermissionDenied { message },
            tonic::Code::Unauthenticated => ClientError::Unauthenticated { message },
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ClientError::Unavailable {
                    message: if message.is_empty() {
                        format!("{:?}", status.code())
                    } else {
                        message
                    },
                }
            }
            code => ClientError::Server { code, message },
        }
    }
}

/// A reply that does not decode is the server's fault, not the caller's.
impl From<cairn_proto::convert::WireError> for ClientError {
    fn from(e: cairn_proto::convert::WireError) -> Self {
        ClientError::Malformed {
            what: e.to_string(),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_retriable_and_handler_statuses_keep_their_code() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let status = tonic::Status::from_error(Box::new(reset));
        assert!(ClientError::from(status).is_retriable());
        let from_handler = ClientError::from(tonic::Status::internal("a bug"));
        assert!(matches!(from_handler, ClientError::Server { .. }));
        assert!(!from_handler.is_retriable());
        assert!(matches!(
            ClientError::from(tonic::Status::permission_denied("no")),
            ClientError::PermissionDenied { .. }
        ));
    }
}
