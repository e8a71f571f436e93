//! `cairn-meta`: parses flags and the config file, then runs a metadata replica.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use cairn_metadata::config::MetaConfig;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// jemalloc, with background threads that return freed memory to the system (after 10 s
/// unused, its default decay), for Rust and RocksDB's C++ alike. glibc's allocator kept
/// the megabytes that each large entry (a bulk create of 10,000 files) allocates and
/// frees, so a replica's resident memory grew with every entry it had ever applied.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Cairn metadata replica (Raft on RocksDB).
#[derive(Parser, Debug)]
#[command(name = "cairn-meta", version)]
struct Args {
    /// TOML config file; flags and CAIRN_META_* variables override its keys.
    #[arg(long, env = "CAIRN_META_CONFIG")]
    config: Option<PathBuf>,
    /// This replica's Raft id.
    #[arg(long, env = "CAIRN_META_ID")]
    id: Option<u64>,
    /// gRPC listen address.
    #[arg(long, env = "CAIRN_META_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address others use to reach this replica (default: --listen).
    #[arg(long, env = "CAIRN_META_ADVERTISE")]
    advertise: Option<String>,
    /// Data directory.
    #[arg(long, env = "CAIRN_META_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Initial member, `ID=HOST:PORT`; repeat or comma-separate (used with --bootstrap).
    #[arg(long = "peer", env = "CAIRN_META_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Create a new cluster from --peer if this replica's log is empty.
    #[arg(long, env = "CAIRN_META_BOOTSTRAP")]
    bootstrap: bool,
    /// Join the cluster at these metadata addresses (comma-separated) when this
    /// replica's log is empty.
    #[arg(long, env = "CAIRN_META_JOIN", value_delimiter = ',')]
    join: Vec<String>,
    /// Build a Raft snapshot after this many log entries.
    #[arg(long, env = "CAIRN_META_SNAPSHOT_EVERY")]
    snapshot_every: Option<u64>,
    /// Milliseconds an allocated chunk counts as a write in progress.
    #[arg(long, env = "CAIRN_META_PENDING_CHUNK_TTL_MS")]
    pending_chunk_ttl_ms: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "CAIRN_META_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Milliseconds without heartbeat before a storage node is out (its shards rebuilt).
    #[arg(long, env = "CAIRN_META_NODE_OUT_AFTER_MS")]
    node_out_after_ms: Option<u64>,
    /// Milliseconds between repair passes.
    #[arg(long, env = "CAIRN_META_REPAIR_INTERVAL_MS")]
    repair_interval_ms: Option<u64>,
    /// Repair bandwidth limit in bytes per second across the cluster (0, the default:
    /// none; storage nodes run fewer rebuilds while clients use them).
    #[arg(long, env = "CAIRN_META_REPAIR_BYTES_PER_SEC")]
    repair_bytes_per_sec: Option<u64>,
    /// Milliseconds between the leader's checks of the nodes' shard counts.
    #[arg(long, env = "CAIRN_META_NODE_CHECK_INTERVAL_MS")]
    node_check_interval_ms: Option<u64>,
    /// Milliseconds without heartbeat before a storage node is down.
    #[arg(long, env = "CAIRN_META_NODE_DOWN_AFTER_MS")]
    node_down_after_ms: Option<u64>,
    /// Milliseconds a mount session lives without renewal.
    #[arg(long, env = "CAIRN_META_SESSION_LEASE_MS")]
    session_lease_ms: Option<u64>,
    /// Directory with ca.pem and this replica's NAME.pem / NAME.key (from `cairn cert`).
    #[arg(long, env = "CAIRN_META_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Certificate name in the TLS directory (default meta-ID).
    #[arg(long, env = "CAIRN_META_TLS_NAME")]
    tls_name: Option<String>,
    /// Plaintext gRPC without certificates: development only.
    #[arg(long, env = "CAIRN_META_INSECURE")]
    insecure: bool,
    /// Cluster admins (client certificate names), comma-separated or repeated.
    #[arg(long = "admin", env = "CAIRN_META_ADMINS", value_delimiter = ',')]
    admins: Vec<String>,
    /// Instead of serving: build a new metadata group of this one replica (its id,
    /// advertised address and empty data directory from the other settings) from a
    /// backup file written by `cairn meta backup`, then exit. Start the replica
    /// normally afterwards (docs/deploy.md, "Disaster recovery").
    #[arg(long, value_name = "BACKUP_FILE")]
    restore: Option<PathBuf>,
}

fn parse_peer(text: &str) -> anyhow::Result<(u64, String)> {
    let (id, addr) = text
        .split_once('=')
        .with_context(|| format!("peer {text:?} is not ID=HOST:PORT"))?;
    let id = id
        .trim()
        .parse()
        .with_context(|| format!("peer {text:?} has a bad id"))?;
    Ok((id, addr.trim().to_string()))
}

fn build_config(args: Args) -> anyhow::Result<MetaConfig> {
    let mut cfg: MetaConfig = match &args.config {
        Some(path) => cairn_common::config::load_toml(path)?,
        None => {
            let missing = |flag: &str| anyhow::anyhow!("{flag} is required (or give --config)");
            MetaConfig::new(
                args.id.ok_or_else(|| missing("--id"))?,
                args.listen.ok_or_else(|| missing("--listen"))?,
                args.data_dir.clone().ok_or_else(|| missing("--data-dir"))?,
            )
        }
    };
    if let Some(id) = args.id {
        cfg.id = id;
    }
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if args.advertise.is_some() {
        cfg.advertise = args.advertise;
    }
    if let Some(dir) = args.data_dir {
        cfg.data_dir = dir;
    }
    for peer in &args.peers {
        let (id, addr) = parse_peer(peer)?;
        cfg.peers.insert(id, addr);
    }
    if args.bootstrap {
        cfg.bootstrap = true;
    }
    if !args.join.is_empty() {
        cfg.join = args.join;
    }
    if let Some(ms) = args.pending_chunk_ttl_ms {
        cfg.pending_chunk_ttl_ms = ms;
    }
    if let Some(n) = args.snapshot_every {
        cfg.snapshot_every = n;
    }
    if let Some(ms) = args.session_lease_ms {
        cfg.session_lease_ms = ms;
    }
    if let Some(ms) = args.node_down_after_ms {
        cfg.node_down_after_ms = ms;
    }
    if args.metrics_listen.is_some() {
        cfg.metrics_listen = args.metrics_listen;
    }
    if let Some(ms) = args.node_out_after_ms {
        cfg.node_out_after_ms = ms;
    }
    if let Some(ms) = args.repair_interval_ms {
        cfg.repair_interval_ms = ms;
    }
    if let Some(b) = args.repair_bytes_per_sec {
        cfg.repair_bytes_per_sec = b;
    }
    if let Some(ms) = args.node_check_interval_ms {
        cfg.node_check_interval_ms = ms;
    }
    if args.tls_dir.is_some() {
        cfg.tls_dir = args.tls_dir;
    }
    if args.tls_name.is_some() {
        cfg.tls_name = args.tls_name;
    }
    if args.insecure {
        cfg.insecure = true;
    }
    if !args.admins.is_empty() {
        cfg.admins = args.admins;
    }
    Ok(cfg.validate()?)
}

fn main() {
    let mut args = Args::parse();
    let restore = args.restore.take();
    let cfg = match build_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("cairn-meta: {e:#}");
            std::process::exit(2);
        }
    };
    cairn_common::telemetry::init_tracing();
    cairn_common::telemetry::abort_on_panic();
    if let Err(e) = cairn_common::failpoint::configure_from_env() {
        eprintln!("cairn-meta: {e}");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-meta: start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Some(backup) = restore {
        match runtime.block_on(restore_from(&backup, &cfg)) {
            Ok(()) => return,
            Err(e) => {
                eprintln!("cairn-meta: {e:#}");
                std::process::exit(1);
            }
        }
    }
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; shutting down");
            cairn_common::systemd::notify_stopping();
            signals.cancel();
        });
        cairn_metadata::run(cfg, shutdown).await
    });
    if let Err(e) = result {
        eprintln!("cairn-meta: {e:#}");
        std::process::exit(1);
    }
}

/// `--restore`: builds the replica's store from `backup` and says what it holds.
async fn restore_from(backup: &std::path::Path, cfg: &MetaConfig) -> anyhow::Result<()> {
    let addr = cfg.advertise_addr();
    let restored =
        cairn_metadata::backup::restore(backup, &cfg.data_dir, cfg.id, &addr, cfg.state_cache())
            .await
            .with_context(|| format!("restore from {backup:?}"))?;
    let header = &restored.header;
    println!(
        "restored the metadata as of log index {} (backup taken {} by Cairn {}) into {:?}: \
         a new metadata group of replica {} at {addr}; {} mount session(s) ended. \
         Start cairn-meta with this configuration, then add replicas with `cairn meta add`.",
        header.last_applied.map_or(0, |l| l.index),
        header.created_unix_secs,
        header.cairn_version,
        cfg.data_dir,
        cfg.id,
        restored.sessions_ended,
    );
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
