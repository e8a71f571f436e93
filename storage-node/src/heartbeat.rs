//! Registration with the metadata service and the periodic heartbeat. Tries the metadata
//! replicas in turn, retries forever with bounded backoff until shutdown, re-registers
//! when the metadata service no longer knows this node. Reads the store's in-memory usage;
//! never touches shard files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::NodeId;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::{HeartbeatRequest, RegisterNodeRequest};
use cairn_proto::MAX_MESSAGE_BYTES;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::store::ShardStore;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// At most one WARN per this period for a run of failures; the rest go to DEBUG.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// What the heartbeat task needs to know about this node.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    pub node_id: NodeId,
    /// Address other components use to reach this node.
    pub advertise: String,
    pub zone: String,
    /// Metadata replica addresses, `host:port` or a full `http://` URI.
    pub meta: Vec<String>,
    pub interval: Duration,
    /// Capacity to report instead of the file system's size.
    pub capacity_override: Option<u64>,
    /// The node's own identity towards the metadata service.
    pub transport: cairn_net::Transport,
}

/// One metadata replica's client.
struct MetaClient {
    addr: String,
    client: MetaServiceClient<Channel>,
}

/// Runs until `shutdown` is cancelled: register, then heartbeat every `interval`.
/// Cancel safe: it only sends idempotent requests.
pub async fn run(cfg: HeartbeatConfig, store: Arc<ShardStore>, shutdown: CancellationToken) {
    let mut clients: Vec<MetaClient> = Vec::new();
    for addr in &cfg.meta {
        let channel = cfg.transport.channel(addr, |e| {
            e.connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT)
        });
        match channel {
            Ok(channel) => clients.push(MetaClient {
                addr: addr.clone(),
                client: MetaServiceClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            }),
            Err(e) => tracing::error!(addr, error = %e, "bad metadata address; skipping it"),
        }
    }
    if clients.is_empty() {
        tracing::error!("no usable metadata address: this node will not register");
        return;
    }
    let mut beat = Heartbeat {
        cfg,
        store,
        clients,
        current: 0,
        warn: WarnLimiter::default(),
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = beat.forever() => {}
    }
    tracing::debug!("heartbeat task stopped");
}

struct Heartbeat {
    cfg: HeartbeatConfig,
    store: Arc<ShardStore>,
    clients: Vec<MetaClient>,
    /// The replica to try next; moves on after each failure.
    current: usize,
    warn: WarnLimiter,
}

impl Heartbeat {
    async fn forever(&mut self) {
        loop {
            self.register().await;
            self.beat_until_forgotten().await;
        }
    }

    fn capacity_and_used(&self) -> (u64, u64) {
        let capacity = match self.cfg.capacity_override {
            Some(bytes) => bytes,
            None => match self.store.capacity() {
                Ok(cap) => cap.total_bytes,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read file system capacity");
                    0
                }
            },
        };
        (capacity, self.store.usage().used_bytes)
    }

    fn next_replica(&mut self) {
        self.current = (self.current + 1) % self.clients.len();
    }

    /// Retries RegisterNode over the replicas until one accepts it.
    async fn register(&mut self) {
        let mut backoff = Backoff::new();
        loop {
            let (capacity_bytes, used_bytes) = self.capacity_and_used();
            let request = RegisterNodeRequest {
                node_id: self.cfg.node_id,
                addr: self.cfg.advertise.clone(),
                zone: self.cfg.zone.clone(),
                capacity_bytes,
                used_bytes,
            };
            let meta = &mut self.clients[self.current];
            match meta.client.register_node(request).await {
                Ok(_) => {
                    tracing::info!(meta = %meta.addr, node = self.cfg.node_id, "registered with the metadata service");
                    self.warn.reset();
                    return;
                }
                Err(status) => {
                    let addr = meta.addr.clone();
                    self.failed("register", &addr, &status);
                    self.next_replica();
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// Heartbeats every interval; returns when the metadata service answers NOT_FOUND.
    async fn beat_until_forgotten(&mut self) {
        let mut ticker = tokio::time::interval(self.cfg.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let (capacity_bytes, used_bytes) = self.capacity_and_used();
            let usage = self.store.usage();
            let request = HeartbeatRequest {
                node_id: self.cfg.node_id,
                capacity_bytes,
                used_bytes,
                shard_count: usage.shard_count,
                quarantined_count: usage.quarantined_count,
            };
            let meta = &mut self.clients[self.current];
            match meta.client.heartbeat(request).await {
                Ok(_) => {
                    if self.warn.failing() {
                        tracing::info!(meta = %meta.addr, "heartbeats reach the metadata service again");
                    }
                    self.warn.reset();
                }
                Err(status) if status.code() == Code::NotFound => {
                    tracing::info!(meta = %meta.addr, "metadata service does not know this node; registering again");
                    return;
                }
                Err(status) => {
                    let addr = meta.addr.clone();
                    self.failed("heartbeat", &addr, &status);
                    self.next_replica();
                }
            }
        }
    }

    fn failed(&mut self, what: &'static str, addr: &str, status: &tonic::Status) {
        // UNAVAILABLE is normal while no metadata leader is elected or a replica restarts.
        if let Some(suppressed) = self.warn.should_warn(Instant::now()) {
            tracing::warn!(
                meta = %addr,
                code = ?status.code(),
                error = status.message(),
                suppressed,
                "{what} failed; retrying"
            );
        } else {
            tracing::debug!(meta = %addr, code = ?status.code(), error = status.message(), "{what} failed; retrying");
        }
    }
}

/// Exponential backoff with jitter, from 100 ms up to 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: BACKOFF_START,
        }
    }

    fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// Lets one WARN through per `WARN_EVERY` during a run of failures.
#[derive(Default)]
struct WarnLimiter {
    last_warn: Option<Instant>,
    suppressed: u64,
    failing: bool,
}

impl WarnLimiter {
    /// `Some(number of failures not warned about since the last warning)` when this
    /// failure should be logged at WARN.
    fn should_warn(&mut self, now: Instant) -> Option<u64> {
        self.failing = true;
        match self.last_warn {
            Some(last) if now.duration_since(last) < WARN_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_warn = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    fn failing(&self) -> bool {
        self.failing
    }

    fn reset(&mut self) {
        *self = WarnLimiter::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_bound() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(waits[0] <= BACKOFF_START);
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX));
        assert!(waits[9] >= BACKOFF_MAX / 2);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut limiter = WarnLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.should_warn(t0), Some(0));
        for s in 1..30 {
            assert_eq!(limiter.should_warn(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(limiter.should_warn(t0 + WARN_EVERY), Some(29));
        assert!(limiter.failing());
        limiter.reset();
        assert_eq!(limiter.should_warn(t0 + WARN_EVERY), Some(0));
    }
}
