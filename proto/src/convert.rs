//! Conversions between the generated wire types and `cairn-common`'s own, one concept per
//! file. Decoding is fallible (`TryFrom`, or a function where the wire leaves a field
//! optional) and fails with a [`WireError`]; each service maps that to its own error at
//! its edge (a server answers INVALID_ARGUMENT, a client reports a malformed reply).
//! These are the only copies: the metadata service, the storage nodes' object API, the
//! client library and the mount all use them.

mod chunk;
mod precondition;
mod redundancy;

pub use chunk::{chunk_id, shard_hash};
pub use precondition::precondition;
pub use redundancy::{redundancy, redundancy_or_default};

/// A wire message that does not describe a valid value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field the receiver needs was not set.
    #[error("{field} is missing")]
    Missing { field: &'static str },
    /// A field is set to something that is not allowed.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl WireError {
    pub(crate) fn invalid(field: &'static str, reason: impl ToString) -> WireError {
        WireError::Invalid {
            field,
            reason: reason.to_string(),
        }
    }
}

/// A request that cannot be decoded is the caller's mistake.
impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> tonic::Status {
        tonic::Status::invalid_argument(e.to_string())
    }
}
