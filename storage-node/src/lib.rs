//! `cairn-node`, the storage node: stores shards durably on a local disk (io_uring, with a
//! std-fs fallback), serves them verified over gRPC, and heartbeats to the metadata
//! service. `main.rs` only parses the command line and calls [`run`].

pub mod aligned;
pub mod background;
pub mod config;
pub mod durable;
pub mod heartbeat;
pub mod inflight;
pub mod io_engine;
pub mod marker;
pub mod object_service;
pub mod orphan_sweep;
pub mod rebuild;
pub mod scrub;
pub mod service;
pub mod shard_file;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{ConfigOverrides, IoEngineChoice, NodeConfig};

use crate::heartbeat::HeartbeatConfig;
use crate::io_engine::IoEngine;
use crate::service::NodeServiceImpl;
use crate::store::ShardStore;

/// Runs a storage node until `shutdown` is cancelled: binds `cfg.listen`, then
/// [`run_with_listener`].
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.listen))?;
    run_with_listener(cfg, listener, shutdown).await
}

/// Runs a storage node on an already bound listener (tests bind 127.0.0.1:0).
///
/// Start-up: validate the config, create the data directory, pick the IO engine (self-test
/// in the data directory), open the store (node-id marker check, usage scan), start the
/// heartbeat task, serve gRPC.
///
/// Shutdown order, once `shutdown` is cancelled (or the server fails, or the metadata
/// service refuses the node: then this returns that refusal as the error):
/// 1. the gRPC server stops accepting and lets in-flight RPCs finish, so every
///    acknowledged PutShard is durable and no write is cut midway;
/// 2. the heartbeat task is cancelled (the metadata service then marks the node down);
/// 3. all tracked tasks are awaited;
/// 4. the store and IO engine are dropped: the io_uring thread completes what is in
///    flight and is joined.
pub async fn run_with_listener(
    cfg: NodeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate().context("invalid configuration")?;
    let (transport, gateway_transport) =
        cfg.transports().context("set up gRPC transport security")?;
    cairn_net::transport::reload_on_sighup(
        "cairn-node",
        vec![transport.clone(), gateway_transport.clone()],
    );
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data directory {:?}", cfg.data_dir))?;
    let engine = IoEngine::detect(&cfg.data_dir, cfg.io_engine)
        .await
        .context("start the IO engine")?;
    let engine_name = engine.name();
    let store = Arc::new(
        ShardStore::open(&cfg.data_dir, cfg.id, engine)
            .await
            .with_context(|| format!("open data directory {:?}", cfg.data_dir))?,
    );
    let local = listener
        .local_addr()
        .context("read the listener's address")?;
    let advertise = cfg.advertised_address(local);
    let usage = store.usage();
    tracing::info!(
        node = cfg.id,
        listen = %local,
        advertise = %advertise,
        io_engine = engine_name,
        write_mode = ?store.write_mode(),
        data_dir = ?cfg.data_dir,
        shards = usage.shard_count,
        quarantined = usage.quarantined_count,
        "cairn-node started"
    );

    let tasks = TaskTracker::new();
    // Stops the server: on `shutdown`, or when the metadata service refuses the node.
    let stop = shutdown.child_token();
    let heartbeat_stop = shutdown.child_token();
    let refused = Arc::new(std::sync::Mutex::new(None));
    {
        let heartbeat = heartbeat::run(
            HeartbeatConfig {
                node_id: cfg.id,
                advertise,
                zone: cfg.zone.clone(),
                meta: cfg.meta.clone(),
                interval: cfg.heartbeat_interval(),
                capacity_override: cfg.capacity_bytes,
                transport: transport.clone(),
                replace_empty: cfg.replace_empty,
            },
            store.clone(),
            heartbeat_stop.clone(),
        );
        let (refused, stop) = (refused.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(e) = heartbeat.await {
                // The refusal itself is the error `run` returns (and `main` prints).
                tracing::error!(disk = %e.disk, "the metadata service refuses this node; stopping");
                *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                stop.cancel();
            }
        });
    }

    // The object API and the orphan sweep use the cluster through the client library.
    let cluster = cairn_common::config::ClusterFile {
        meta: cfg
            .meta
            .iter()
            .map(|a| a.trim_start_matches("http://").to_string())
            .collect(),
        chunk_size: cairn_common::DEFAULT_CHUNK_SIZE,
        tls_dir: None,
        tls_name: String::new(),
        insecure: transport.is_insecure(),
        token_file: None,
    };
    // The sweep asks as this node; the object API acts for its callers as a client.
    let node_client = cairn_client::Client::with_transport(&cluster, transport.clone())
        .context("set up the cluster client")?;
    let client = cairn_client::Client::with_transport(&cluster, gateway_transport)
        .context("set up the object API's cluster client")?;
    tasks.spawn(orphan_sweep::run(
        store.clone(),
        node_client.clone(),
        orphan_sweep::SweepConfig {
            grace: std::time::Duration::from_millis(cfg.orphan_grace_ms),
            interval: std::time::Duration::from_millis(cfg.orphan_sweep_interval_ms),
            quarantine_retention: std::time::Duration::from_millis(cfg.quarantine_retention_ms),
        },
        heartbeat_stop.clone(),
    ));
    if let Some(listen) = cfg.metrics_listen {
        cairn_common::telemetry::serve_metrics(listen)?;
        tasks.spawn(report_usage(store.clone(), heartbeat_stop.clone()));
    }
    let scrubber = Arc::new(scrub::Scrubber::new(
        store.clone(),
        client.clone(),
        node_client,
        cfg.id,
        cfg.scrub_bytes_per_sec,
    ));
    if cfg.scrub_interval_ms > 0 {
        tasks.spawn(scrub::run(
            scrubber.clone(),
            std::time::Duration::from_millis(cfg.scrub_interval_ms),
            heartbeat_stop.clone(),
        ));
    }
    tasks.close();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<cairn_proto::object::object_service_server::ObjectServiceServer<
            object_service::ObjectServiceImpl,
        >>()
        .await;
    health
        .set_serving::<cairn_proto::node::node_service_server::NodeServiceServer<NodeServiceImpl>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build the gRPC reflection service")?;

    let node_service = NodeServiceImpl::new(store.clone()).with_scrubber(scrubber);
    let rebuilder = rebuild::Rebuilder::new(
        store.clone(),
        cairn_shard_io::NodePool::new(transport.clone()),
        background::BackgroundGate::new(node_service.foreground(), cfg.rebuild_busy_share_pct),
    );
    let node_service = node_service.with_rebuilder(Arc::new(rebuilder));
    // Bound and about to accept: connections made from now on are served.
    cairn_common::systemd::notify_ready();
    let served = tonic::transport::Server::builder()
        // One connection cannot open an unbounded number of concurrent calls.
        .max_concurrent_streams(Some(cairn_net::MAX_STREAMS_PER_CONNECTION))
        .add_service(node_service.into_server())
        .add_service(object_service::ObjectServiceImpl::new(client).into_server())
        .add_service(health_service)
        .add_service(reflection)
        // TCP_NODELAY on every accepted connection: without it, small replies (a shard
        // write's acknowledgement, a 4 KiB ranged read) wait for the client's delayed
        // ACK (tens of milliseconds).
        .serve_with_incoming_shutdown(
            cairn_net::incoming(listener, transport.clone(), "cairn-node"),
            stop.cancelled_owned(),
        )
        .await;

    heartbeat_stop.cancel();
    tasks.wait().await;
    drop(store);
    tracing::info!(node = cfg.id, "cairn-node stopped");
    let refused = refused.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(refused) = refused {
        return Err(anyhow::Error::new(refused));
    }
    served.context("serve gRPC")
}

/// Refreshes the store's gauges every second (request counters are counted where the
/// requests are handled).
async fn report_usage(store: Arc<ShardStore>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let usage = store.usage();
        metrics::gauge!("cairn_node_shards").set(usage.shard_count as f64);
        metrics::gauge!("cairn_node_used_bytes").set(usage.used_bytes as f64);
        metrics::gauge!("cairn_node_quarantined_shards").set(usage.quarantined_count as f64);
        if let Ok(capacity) = store.capacity() {
            metrics::gauge!("cairn_node_capacity_bytes").set(capacity.total_bytes as f64);
            metrics::gauge!("cairn_node_available_bytes").set(capacity.available_bytes as f64);
        }
    }
}
