//! A chunk's description as the metadata service stores it: its size, redundancy, the
//! blake3 hash of every shard and where each shard is placed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NodeId, Redundancy};

/// A 32-byte hash, serialised as hex in human-readable formats (JSON) and as 32 raw bytes
/// in binary ones (the Raft log and Raft messages).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash32(pub [u8; 32]);

impl std::fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ids::hex(&self.0))
    }
}

impl Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&crate::ids::hex(&self.0))
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return <[u8; 32]>::deserialize(d).map(Hash32);
        }
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("bad hash {s:?}"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Hash32(out))
    }
}

/// Where a chunk's shards are, and how to check them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// Bytes of data in the chunk (before padding and encoding).
    pub size: u64,
    pub redundancy: Redundancy,
    /// blake3 of every shard, by index (`redundancy.total_shards()` entries).
    pub shard_hashes: Vec<Hash32>,
    /// Shard index -> node holding it. A missing index is a lost shard.
    pub shards: BTreeMap<u32, NodeId>,
}

impl ChunkMeta {
    pub fn is_degraded(&self) -> bool {
        self.shards.len() < self.redundancy.total_shards()
    }

    /// Length of each of the chunk's shards.
    pub fn shard_len(&self) -> usize {
        self.redundancy.shard_len(self.size as usize)
    }
}

/// Where a storage node is, for reading a chunk's shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub id: NodeId,
    pub addr: String,
    /// The node missed its heartbeats: readers try it last.
    pub down: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_hex_in_json_and_raw_bytes_in_binary_formats() {
        let hash = Hash32(std::array::from_fn(|i| i as u8));
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json.len(), 64 + 2);
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), hash);
        let binary = postcard::to_allocvec(&hash).unwrap();
        assert_eq!(binary, hash.0);
        assert_eq!(postcard::from_bytes::<Hash32>(&binary).unwrap(), hash);
        assert!(postcard::from_bytes::<Hash32>(&binary[..31]).is_err());
    }
}
