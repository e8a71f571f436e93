//! Turning a chunk into shards and back: Reed-Solomon (`reed-solomon-erasure`, SIMD) for
//! `ec(k,m)`, plain copies for `replicas(n)`. Pure CPU work, no IO.

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::Redundancy;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodingError {
    #[error("only {available} of the {needed} shards needed to decode are available")]
    TooFewShards { available: usize, needed: usize },
    #[error("shard {index} has length {got}, expected {expected}")]
    ShardLength {
        index: usize,
        got: usize,
        expected: usize,
    },
    #[error("shard list has {got} entries, the scheme has {expected}")]
    ShardCount { got: usize, expected: usize },
    #[error("invalid erasure-coding parameters: {reason}")]
    Parameters { reason: String },
}

/// Encoder/decoder for one redundancy scheme. Cheap to clone and share.
#[derive(Clone, Debug)]
pub struct Codec {
    redundancy: Redundancy,
    rs: Option<ReedSolomon>,
}

impl Codec {
    pub fn new(redundancy: Redundancy) -> Result<Self, CodingError> {
        let rs = match redundancy {
            Redundancy::Ec { k, m } => {
                Some(ReedSolomon::new(k as usize, m as usize).map_err(|e| {
                    CodingError::Parameters {
                        reason: format!("{e:?}"),
                    }
                })?)
            }
            Redundancy::Replicas { .. } => None,
        };
        Ok(Codec { redundancy, rs })
    }

    pub fn redundancy(&self) -> Redundancy {
        self.redundancy
    }

    /// Length of each shard of a chunk of `chunk_len` bytes.
    pub fn shard_len(&self, chunk_len: usize) -> usize {
        self.redundancy.shard_len(chunk_len)
    }

    /// Splits `chunk` into data shards (zero padded) and computes the parity shards.
    pub fn encode(&self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let total = self.redundancy.total_shards();
        let Some(rs) = &self.rs else {
            return vec![chunk.to_vec(); total];
        };
        let k = self.redundancy.data_shards();
        let len = self.shard_len(chunk.len());
        let mut shards: Vec<Vec<u8>> = Vec::with_capacity(total);
        for i in 0..k {
            let start = (i * len).min(chunk.len());
            let end = ((i + 1) * len).min(chunk.len());
            let mut shard = Vec::with_capacity(len);
            shard.extend_from_slice(&chunk[start..end]);
            shard.resize(len, 0);
            shards.push(shard);
        }
        shards.resize(total, vec![0u8; len]);
        rs.encode(&mut shards)
            .expect("shard count and lengths were built to match the codec");
        shards
    }

    /// Rebuilds the chunk's `chunk_len` bytes from any `data_shards()` of its shards
    /// (`None` marks a missing shard). Every present shard must already be verified.
    pub fn decode(
        &self,
        mut shards: Vec<Option<Vec<u8>>>,
        chunk_len: usize,
    ) -> Result<Vec<u8>, CodingError> {
        let total = self.redundancy.total_shards();
        if shards.len() != total {
            return Err(CodingError::ShardCount {
                got: shards.len(),
                expected: total,
            });
        }
        let len = self.shard_len(chunk_len);
        for (index, shard) in shards.iter().enumerate() {
            if let Some(s) = shard {
                if s.len() != len {
                    return Err(CodingError::ShardLength {
                        index,
                        got: s.len(),
                        expected: len,
                    });
                }
            }
        }
        let available = shards.iter().filter(|s| s.is_some()).count();
        let needed = self.redundancy.data_shards();
        if available < needed {
            return Err(CodingError::TooFewShards { available, needed });
        }
        let Some(rs) = &self.rs else {
            let mut copy = shards
                .into_iter()
                .flatten()
                .next()
                .expect("one shard present");
            copy.truncate(chunk_len);
            return Ok(copy);
        };
        if shards[..needed].iter().any(|s| s.is_none()) {
            rs.reconstruct_data(&mut shards)
                .map_err(|e| CodingError::Parameters {
                    reason: format!("{e:?}"),
                })?;
        }
        let mut out = Vec::with_capacity(len * needed);
        for shard in shards.into_iter().take(needed) {
            out.extend_from_slice(&shard.expect("data shards present after reconstruct"));
        }
        out.truncate(chunk_len);
        Ok(out)
    }

    /// Rebuilds every missing shard in place (used by repair).
    pub fn reconstruct_all(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodingError> {
        let available = shards.iter().filter(|s| s.is_some()).count();
        let needed = self.redundancy.data_shards();
        if available < needed {
            return Err(CodingError::TooFewShards { available, needed });
        }
        match &self.rs {
            Some(rs) => rs.reconstruct(shards).map_err(|e| CodingError::Parameters {
                reason: format!("{e:?}"),
            }),
            None => {
                let copy = shards
                    .iter()
                    .flatten()
                    .next()
                    .cloned()
                    .expect("one present");
                for s in shards.iter_mut() {
                    s.get_or_insert_with(|| copy.clone());
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn decode_survives_any_m_losses() {
        let codec = Codec::new(Redundancy::Ec { k: 4, m: 2 }).unwrap();
        let chunk = data(1_000_003);
        let shards = codec.encode(&chunk);
        assert_eq!(shards.len(), 6);
        for a in 0..6 {
            for b in a + 1..6 {
                let mut partial: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                partial[a] = None;
                partial[b] = None;
                assert_eq!(
                    codec.decode(partial, chunk.len()).unwrap(),
                    chunk,
                    "lost {a},{b}"
                );
            }
        }
    }

    #[test]
    fn decode_fails_with_more_than_m_losses() {
        let codec = Codec::new(Redundancy::Ec { k: 4, m: 2 }).unwrap();
        let chunk = data(4096);
        let mut partial: Vec<Option<Vec<u8>>> =
            codec.encode(&chunk).into_iter().map(Some).collect();
        partial[0] = None;
        partial[2] = None;
        partial[5] = None;
        assert_eq!(
            codec.decode(partial, chunk.len()),
            Err(CodingError::TooFewShards {
                available: 3,
                needed: 4
            })
        );
    }

    #[test]
    fn tiny_and_odd_chunks_round_trip() {
        for redundancy in [Redundancy::Ec { k: 2, m: 1 }, Redundancy::Replicas { n: 3 }] {
            let codec = Codec::new(redundancy).unwrap();
            for len in [1usize, 2, 3, 7, 65_537] {
                let chunk = data(len);
                let mut shards: Vec<Option<Vec<u8>>> =
                    codec.encode(&chunk).into_iter().map(Some).collect();
                shards[0] = None;
                assert_eq!(codec.decode(shards, len).unwrap(), chunk);
            }
        }
    }

    #[test]
    fn reconstruct_all_rebuilds_the_missing_shards() {
        let codec = Codec::new(Redundancy::Ec { k: 3, m: 2 }).unwrap();
        let shards = codec.encode(&data(30_000));
        let mut partial: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        partial[1] = None;
        partial[4] = None;
        codec.reconstruct_all(&mut partial).unwrap();
        let rebuilt: Vec<Vec<u8>> = partial.into_iter().map(Option::unwrap).collect();
        assert_eq!(rebuilt, shards);
    }
}
