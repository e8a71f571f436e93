//! The storage node's configuration: the TOML file's shape, the command-line and
//! environment overrides, and their validation. Knows nothing of disks or gRPC.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_common::NodeId;
use serde::Deserialize;

/// Which IO backend the node uses for shard files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoEngineChoice {
    /// io_uring when a start-up self-test passes on the data directory, else std-fs.
    #[default]
    Auto,
    /// io_uring; start-up fails if it does not work.
    Uring,
    /// Blocking std-fs calls on tokio's blocking pool.
    Std,
}

/// `cairn-node` configuration file (TOML). Command-line flags override each key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, non-zero and unique in the cluster. Required; recorded in
    /// `DATA/cairn-node.id` on first start and checked on every later start.
    pub id: NodeId,
    /// Address the gRPC server listens on, e.g. `127.0.0.11:7100`. Required.
    pub listen: SocketAddr,
    /// Address (`host:port`) other components use to reach this node.
    /// Default: the `listen` address (which then must not be unspecified, like `0.0.0.0`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Directory holding shards, the quarantine and the node id marker. Required; created
    /// if missing.
    pub data_dir: PathBuf,
    /// Failure-domain label used by placement. Default: `"default"`.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// gRPC addresses (`host:port` or `http://host:port`) of the metadata replicas.
    /// Required, at least one; they are tried in turn.
    #[serde(default)]
    pub meta: Vec<String>,
    /// Milliseconds between heartbeats to the metadata service. Default: 1000.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// IO backend: `"auto"`, `"uring"` or `"std"`. Default: `"auto"`.
    #[serde(default)]
    pub io_engine: IoEngineChoice,
    /// Capacity reported to the metadata service, overriding the data directory's file
    /// system size (useful in tests). Default: none (use statvfs).
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// Shards younger than this many milliseconds are never treated as orphans (shards of
    /// a write that has not committed yet). Default: 3600000 (1 h).
    #[serde(default = "default_orphan_grace_ms")]
    pub orphan_grace_ms: u64,
    /// Milliseconds between orphan sweeps. Default: 600000 (10 min).
    #[serde(default = "default_orphan_sweep_interval_ms")]
    pub orphan_sweep_interval_ms: u64,
    /// Milliseconds between scheduled scrub passes (every shard re-read and verified);
    /// 0 disables the schedule (`cairn scrub` still works). Default: 604800000 (7 days).
    #[serde(default = "default_scrub_interval_ms")]
    pub scrub_interval_ms: u64,
    /// Most bytes per second a scrub pass reads. Default: 52428800 (50 MiB/s).
    #[serde(default = "default_scrub_bytes_per_sec")]
    pub scrub_bytes_per_sec: u64,
    /// Percent of the time rebuilds (repair, drain, rebalance) may run while clients
    /// use the node: one at a time, each followed by a pause that keeps them to this
    /// share. Lower keeps client latency closer to an idle cluster's and repair slower
    /// under load (BENCHMARKS.md, repair under load); 100 runs one at a time without
    /// pauses. 1-100, default 25. An idle node runs four at once whatever this is.
    #[serde(default = "default_rebuild_busy_share_pct")]
    pub rebuild_busy_share_pct: u32,
    /// Milliseconds a quarantined (corrupt) shard is kept for inspection before it is
    /// deleted. Default: 604800000 (7 days).
    #[serde(default = "default_quarantine_retention_ms")]
    pub quarantine_retention_ms: u64,
    /// Address of the Prometheus `/metrics` HTTP endpoint. Default: none (not served).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory with `ca.pem`, this node's certificate and key (`node-ID`), and the
    /// client certificate its object API gateway uses (`gateway-ID`), from `cairn cert`.
    /// Exactly one of `tls_dir` and `insecure` must be set.
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    /// Plaintext gRPC, for development only (logged as a warning).
    #[serde(default)]
    pub insecure: bool,
    /// When the metadata service knows this node id with another data directory (this
    /// one was wiped, replaced or is an empty mount point), join anyway as a new, empty
    /// node: the metadata service forgets every shard it placed on the node and repair
    /// rebuilds them from the other nodes. Without it such a node is refused and exits.
    /// Has no effect on a node whose data directory is the registered one. Default: false.
    #[serde(default)]
    pub replace_empty: bool,
}

fn default_quarantine_retention_ms() -> u64 {
    7 * 24 * 3600 * 1000
}

fn default_scrub_interval_ms() -> u64 {
    7 * 24 * 3600 * 1000
}

fn default_scrub_bytes_per_sec() -> u64 {
    50 << 20
}

fn default_rebuild_busy_share_pct() -> u32 {
    25
}

fn default_orphan_grace_ms() -> u64 {
    3_600_000
}

fn default_orphan_sweep_interval_ms() -> u64 {
    600_000
}

fn default_zone() -> String {
    "default".to_string()
}

fn default_heartbeat_interval_ms() -> u64 {
    1000
}

/// Allowed heartbeat intervals, in milliseconds.
pub const HEARTBEAT_INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error(transparent)]
    File(#[from] cairn_common::config::ConfigError),
    #[error("`{field}` is required (set it in the config file or with --{flag})")]
    Missing {
        field: &'static str,
        flag: &'static str,
    },
    #[error("`id` must not be 0")]
    ZeroId,
    #[error("`meta` lists no metadata addresses")]
    NoMetaAddresses,
    #[error("`meta` entry {addr:?} is empty or contains whitespace")]
    BadMetaAddress { addr: String },
    #[error("`heartbeat_interval_ms` is {ms}; it must be between 10 and 60000")]
    HeartbeatInterval { ms: u64 },
    #[error("`listen` is {listen}, which others cannot reach: set `advertise`")]
    UnreachableListen { listen: SocketAddr },
    #[error("`advertise` {advertise:?} is not of the form host:port")]
    BadAdvertise { advertise: String },
    #[error("`zone` must not be empty")]
    EmptyZone,
    #[error("`data_dir` must not be empty")]
    EmptyDataDir,
    #[error("`orphan_sweep_interval_ms` must be at least 100")]
    SweepInterval,
    #[error("`capacity_bytes` must not be 0")]
    ZeroCapacity,
    #[error("`rebuild_busy_share_pct` is {pct}; it must be between 1 and 100")]
    BusyShare { pct: u32 },
}

/// Command-line flags (each also read from a `CAIRN_NODE_*` environment variable); every
/// one that is set overrides the config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigOverrides {
    /// Node id (non-zero).
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub id: Option<NodeId>,
    /// gRPC listen address, e.g. 127.0.0.11:7100.
    #[arg(long, env = "CAIRN_NODE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address advertised to the cluster (default: the listen address).
    #[arg(long, env = "CAIRN_NODE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Data directory.
    #[arg(long, env = "CAIRN_NODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Failure-domain label (default "default").
    #[arg(long, env = "CAIRN_NODE_ZONE")]
    pub zone: Option<String>,
    /// Metadata addresses, comma-separated or repeated.
    #[arg(long, env = "CAIRN_NODE_META", value_delimiter = ',')]
    pub meta: Vec<String>,
    /// Heartbeat interval in milliseconds (default 1000).
    #[arg(long, env = "CAIRN_NODE_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// IO backend (default auto).
    #[arg(long, env = "CAIRN_NODE_IO_ENGINE", value_enum)]
    pub io_engine: Option<IoEngineChoice>,
    /// Capacity to report instead of the file system's size.
    #[arg(long, env = "CAIRN_NODE_CAPACITY_BYTES")]
    pub capacity_bytes: Option<u64>,
    /// Age in milliseconds before an unreferenced shard is swept (default 3600000).
    #[arg(long, env = "CAIRN_NODE_ORPHAN_GRACE_MS")]
    pub orphan_grace_ms: Option<u64>,
    /// Milliseconds between orphan sweeps (default 600000).
    #[arg(long, env = "CAIRN_NODE_ORPHAN_SWEEP_INTERVAL_MS")]
    pub orphan_sweep_interval_ms: Option<u64>,
    /// Milliseconds between scheduled scrubs, 0 = none (default 604800000).
    #[arg(long, env = "CAIRN_NODE_SCRUB_INTERVAL_MS")]
    pub scrub_interval_ms: Option<u64>,
    /// Scrub read bandwidth limit in bytes per second (default 52428800).
    #[arg(long, env = "CAIRN_NODE_SCRUB_BYTES_PER_SEC")]
    pub scrub_bytes_per_sec: Option<u64>,
    /// Percent of the time rebuilds may run while clients use the node (1-100,
    /// default 25).
    #[arg(long, env = "CAIRN_NODE_REBUILD_BUSY_SHARE_PCT")]
    pub rebuild_busy_share_pct: Option<u32>,
    /// Milliseconds quarantined shards are kept (default 604800000).
    #[arg(long, env = "CAIRN_NODE_QUARANTINE_RETENTION_MS")]
    pub quarantine_retention_ms: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "CAIRN_NODE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory with ca.pem, node-ID.pem/.key and gateway-ID.pem/.key (`cairn cert`).
    #[arg(long, env = "CAIRN_NODE_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Plaintext gRPC without certificates: development only.
    #[arg(long, env = "CAIRN_NODE_INSECURE")]
    pub insecure: bool,
    /// Join as a new, empty node if the metadata service knows this node id with another
    /// data directory (it was wiped or replaced): its former shards are rebuilt elsewhere.
    #[arg(long, env = "CAIRN_NODE_REPLACE_EMPTY")]
    pub replace_empty: bool,
}

impl NodeConfig {
    /// The node's own transport (`node-ID`) and its object gateway's (`gateway-ID`), both
    /// connecting from the address the node listens on.
    pub fn transports(
        &self,
    ) -> Result<(cairn_net::Transport, cairn_net::Transport), cairn_net::TlsError> {
        use cairn_net::{TlsFiles, Transport};
        let files = |name: String| self.tls_dir.as_ref().map(|dir| TlsFiles::new(dir, name));
        let source = self.listen.ip();
        Ok((
            Transport::choose(files(format!("node-{}", self.id)), self.insecure)?
                .from_source(source),
            Transport::choose(files(format!("gateway-{}", self.id)), self.insecure)?
                .from_source(source),
        ))
    }

    /// Reads `file` (if any), applies `overrides` and validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: ConfigOverrides,
    ) -> Result<NodeConfig, NodeConfigError> {
        let base = match file {
            Some(path) => Some(cairn_common::config::load_toml::<NodeConfig>(path)?),
            None => None,
        };
        let cfg = Self::merge(base, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn merge(base: Option<NodeConfig>, o: ConfigOverrides) -> Result<NodeConfig, NodeConfigError> {
        let missing = |field, flag| NodeConfigError::Missing { field, flag };
        let mut cfg = match base {
            Some(cfg) => cfg,
            None => NodeConfig {
                id: o.id.ok_or(missing("id", "id"))?,
                listen: o.listen.ok_or(missing("listen", "listen"))?,
                advertise: None,
                data_dir: o.data_dir.clone().ok_or(missing("data_dir", "data-dir"))?,
                zone: default_zone(),
                meta: Vec::new(),
                heartbeat_interval_ms: default_heartbeat_interval_ms(),
                io_engine: IoEngineChoice::default(),
                capacity_bytes: None,
                orphan_grace_ms: default_orphan_grace_ms(),
                orphan_sweep_interval_ms: default_orphan_sweep_interval_ms(),
                scrub_interval_ms: default_scrub_interval_ms(),
                scrub_bytes_per_sec: default_scrub_bytes_per_sec(),
                rebuild_busy_share_pct: default_rebuild_busy_share_pct(),
                metrics_listen: None,
                quarantine_retention_ms: default_quarantine_retention_ms(),
                tls_dir: None,
                insecure: false,
                replace_empty: false,
            },
        };
        if let Some(id) = o.id {
            cfg.id = id;
        }
        if o.tls_dir.is_some() {
            cfg.tls_dir = o.tls_dir.clone();
        }
        if o.insecure {
            cfg.insecure = true;
        }
        if o.replace_empty {
            cfg.replace_empty = true;
        }
        if let Some(listen) = o.listen {
            cfg.listen = listen;
        }
        if o.advertise.is_some() {
            cfg.advertise = o.advertise;
        }
        if let Some(dir) = o.data_dir {
            cfg.data_dir = dir;
        }
        if let Some(zone) = o.zone {
            cfg.zone = zone;
        }
        if !o.meta.is_empty() {
            cfg.meta = o.meta;
        }
        if let Some(ms) = o.heartbeat_interval_ms {
            cfg.heartbeat_interval_ms = ms;
        }
        if let Some(engine) = o.io_engine {
            cfg.io_engine = engine;
        }
        if o.capacity_bytes.is_some() {
            cfg.capacity_bytes = o.capacity_bytes;
        }
        if let Some(ms) = o.orphan_grace_ms {
            cfg.orphan_grace_ms = ms;
        }
        if let Some(ms) = o.orphan_sweep_interval_ms {
            cfg.orphan_sweep_interval_ms = ms;
        }
        if let Some(ms) = o.scrub_interval_ms {
            cfg.scrub_interval_ms = ms;
        }
        if let Some(b) = o.scrub_bytes_per_sec {
            cfg.scrub_bytes_per_sec = b;
        }
        if let Some(pct) = o.rebuild_busy_share_pct {
            cfg.rebuild_busy_share_pct = pct;
        }
        if let Some(ms) = o.quarantine_retention_ms {
            cfg.quarantine_retention_ms = ms;
        }
        if o.metrics_listen.is_some() {
            cfg.metrics_listen = o.metrics_listen;
        }
        Ok(cfg)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        if self.id == 0 {
            return Err(NodeConfigError::ZeroId);
        }
        if self.meta.is_empty() {
            return Err(NodeConfigError::NoMetaAddresses);
        }
        if let Some(addr) = self
            .meta
            .iter()
            .find(|a| a.trim().is_empty() || a.contains(char::is_whitespace))
        {
            return Err(NodeConfigError::BadMetaAddress { addr: addr.clone() });
        }
        if !HEARTBEAT_INTERVAL_RANGE_MS.contains(&self.heartbeat_interval_ms) {
            return Err(NodeConfigError::HeartbeatInterval {
                ms: self.heartbeat_interval_ms,
            });
        }
        match &self.advertise {
            None if self.listen.ip().is_unspecified() => {
                return Err(NodeConfigError::UnreachableListen {
                    listen: self.listen,
                })
            }
            Some(a) if !is_host_port(a) => {
                return Err(NodeConfigError::BadAdvertise {
                    advertise: a.clone(),
                })
            }
            _ => {}
        }
        if self.zone.trim().is_empty() {
            return Err(NodeConfigError::EmptyZone);
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(NodeConfigError::EmptyDataDir);
        }
        if self.capacity_bytes == Some(0) {
            return Err(NodeConfigError::ZeroCapacity);
        }
        if self.orphan_sweep_interval_ms < 100 {
            return Err(NodeConfigError::SweepInterval);
        }
        if !(1..=100).contains(&self.rebuild_busy_share_pct) {
            return Err(NodeConfigError::BusyShare {
                pct: self.rebuild_busy_share_pct,
            });
        }
        Ok(())
    }

    /// The address to give the metadata service, given the address actually bound
    /// (which differs from `listen` when it asked for port 0).
    pub fn advertised_address(&self, bound: SocketAddr) -> String {
        self.advertise.clone().unwrap_or_else(|| bound.to_string())
    }

    pub fn heartbeat_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.heartbeat_interval_ms)
    }
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("node.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const MINIMAL: &str = "id = 3\nlisten = \"127.0.0.11:7100\"\ndata_dir = \"/tmp/x\"\nmeta = [\"127.0.0.1:7000\"]\n";

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NodeConfig::load(Some(&write(dir.path(), MINIMAL)), Default::default()).unwrap();
        assert_eq!(cfg.id, 3);
        assert_eq!(cfg.zone, "default");
        assert_eq!(cfg.heartbeat_interval_ms, 1000);
        assert_eq!(cfg.io_engine, IoEngineChoice::Auto);
        assert_eq!(cfg.capacity_bytes, None);
        assert_eq!(
            cfg.advertised_address("127.0.0.11:7100".parse().unwrap()),
            "127.0.0.11:7100"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("{MINIMAL}zonee = \"a\"\n"));
        assert!(matches!(
            NodeConfig::load(Some(&path), Default::default()),
            Err(NodeConfigError::File(_))
        ));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("{MINIMAL}io_engine = \"uring\"\n"));
        let cfg = NodeConfig::load(
            Some(&path),
            ConfigOverrides {
                id: Some(9),
                meta: vec!["a:1".into(), "b:2".into()],
                io_engine: Some(IoEngineChoice::Std),
                zone: Some("z1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.id, 9);
        assert_eq!(cfg.meta, ["a:1", "b:2"]);
        assert_eq!(cfg.io_engine, IoEngineChoice::Std);
        assert_eq!(cfg.zone, "z1");
        assert_eq!(cfg.data_dir, Path::new("/tmp/x"));
    }

    #[test]
    fn flags_alone_are_enough() {
        let cfg = NodeConfig::load(
            None,
            ConfigOverrides {
                id: Some(1),
                listen: Some("127.0.0.1:0".parse().unwrap()),
                data_dir: Some("/tmp/d".into()),
                meta: vec!["m:1".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.heartbeat_interval_ms, 1000);
        let err = NodeConfig::load(None, ConfigOverrides::default()).unwrap_err();
        assert!(matches!(err, NodeConfigError::Missing { field: "id", .. }));
    }

    #[test]
    fn invalid_values_get_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good: NodeConfig =
            cairn_common::config::load_toml(&write(dir.path(), MINIMAL)).unwrap();
        good.validate().unwrap();
        let check = |edit: &dyn Fn(&mut NodeConfig)| {
            let mut cfg = good.clone();
            edit(&mut cfg);
            cfg.validate().unwrap_err()
        };
        assert!(matches!(check(&|c| c.id = 0), NodeConfigError::ZeroId));
        assert!(matches!(
            check(&|c| c.meta.clear()),
            NodeConfigError::NoMetaAddresses
        ));
        assert!(matches!(
            check(&|c| c.heartbeat_interval_ms = 0),
            NodeConfigError::HeartbeatInterval { ms: 0 }
        ));
        assert!(matches!(
            check(&|c| c.listen = "0.0.0.0:7100".parse().unwrap()),
            NodeConfigError::UnreachableListen { .. }
        ));
        assert!(matches!(
            check(&|c| c.advertise = Some("nohost".into())),
            NodeConfigError::BadAdvertise { .. }
        ));
        assert!(matches!(
            check(&|c| c.zone = " ".into()),
            NodeConfigError::EmptyZone
        ));
        assert!(matches!(
            check(&|c| c.capacity_bytes = Some(0)),
            NodeConfigError::ZeroCapacity
        ));
        assert!(matches!(
            check(&|c| c.rebuild_busy_share_pct = 0),
            NodeConfigError::BusyShare { pct: 0 }
        ));
        assert!(matches!(
            check(&|c| c.rebuild_busy_share_pct = 101),
            NodeConfigError::BusyShare { pct: 101 }
        ));
    }
}
