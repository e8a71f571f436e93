//! Keys of the state database: each key type encodes to bytes whose byte order is the
//! type's own order, so a RocksDB range scan walks keys in the order the namespace
//! expects (a directory's entries by name, a node's shards by chunk).

use cairn_common::ChunkId;

/// A key of a state table: encoded so that byte order equals `Ord` order.
pub trait Key: Ord + Clone {
    fn encode(&self, out: &mut Vec<u8>);
    /// `None` for bytes this type never encodes to.
    fn decode(bytes: &[u8]) -> Option<Self>;

    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        self.encode(&mut out);
        out
    }
}

impl Key for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl Key for ChunkId {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(ChunkId(bytes.try_into().ok()?))
    }
}

impl Key for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// A directory entry: parent inode, then the name (a directory's entries are one range).
impl Key for (u64, String) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (head, tail) = split(bytes, 8)?;
        Some((u64::decode(head)?, String::decode(tail)?))
    }
}

/// A remembered answer: session, then sequence number.
impl Key for (u64, u64) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (head, tail) = split(bytes, 8)?;
        Some((u64::decode(head)?, u64::decode(tail)?))
    }
}

/// A shard's placement seen from its node: node, chunk, shard index.
impl Key for (u64, ChunkId, u32) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
        out.extend_from_slice(&self.2.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 28 {
            return None;
        }
        Some((
            u64::decode(&bytes[..8])?,
            ChunkId::decode(&bytes[8..24])?,
            u32::from_be_bytes(bytes[24..].try_into().ok()?),
        ))
    }
}

fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= at).then(|| bytes.split_at(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_order<K: Key + std::fmt::Debug>(a: K, b: K) {
        assert_eq!(a.cmp(&b), a.encoded().cmp(&b.encoded()), "{a:?} vs {b:?}");
        assert_eq!(K::decode(&a.encoded()), Some(a));
    }

    proptest! {
        #[test]
        fn byte_order_is_key_order(
            a in any::<u64>(), b in any::<u64>(),
            s in "[a-z\\x{e9}.]{0,6}", t in "[a-z\\x{e9}.]{0,6}",
            c in any::<[u8; 16]>(), d in any::<[u8; 16]>(),
            i in any::<u32>(), j in any::<u32>(),
        ) {
            check_order(a, b);
            check_order(s.clone(), t.clone());
            check_order((a % 3, s.clone()), (b % 3, t.clone()));
            check_order((a % 3, b), (b % 3, a));
            check_order((a % 3, ChunkId(c), i), (b % 3, ChunkId(d), j));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = u64::decode(&bytes);
            let _ = ChunkId::decode(&bytes);
            let _ = String::decode(&bytes);
            let _ = <(u64, String)>::decode(&bytes);
            let _ = <(u64, u64)>::decode(&bytes);
            let _ = <(u64, ChunkId, u32)>::decode(&bytes);
        }
    }
}
