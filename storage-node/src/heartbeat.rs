//! Registration with the metadata service and the periodic heartbeat. Calls go through the
//! client library's metadata client (`cairn_client::meta_client`: any replica, the next one
//! after a failure); this task retries forever with bounded backoff until shutdown, and
//! re-registers when the metadata service no longer knows this node. Both calls present
//! the data directory's disk id; a refusal of it (FAILED_PRECONDITION: the node id is
//! registered with another data directory) ends the task with [`Refused`], which stops
//! the node. Reads the store's in-memory usage; never touches shard files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::meta_client::MetaClient;
use cairn_client::ClientError;
use cairn_common::{DiskId, NodeId};
use cairn_proto::meta::{HeartbeatRequest, RegisterNodeRequest};
use tokio_util::sync::CancellationToken;

use crate::store::ShardStore;

/// How long one call to one replica may take before the next one is tried.
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
    /// Join as a new, empty node if the node id is registered with another data
    /// directory (`--replace-empty`).
    pub replace_empty: bool,
}

/// The metadata service refused this node as it is: the node id is registered with
/// another data directory. Not retried: the operator must mount the right disk, or
/// restart the node with `--replace-empty`.
#[derive(Debug, thiserror::Error)]
#[error("the metadata service refused node {node}: {message}")]
pub struct Refused {
    pub node: NodeId,
    pub disk: DiskId,
    /// The metadata service's explanation.
    pub message: String,
}

/// Runs until `shutdown` is cancelled (then `Ok`): register, then heartbeat every
/// `interval`. Ends early with [`Refused`] when the metadata service refuses the node.
/// Cancel safe: it only sends idempotent requests.
pub async fn run(
    cfg: HeartbeatConfig,
    store: Arc<ShardStore>,
    shutdown: CancellationToken,
) -> Result<(), Refused> {
    let meta = match MetaClient::new(&cfg.meta, &cfg.transport) {
        // One attempt per call: this task paces its own retries (and keeps heartbeating
        // on time while the metadata service is away).
        Ok(meta) => meta
            .with_attempt_timeout(REQUEST_TIMEOUT)
            .with_retry_for(Duration::ZERO),
        Err(e) => {
            tracing::error!(meta = ?cfg.meta, error = %e, "no usable metadata address: this node will not register");
            return Ok(());
        }
    };
    let mut beat = Heartbeat {
        cfg,
        store,
        meta,
        warn: WarnLimiter::default(),
    };
    let result = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        refused = beat.forever() => Err(refused),
    };
    tracing::debug!("heartbeat task stopped");
    result
}

struct Heartbeat {
    cfg: HeartbeatConfig,
    store: Arc<ShardStore>,
    meta: MetaClient,
    warn: WarnLimiter,
}

impl Heartbeat {
    /// Returns only when the node is refused.
    async fn forever(&mut self) -> Refused {
        loop {
            if let Err(refused) = self.register().await {
                return refused;
            }
            if let Err(refused) = self.beat_until_forgotten().await {
                return refused;
            }
        }
    }

    fn refused(&self, message: String) -> Refused {
        Refused {
            node: self.cfg.node_id,
            disk: self.store.disk_id(),
            message,
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

    /// Retries RegisterNode over the replicas until one accepts it or refuses the node.
    async fn register(&mut self) -> Result<(), Refused> {
        let mut backoff = Backoff::new();
        loop {
            let (capacity_bytes, used_bytes) = self.capacity_and_used();
            let request = RegisterNodeRequest {
                node_id: self.cfg.node_id,
                addr: self.cfg.advertise.clone(),
                zone: self.cfg.zone.clone(),
                capacity_bytes,
                used_bytes,
                disk_id: self.store.disk_id().as_bytes().to_vec().into(),
                replace_empty: self.cfg.replace_empty,
            };
            let registered = self
                .meta
                .call(request, |mut c, r| async move { c.register_node(r).await })
                .await;
            match registered {
                Ok(_) => {
                    tracing::info!(
                        node = self.cfg.node_id,
                        disk = %self.store.disk_id(),
                        "registered with the metadata service"
                    );
                    self.warn.reset();
                    return Ok(());
                }
                Err(ClientError::FailedPrecondition { message }) => {
                    return Err(self.refused(message))
                }
                Err(e) => {
                    self.failed("register", &e);
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// Heartbeats every interval; returns when the metadata service answers NOT_FOUND
    /// (`Ok`: register again) or refuses the node.
    async fn beat_until_forgotten(&mut self) -> Result<(), Refused> {
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
                disk_id: self.store.disk_id().as_bytes().to_vec().into(),
                version: cairn_common::RELEASE.to_string(),
            };
            let beat = self
                .meta
                .call(request, |mut c, r| async move { c.heartbeat(r).await })
                .await;
            match beat {
                Ok(_) => {
                    if self.warn.failing() {
                        tracing::info!("heartbeats reach the metadata service again");
                    }
                    self.warn.reset();
                }
                Err(ClientError::NotFound { .. }) => {
                    tracing::info!("metadata service does not know this node; registering again");
                    return Ok(());
                }
                Err(ClientError::FailedPrecondition { message }) => {
                    return Err(self.refused(message))
                }
                Err(e) => self.failed("heartbeat", &e),
            }
        }
    }

    fn failed(&mut self, what: &'static str, error: &ClientError) {
        // UNAVAILABLE is normal while no metadata leader is elected or a replica restarts.
        if let Some(suppressed) = self.warn.should_warn(Instant::now()) {
            tracing::warn!(%error, suppressed, "{what} failed; retrying");
        } else {
            tracing::debug!(%error, "{what} failed; retrying");
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
