//! Identifiers: storage node ids, data directory ids and chunk ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A storage node's id: chosen by the operator, stored in the node's data directory.
pub type NodeId = u64;

/// A chunk's id: 128 random bits, written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub [u8; 16]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("chunk id must be 16 bytes (32 hex digits), got {got:?}")]
pub struct BadChunkId {
    pub got: String,
}

impl ChunkId {
    pub fn random() -> Self {
        ChunkId(rand::random())
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, BadChunkId> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| BadChunkId {
            got: format!("{} bytes", bytes.len()),
        })?;
        Ok(ChunkId(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl FromStr for ChunkId {
    type Err = BadChunkId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadChunkId { got: s.to_string() };
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(ChunkId(out))
    }
}

/// 32 hex digits in human-readable formats (JSON: the mounts' protocol, snapshots), 16
/// raw bytes in binary ones (the Raft log and Raft messages).
impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 16]>::deserialize(d).map(ChunkId)
        }
    }
}

/// The identity of one storage node's data directory: 128 random bits written into the
/// directory when it is first used (`DATA/cairn-node.id`) and registered with the
/// metadata service, so a node that comes back with a wiped, replaced or unmounted data
/// directory is told apart from the node that held the data. Written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskId(pub [u8; 16]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("data directory id must be 16 bytes (32 hex digits), got {got:?}")]
pub struct BadDiskId {
    pub got: String,
}

impl DiskId {
    pub fn random() -> Self {
        DiskId(rand::random())
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, BadDiskId> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| BadDiskId {
            got: format!("{} bytes", bytes.len()),
        })?;
        Ok(DiskId(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiskId({self})")
    }
}

impl FromStr for DiskId {
    type Err = BadDiskId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<ChunkId>()
            .map(|id| DiskId(id.0))
            .map_err(|_| BadDiskId { got: s.to_string() })
    }
}

/// Like [`ChunkId`]: hex when human-readable, 16 raw bytes in binary formats.
impl Serialize for DiskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for DiskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 16]>::deserialize(d).map(DiskId)
        }
    }
}

/// Lower-case hex of any bytes (hashes in logs and CLI output).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_round_trips_through_hex() {
        let id = ChunkId::random();
        assert_eq!(id.to_string().parse::<ChunkId>().unwrap(), id);
        assert_eq!(ChunkId::from_slice(id.as_bytes()).unwrap(), id);
    }

    #[test]
    fn disk_id_round_trips_through_hex_and_serde() {
        let id = DiskId::random();
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<DiskId>().unwrap(), id);
        assert_eq!(DiskId::from_slice(id.as_bytes()).unwrap(), id);
        assert!("x".parse::<DiskId>().is_err());
        assert!(DiskId::from_slice(&[0; 15]).is_err());
    }

    #[test]
    fn ids_are_hex_in_json_and_raw_bytes_in_binary_formats() {
        let chunk = ChunkId([0xab; 16]);
        let disk = DiskId([0x01; 16]);
        let json = serde_json::to_string(&(chunk, disk)).unwrap();
        assert_eq!(
            json,
            format!("[\"{}\",\"{}\"]", "ab".repeat(16), "01".repeat(16))
        );
        assert_eq!(
            serde_json::from_str::<(ChunkId, DiskId)>(&json).unwrap(),
            (chunk, disk)
        );
        let binary = postcard::to_allocvec(&(chunk, disk)).unwrap();
        assert_eq!(binary.len(), 32, "16 raw bytes each, no length or hex");
        assert_eq!(&binary[..16], chunk.as_bytes());
        assert_eq!(
            postcard::from_bytes::<(ChunkId, DiskId)>(&binary).unwrap(),
            (chunk, disk)
        );
        assert!(postcard::from_bytes::<ChunkId>(&binary[..15]).is_err());
    }

    #[test]
    fn chunk_id_rejects_bad_input() {
        assert!("abc".parse::<ChunkId>().is_err());
        assert!("zz".repeat(16).parse::<ChunkId>().is_err());
        assert!(ChunkId::from_slice(&[1, 2, 3]).is_err());
    }
}
