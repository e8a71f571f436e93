//! `cairn-meta` configuration: one TOML file, unknown keys refused, CLI flags override.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// This replica's Raft id (required, non-zero, unique in the cluster).
    pub id: u64,
    /// gRPC listen address for clients, storage nodes and peers (required).
    pub listen: SocketAddr,
    /// Address peers and clients use to reach this replica (default: `listen`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Directory of the RocksDB store (required).
    pub data_dir: PathBuf,
    /// Initial members as `id -> address`, used only with `bootstrap` (default: just this
    /// replica). In TOML a table whose keys are the ids: `[peers]`, `1 = "10.0.0.11:7100"`.
    #[serde(default, with = "peer_ids")]
    pub peers: BTreeMap<u64, String>,
    /// Create a new cluster from `peers` if this replica's log is empty (default false:
    /// wait to be contacted by a leader).
    #[serde(default)]
    pub bootstrap: bool,
    /// Metadata addresses of an existing cluster to join: when this replica's log is
    /// empty it asks the cluster to add it (learner, then voter). Default: none.
    #[serde(default)]
    pub join: Vec<String>,
    /// Address of the Prometheus `/metrics` HTTP endpoint (default: none, not served).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// A storage node without a heartbeat for this long is `down` (default 5000 ms).
    #[serde(default = "default_node_down_after_ms")]
    pub node_down_after_ms: u64,
    /// Raft heartbeat interval (default 150 ms).
    #[serde(default = "default_raft_heartbeat_ms")]
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout, lower bound; the upper bound is twice this (default 500 ms).
    /// A follower that hears nothing from the leader starts an election after a leader
    /// lease (the upper bound) plus a random timeout between the bounds: 3-4 times this,
    /// 1.5-2 s by default, which is how long writes wait when the leader dies.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// A storage node without a heartbeat for this long is `out`: its shards are rebuilt
    /// on other nodes (default 60000 ms).
    #[serde(default = "default_node_out_after_ms")]
    pub node_out_after_ms: u64,
    /// Time between repair passes of the leader (default 1000 ms).
    #[serde(default = "default_repair_interval_ms")]
    pub repair_interval_ms: u64,
    /// Most bytes per second repair and rebalance write across the cluster; default 0:
    /// no cap (storage nodes run fewer rebuilds while clients use them). `cairn repair
    /// throttle` replaces it cluster-wide.
    #[serde(default = "default_repair_bytes_per_sec")]
    pub repair_bytes_per_sec: u64,
    /// Time between the leader's shard-count checks (default 10000 ms): each compares the
    /// shards placed on every node with the count its heartbeats report, and checks the
    /// shards of a node that reports clearly fewer (`node_check.rs`).
    #[serde(default = "default_node_check_interval_ms")]
    pub node_check_interval_ms: u64,
    /// How long an allocated chunk counts as a write in progress before commit (the storage
    /// nodes' orphan sweep spares it meanwhile); default 3600000 ms (1 h).
    #[serde(default = "default_pending_chunk_ttl_ms")]
    pub pending_chunk_ttl_ms: u64,
    /// A mount session whose lease the leader has not seen renewed for this long is ended:
    /// its locks are released and its writes refused from then on (default 10000 ms).
    #[serde(default = "default_session_lease_ms")]
    pub session_lease_ms: u64,
    /// Build a snapshot after this many log entries (default 5000). A snapshot is a
    /// checkpoint of the state database: its cost is a memtable flush, not the namespace.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Block cache of the state database in MiB, index and filter blocks included
    /// (default 256): with the memtables, what bounds a replica's memory, whatever the
    /// number of files.
    #[serde(default = "default_state_cache_mib")]
    pub state_cache_mib: u64,
    /// Memtables of the state database in MiB, every table together (default 64).
    #[serde(default = "default_state_memtable_mib")]
    pub state_memtable_mib: u64,
    /// Directory with `ca.pem` and this replica's certificate and key (`cairn cert`).
    /// Exactly one of `tls_dir` and `insecure` must be set.
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    /// Certificate name in `tls_dir` (default `meta-ID`).
    #[serde(default)]
    pub tls_name: Option<String>,
    /// Plaintext gRPC, for development only (logged as a warning).
    #[serde(default)]
    pub insecure: bool,
    /// Client certificate names that are cluster admins: they create buckets, grant
    /// access, administer the cluster and use the filesystem protocol (mounts).
    #[serde(default)]
    pub admins: Vec<String>,
}

fn default_node_down_after_ms() -> u64 {
    5000
}
fn default_raft_heartbeat_ms() -> u64 {
    150
}
fn default_election_timeout_ms() -> u64 {
    500
}
fn default_node_out_after_ms() -> u64 {
    60_000
}
fn default_repair_interval_ms() -> u64 {
    1000
}
fn default_repair_bytes_per_sec() -> u64 {
    0
}
fn default_node_check_interval_ms() -> u64 {
    10_000
}
fn default_pending_chunk_ttl_ms() -> u64 {
    3_600_000
}
fn default_session_lease_ms() -> u64 {
    10_000
}
fn default_snapshot_every() -> u64 {
    5000
}
fn default_state_cache_mib() -> u64 {
    256
}
fn default_state_memtable_mib() -> u64 {
    64
}

impl MetaConfig {
    /// A configuration with the required settings and every other one at its default.
    pub fn new(id: u64, listen: SocketAddr, data_dir: PathBuf) -> MetaConfig {
        MetaConfig {
            id,
            listen,
            advertise: None,
            data_dir,
            peers: BTreeMap::new(),
            bootstrap: false,
            join: Vec::new(),
            metrics_listen: None,
            node_down_after_ms: default_node_down_after_ms(),
            raft_heartbeat_ms: default_raft_heartbeat_ms(),
            election_timeout_ms: default_election_timeout_ms(),
            node_out_after_ms: default_node_out_after_ms(),
            repair_interval_ms: default_repair_interval_ms(),
            repair_bytes_per_sec: default_repair_bytes_per_sec(),
            node_check_interval_ms: default_node_check_interval_ms(),
            pending_chunk_ttl_ms: default_pending_chunk_ttl_ms(),
            session_lease_ms: default_session_lease_ms(),
            snapshot_every: default_snapshot_every(),
            state_cache_mib: default_state_cache_mib(),
            state_memtable_mib: default_state_memtable_mib(),
            tls_dir: None,
            tls_name: None,
            insecure: false,
            admins: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaConfigError {
    #[error("`id` must be non-zero")]
    ZeroId,
    #[error("`peers` must include this replica's id {id} when bootstrapping")]
    SelfNotInPeers { id: u64 },
    #[error("`election_timeout_ms` ({election}) must exceed 3x `raft_heartbeat_ms` ({heartbeat})")]
    Timeouts { election: u64, heartbeat: u64 },
    #[error("`node_down_after_ms` must be at least 1000")]
    DownTimeout,
    #[error("`node_out_after_ms` must be at least `node_down_after_ms`")]
    OutTimeout,
    #[error(
        "`repair_interval_ms` must be at least 100 and `repair_bytes_per_sec` 0 (no cap) or at least 1048576"
    )]
    Repair,
    #[error("`node_check_interval_ms` must be at least 100")]
    NodeCheckInterval,
    #[error("`bootstrap` and `join` exclude each other: a replica starts a cluster or joins one")]
    BootstrapAndJoin,
    #[error("`snapshot_every` must be at least 10")]
    SnapshotEvery,
    #[error("`session_lease_ms` must be at least 1000")]
    SessionLease,
    #[error("`state_cache_mib` must be at least 8 and `state_memtable_mib` at least 4")]
    StateMemory,
    #[error(
        "`listen` is {listen}, which peers and clients cannot reach: set `advertise` to the \
         address they use"
    )]
    UnreachableListen { listen: SocketAddr },
}

impl MetaConfig {
    /// This replica's gRPC transport: mutual TLS from `tls_dir`, or `insecure`; its
    /// connections start from the address it listens on.
    pub fn transport(&self) -> Result<cairn_net::Transport, cairn_net::TlsError> {
        let files = self.tls_dir.as_ref().map(|dir| {
            let name = self.tls_name.clone();
            cairn_net::TlsFiles::new(dir, name.unwrap_or_else(|| format!("meta-{}", self.id)))
        });
        cairn_net::Transport::choose(files, self.insecure).map(|t| t.from_source(self.listen.ip()))
    }

    /// The state database's memory budget.
    pub fn state_cache(&self) -> crate::state_db::CacheConfig {
        crate::state_db::CacheConfig {
            block_cache_bytes: (self.state_cache_mib << 20) as usize,
            memtable_bytes: (self.state_memtable_mib << 20) as usize,
        }
    }

    pub fn advertise_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    pub fn validate(mut self) -> Result<Self, MetaConfigError> {
        if self.id == 0 {
            return Err(MetaConfigError::ZeroId);
        }
        // The advertised address goes into the membership every replica and client uses.
        if self.advertise.is_none() && self.listen.ip().is_unspecified() {
            return Err(MetaConfigError::UnreachableListen {
                listen: self.listen,
            });
        }
        if self.bootstrap {
            if self.peers.is_empty() {
                self.peers.insert(self.id, self.advertise_addr());
            } else if !self.peers.contains_key(&self.id) {
                return Err(MetaConfigError::SelfNotInPeers { id: self.id });
            }
        }
        if self.bootstrap && !self.join.is_empty() {
            return Err(MetaConfigError::BootstrapAndJoin);
        }
        if self.session_lease_ms < 1000 {
            return Err(MetaConfigError::SessionLease);
        }
        if self.snapshot_every < 10 {
            return Err(MetaConfigError::SnapshotEvery);
        }
        if self.state_cache_mib < 8 || self.state_memtable_mib < 4 {
            return Err(MetaConfigError::StateMemory);
        }
        if self.election_timeout_ms <= 3 * self.raft_heartbeat_ms {
            return Err(MetaConfigError::Timeouts {
                election: self.election_timeout_ms,
                heartbeat: self.raft_heartbeat_ms,
            });
        }
        if self.node_down_after_ms < 1000 {
            return Err(MetaConfigError::DownTimeout);
        }
        if self.node_out_after_ms < self.node_down_after_ms {
            return Err(MetaConfigError::OutTimeout);
        }
        if self.repair_interval_ms < 100
            || (self.repair_bytes_per_sec != 0 && self.repair_bytes_per_sec < (1 << 20))
        {
            return Err(MetaConfigError::Repair);
        }
        if self.node_check_interval_ms < 100 {
            return Err(MetaConfigError::NodeCheckInterval);
        }
        Ok(self)
    }
}

/// `peers` with its ids as TOML keys, which are strings: parsed as numbers (an id that is
/// not one is refused with the key named), written as strings.
mod peer_ids {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        peers: &BTreeMap<u64, String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(peers.iter().map(|(id, addr)| (id.to_string(), addr)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u64, String>, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer)?
            .into_iter()
            .map(|(id, addr)| match id.trim().parse::<u64>() {
                Ok(n) => Ok((n, addr)),
                Err(_) => Err(D::Error::custom(format!(
                    "peer id {id:?} is not a replica id (a positive integer)"
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{MetaConfig, MetaConfigError};

    #[test]
    fn a_wildcard_listen_address_needs_an_advertised_one() {
        let listen = "0.0.0.0:7100".parse().unwrap();
        let cfg = MetaConfig::new(1, listen, "/var/lib/cairn/meta".into());
        assert_eq!(
            cfg.clone().validate().unwrap_err(),
            MetaConfigError::UnreachableListen { listen }
        );
        let cfg = MetaConfig {
            advertise: Some("10.0.0.11:7100".into()),
            ..cfg
        };
        assert_eq!(cfg.validate().unwrap().advertise_addr(), "10.0.0.11:7100");
    }

    #[test]
    fn peers_are_written_in_toml_with_their_ids_as_keys() {
        let text = r#"
            id = 1
            listen = "10.0.0.11:7100"
            data_dir = "/var/lib/cairn/meta"
            insecure = true
            bootstrap = true
            [peers]
            1 = "10.0.0.11:7100"
            2 = "10.0.0.12:7100"
            3 = "10.0.0.13:7100"
        "#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.toml");
        std::fs::write(&path, text).unwrap();
        let cfg: MetaConfig = cairn_common::config::load_toml(&path).unwrap();
        assert_eq!(cfg.peers.len(), 3);
        assert_eq!(cfg.peers[&2], "10.0.0.12:7100");

        std::fs::write(&path, text.replace("2 = ", "two = ")).unwrap();
        let err = cairn_common::config::load_toml::<MetaConfig>(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("peer id \"two\""), "{err}");
    }
}
