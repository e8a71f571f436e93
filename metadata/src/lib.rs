//! `cairn-meta`: the Raft-replicated metadata service (openraft on RocksDB).
//!
//! Owns the namespace, chunk placements and the cluster map. Knows nothing of shard
//! bytes: storage nodes and clients move data; this service only decides and records.

// openraft's storage traits fix `StorageError` (224 bytes) as the error type of every
// storage call; boxing it in our helpers would only add conversions at each trait edge.
#![allow(clippy::result_large_err)]

pub mod access;
pub mod backup;
pub mod codec;
pub mod config;
pub mod convert;
pub mod fs_access;
pub mod gc;
pub mod group_commit;
pub mod join;
pub mod leadership;
pub mod leases;
pub mod liveness;
pub mod log_format;
pub mod log_store;
pub mod metrics;
pub mod namespace;
pub mod network;
pub mod node_check;
pub mod pending;
pub mod raft_service;
pub mod rebalance;
pub mod repair;
pub mod resident;
pub mod service;
pub mod snapshot_archive;
pub mod snapshot_stream;
pub mod state_db;
pub mod state_machine;
pub mod store;
pub mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_proto::meta::meta_service_server::MetaServiceServer;
use cairn_proto::meta::raft_service_server::RaftServiceServer;
use openraft::{BasicNode, SnapshotPolicy};
use tokio_util::sync::CancellationToken;

use crate::config::MetaConfig;
use crate::liveness::Liveness;
use crate::network::{Network, MAX_RAFT_MESSAGE_BYTES};
use crate::raft_service::{RaftServer, VoteWait};
use crate::service::MetaServer;
use crate::types::Raft;

/// HTTP/2 flow-control window of one stream accepted by a replica.
const SNAPSHOT_STREAM_WINDOW: u32 = 8 * snapshot_stream::CHUNK_BYTES as u32;

fn raft_config(cfg: &MetaConfig) -> anyhow::Result<Arc<openraft::Config>> {
    let config = openraft::Config {
        cluster_name: "cairn-meta".into(),
        heartbeat_interval: cfg.raft_heartbeat_ms,
        election_timeout_min: cfg.election_timeout_ms,
        election_timeout_max: cfg.election_timeout_ms * 2,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
        // Followers that lag by less than this catch up from the log, not a snapshot.
        max_in_snapshot_log_to_keep: cfg.snapshot_every.min(1000),
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().context("validate Raft config")?))
}

/// Runs a metadata replica until `shutdown` is cancelled.
///
/// Shutdown order: stop accepting gRPC calls (in-flight calls finish), stop the GC and
/// leadership tasks, then shut down Raft (which flushes nothing: every log write that
/// must be durable was synced; the committed id need not be, see `log_store.rs`).
pub async fn run(cfg: MetaConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let transport = cfg.transport().context("set up gRPC transport security")?;
    cairn_net::transport::reload_on_sighup("cairn-meta", vec![transport.clone()]);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.listen))?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data directory {:?}", cfg.data_dir))?;
    let (log_store, state_machine) = store::open(&cfg.data_dir.join("raft"), cfg.state_cache())
        .context("open metadata store")?;
    let state = state_machine.shared();
    let log = log_store.clone();
    let raft = Raft::new(
        cfg.id,
        raft_config(&cfg)?,
        Network::new(transport.clone()),
        log_store,
        state_machine,
    )
    .await
    .context("start Raft")?;

    if cfg.bootstrap && !raft.is_initialized().await? {
        let members: BTreeMap<u64, BasicNode> = cfg
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        tracing::info!(?members, "bootstrapping a new metadata cluster");
        raft.initialize(members)
            .await
            .context("initialize the metadata cluster")?;
    }

    let tasks = tokio_util::task::TaskTracker::new();
    if !cfg.join.is_empty() && !raft.is_initialized().await? {
        tasks.spawn(join::ask_to_join(
            cfg.id,
            cfg.advertise_addr(),
            cfg.join.clone(),
            transport.clone(),
            shutdown.clone(),
        ));
    }

    let down_after = Duration::from_millis(cfg.node_down_after_ms);
    let out_after = Duration::from_millis(cfg.node_out_after_ms);
    // Garbage collection and repair/rebalance take turns on shard placements.
    let placement_lock = Arc::new(tokio::sync::Mutex::new(()));
    let liveness = Arc::new(Mutex::new(Liveness::new(
        down_after,
        out_after,
        Instant::now(),
    )));
    let repair_stats = Arc::new(repair::RepairStats::default());
    tasks.spawn(repair::run(
        cfg.id,
        raft.clone(),
        state.clone(),
        liveness.clone(),
        repair_stats.clone(),
        repair::RepairConfig {
            interval: Duration::from_millis(cfg.repair_interval_ms),
            bytes_per_sec: cfg.repair_bytes_per_sec,
            placement_lock: placement_lock.clone(),
            transport: transport.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(node_check::run(
        cfg.id,
        raft.clone(),
        state.clone(),
        liveness.clone(),
        node_check::NodeCheckConfig {
            interval: Duration::from_millis(cfg.node_check_interval_ms),
            transport: transport.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(watch_leadership(
        cfg.id,
        raft.clone(),
        liveness.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(gc::run(
        cfg.id,
        raft.clone(),
        state.clone(),
        liveness.clone(),
        placement_lock.clone(),
        transport.clone(),
        shutdown.clone(),
    ));

    if let Some(listen) = cfg.metrics_listen {
        cairn_common::telemetry::serve_metrics(listen)?;
        tasks.spawn(metrics::run(
            cfg.id,
            raft.clone(),
            state.clone(),
            log,
            liveness.clone(),
            repair_stats.clone(),
            shutdown.clone(),
        ));
    }

    let leases = Arc::new(Mutex::new(leases::Leases::new(
        Duration::from_millis(cfg.session_lease_ms),
        Instant::now(),
    )));
    tasks.spawn(leases::run(
        cfg.id,
        raft.clone(),
        state.clone(),
        leases.clone(),
        shutdown.clone(),
    ));

    let meta = MetaServer::new(
        cfg.id,
        raft.clone(),
        state,
        liveness,
        repair_stats,
        Duration::from_millis(cfg.pending_chunk_ttl_ms),
        leases,
        transport.clone(),
    )
    .with_admins(access::Admins::new(cfg.admins.iter().cloned()));
    tracing::info!(id = cfg.id, listen = %cfg.listen, data_dir = ?cfg.data_dir, "cairn-meta serving");
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(cairn_net::MAX_STREAMS_PER_CONNECTION))
        // HTTP/2 windows of several snapshot chunks (`snapshot_stream`) keep the leader
        // sending while this replica writes the chunk before: with hyper's 1 MiB
        // default a stream had one chunk in flight at a time.
        .initial_stream_window_size(Some(SNAPSHOT_STREAM_WINDOW))
        .initial_connection_window_size(Some(2 * SNAPSHOT_STREAM_WINDOW))
        .add_service(
            MetaServiceServer::new(meta)
                .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftServiceServer::new(RaftServer {
                raft: raft.clone(),
                votes: VoteWait::new(leadership::vote_wait_after_start(Duration::from_millis(
                    raft.config().election_timeout_min,
                ))),
            })
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            cairn_net::incoming(listener, transport, "cairn-meta"),
            shutdown.clone().cancelled_owned(),
        );
    // Bound, recovered and about to accept: connections made from now on are served.
    cairn_common::systemd::notify_ready();
    let served = server.await.context("serve gRPC");
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft shutdown");
    }
    served
}

/// Resets heartbeat bookkeeping whenever this replica becomes leader.
async fn watch_leadership(
    id: u64,
    raft: Raft,
    liveness: Arc<Mutex<Liveness>>,
    shutdown: CancellationToken,
) {
    let mut metrics = raft.metrics();
    // The term led in when last looked: a leadership lost and won back between two
    // looks (changes are coalesced) is a new term, and heartbeats went elsewhere.
    let mut led = None;
    loop {
        let leading = leadership::leading_term(&metrics.borrow_and_update(), id);
        if leading.is_some() && leading != led {
            tracing::info!(id, term = leading, "became metadata leader");
            liveness
                .lock()
                .expect("liveness lock poisoned")
                .became_leader(Instant::now());
        }
        led = leading;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
