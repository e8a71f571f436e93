//! The binary format of what Raft keeps and sends: the log entries, vote and log ids in
//! the RocksDB log store (`log_store.rs`) and the messages between replicas
//! (`network.rs`, `raft_service.rs`). Knows nothing of RocksDB or gRPC.
//!
//! A record is one format-version byte ([`FORMAT_VERSION`]), then the value in postcard
//! (serde; varint integers, no field names, ids and hashes as raw bytes). Decoding checks
//! the version first, so a record of another release is refused by name rather than
//! misread; garbage, a truncated record or trailing bytes are typed errors, never a panic
//! (`codec/fuzz.rs`).
//!
//! postcard is not self-describing, so every type in a record must serialize the same
//! fields in the same order every time: no `skip_serializing_if`, `flatten`, untagged or
//! internally tagged enums, or `deserialize_any`. `#[serde(default)]` is harmless but
//! does not make an added field optional as it does in JSON: adding, removing or
//! reordering a field of anything logged (`Command` and all it holds) changes the format,
//! and needs a new version with a conversion of the older one (`log_format.rs`). A new
//! enum variant at the end of an enum is compatible. `codec/tests.rs` round-trips every
//! `Command` and `FsChange` variant.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format written by this release. Never `b'{'` (0x7B): that first byte marks the
/// JSON records of releases before binary ones.
pub const FORMAT_VERSION: u8 = 1;

/// The first byte of a JSON object: a record of a release before [`FORMAT_VERSION`] 1.
pub const LEGACY_JSON_FIRST_BYTE: u8 = b'{';

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record: no format version byte")]
    Empty,
    #[error(
        "record in the JSON format of a Cairn release before binary Raft records: every \
         metadata replica must run the same release"
    )]
    LegacyJson,
    #[error(
        "record in format version {found}, but this release reads version {FORMAT_VERSION} \
         only: every metadata replica must run the same release"
    )]
    UnknownVersion { found: u8 },
    #[error("malformed version-{FORMAT_VERSION} record: {source}")]
    Malformed {
        #[source]
        source: postcard::Error,
    },
    #[error("{extra} bytes after the end of a version-{FORMAT_VERSION} record")]
    TrailingBytes { extra: usize },
    #[error("encode a version-{FORMAT_VERSION} record: {source}")]
    Encode {
        #[source]
        source: postcard::Error,
    },
}

/// The version byte, then `value` in postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_extend(value, vec![FORMAT_VERSION]).map_err(|source| CodecError::Encode { source })
}

/// Decodes a record made by [`encode`]: the version must be [`FORMAT_VERSION`] and the
/// value must use every byte.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        FORMAT_VERSION => {}
        LEGACY_JSON_FIRST_BYTE => return Err(CodecError::LegacyJson),
        found => return Err(CodecError::UnknownVersion { found }),
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|source| CodecError::Malformed { source })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { extra: rest.len() });
    }
    Ok(value)
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
