//! Redundancy schemes: Reed-Solomon `ec(k,m)` or `replicas(n)`, and what each needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest number of data shards accepted in `ec(k,m)`.
pub const MAX_DATA_SHARDS: u32 = 16;
/// Largest number of parity shards accepted in `ec(k,m)`.
pub const MAX_PARITY_SHARDS: u32 = 8;
/// Largest replica count accepted in `replicas(n)`.
pub const MAX_REPLICAS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    Ec { k: u32, m: u32 },
    Replicas { n: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedundancyError {
    #[error("cannot parse redundancy {text:?}: expected K+M (for example 4+2) or a replica count")]
    Unparsable { text: String },
    #[error("ec({k},{m}) is out of range: need 1 <= k <= {MAX_DATA_SHARDS} and 1 <= m <= {MAX_PARITY_SHARDS}")]
    EcOutOfRange { k: u32, m: u32 },
    #[error("replicas({n}) is out of range: need 1 <= n <= {MAX_REPLICAS}")]
    ReplicasOutOfRange { n: u32 },
}

impl Redundancy {
    pub const DEFAULT: Redundancy = Redundancy::Ec { k: 4, m: 2 };

    pub fn validate(self) -> Result<Self, RedundancyError> {
        match self {
            Redundancy::Ec { k, m } => {
                if !(1..=MAX_DATA_SHARDS).contains(&k) || !(1..=MAX_PARITY_SHARDS).contains(&m) {
                    return Err(RedundancyError::EcOutOfRange { k, m });
                }
            }
            Redundancy::Replicas { n } => {
                if !(1..=MAX_REPLICAS).contains(&n) {
                    return Err(RedundancyError::ReplicasOutOfRange { n });
                }
            }
        }
        Ok(self)
    }

    /// Number of shards a chunk is stored as (k+m, or n).
    pub fn total_shards(self) -> usize {
        match self {
            Redundancy::Ec { k, m } => (k + m) as usize,
            Redundancy::Replicas { n } => n as usize,
        }
    }

    /// Number of shards needed to read a chunk back (k, or 1).
    pub fn data_shards(self) -> usize {
        match self {
            Redundancy::Ec { k, .. } => k as usize,
            Redundancy::Replicas { .. } => 1,
        }
    }

    /// How many bytes of data `raw_bytes` of disk hold with this scheme (k/(k+m) of them
    /// for erasure coding, 1/n for replication): what a filesystem can promise to store.
    pub fn storable_bytes(self, raw_bytes: u64) -> u64 {
        let stored =
            u128::from(raw_bytes) * self.data_shards() as u128 / self.total_shards().max(1) as u128;
        stored as u64
    }

    /// Length of each shard of a chunk of `chunk_len` bytes (data shards are zero padded
    /// to it; a replica is the whole chunk).
    pub fn shard_len(self, chunk_len: usize) -> usize {
        chunk_len.div_ceil(self.data_shards()).max(1)
    }

    /// Fewest durable shards a write may be acknowledged with (DESIGN.md invariant 1):
    /// k+1 for erasure coding, 2 for replication, never more than the scheme has.
    pub fn min_durable_shards(self) -> usize {
        let wanted = match self {
            Redundancy::Ec { k, .. } => k as usize + 1,
            Redundancy::Replicas { .. } => 2,
        };
        wanted.min(self.total_shards())
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redundancy::Ec { k, m } => write!(f, "ec({k},{m})"),
            Redundancy::Replicas { n } => write!(f, "replicas({n})"),
        }
    }
}

impl FromStr for Redundancy {
    type Err = RedundancyError;

    /// Parses `4+2` (erasure coding) or `ec(4,2)` / `replicas(3)`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || RedundancyError::Unparsable {
            text: text.to_string(),
        };
        let t = text.trim();
        let parsed = if let Some((k, m)) = t.split_once('+') {
            Redundancy::Ec {
                k: k.trim().parse().map_err(|_| bad())?,
                m: m.trim().parse().map_err(|_| bad())?,
            }
        } else if let Some(inner) = t.strip_prefix("ec(").and_then(|r| r.strip_suffix(')')) {
            let (k, m) = inner.split_once(',').ok_or_else(bad)?;
            Redundancy::Ec {
                k: k.trim().parse().map_err(|_| bad())?,
                m: m.trim().parse().map_err(|_| bad())?,
            }
        } else if let Some(inner) = t
            .strip_prefix("replicas(")
            .and_then(|r| r.strip_suffix(')'))
        {
            Redundancy::Replicas {
                n: inner.trim().parse().map_err(|_| bad())?,
            }
        } else {
            return Err(bad());
        };
        parsed.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_schemes() {
        assert_eq!("4+2".parse(), Ok(Redundancy::Ec { k: 4, m: 2 }));
        assert_eq!("ec(8,3)".parse(), Ok(Redundancy::Ec { k: 8, m: 3 }));
        assert_eq!("replicas(3)".parse(), Ok(Redundancy::Replicas { n: 3 }));
        assert_eq!(Redundancy::Ec { k: 4, m: 2 }.to_string(), "ec(4,2)");
    }

    #[test]
    fn rejects_out_of_range_schemes() {
        assert!("0+2".parse::<Redundancy>().is_err());
        assert!("4+0".parse::<Redundancy>().is_err());
        assert!("17+1".parse::<Redundancy>().is_err());
        assert!("replicas(0)".parse::<Redundancy>().is_err());
        assert!("four".parse::<Redundancy>().is_err());
    }

    #[test]
    fn storable_bytes_are_the_data_share_of_raw_bytes() {
        assert_eq!(Redundancy::Ec { k: 4, m: 2 }.storable_bytes(6_000), 4_000);
        assert_eq!(Redundancy::Replicas { n: 3 }.storable_bytes(3_000), 1_000);
        assert_eq!(
            Redundancy::Replicas { n: 1 }.storable_bytes(u64::MAX),
            u64::MAX
        );
        // No overflow on large disks.
        assert_eq!(
            Redundancy::Ec { k: 16, m: 8 }.storable_bytes(u64::MAX / 2),
            (u128::from(u64::MAX / 2) * 16 / 24) as u64
        );
    }

    #[test]
    fn durable_minimum_follows_invariant_one() {
        assert_eq!(Redundancy::Ec { k: 4, m: 2 }.min_durable_shards(), 5);
        assert_eq!(Redundancy::Ec { k: 2, m: 1 }.min_durable_shards(), 3);
        assert_eq!(Redundancy::Replicas { n: 3 }.min_durable_shards(), 2);
        assert_eq!(Redundancy::Replicas { n: 1 }.min_durable_shards(), 1);
    }
}
