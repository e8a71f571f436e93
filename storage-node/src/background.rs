//! Client I/O before background work. A node counts the shard reads and writes its
//! clients (mounts, object gateways, clients) have in flight; background work (the
//! rebuilds of repair, drain and rebalance) runs up to [`IDLE_SLOTS`] at once while the
//! node is idle, and one at a time while clients use it or used it within [`QUIET`]. So
//! an idle cluster repairs at full speed and a busy one keeps repairing, slowly, without
//! a fixed bandwidth cap that is wrong for every disk.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Background tasks at once on an idle node.
pub const IDLE_SLOTS: usize = 4;
/// Background tasks at once while clients use the node.
pub const BUSY_SLOTS: usize = 1;
/// How long after the last client request the node still counts as in use.
pub const QUIET: Duration = Duration::from_millis(200);

/// The client requests in flight, and when the last one ended.
#[derive(Debug)]
pub struct Foreground {
    in_flight: AtomicUsize,
    /// When the last request ended: milliseconds since `epoch`, plus one (0: never).
    last_end_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Foreground {
    fn default() -> Foreground {
        Foreground {
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// Counts one client request while it lives.
pub struct ForegroundGuard(Arc<Foreground>);

impl Drop for ForegroundGuard {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.last_end_ms.fetch_max(now, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Foreground {
    /// Milliseconds since `epoch`, plus one.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn enter(self: &Arc<Self>) -> ForegroundGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ForegroundGuard(self.clone())
    }

    /// Whether clients use the node now or did within [`QUIET`].
    pub fn busy(&self) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let now = self.now_ms();
        let last = self.last_end_ms.load(Ordering::Relaxed);
        last != 0 && now.saturating_sub(last) < QUIET.as_millis() as u64
    }
}

/// Admission of background tasks (see the module comment).
#[derive(Clone, Debug)]
pub struct BackgroundGate {
    slots: Arc<Semaphore>,
    busy_lane: Arc<Semaphore>,
    foreground: Arc<Foreground>,
}

/// Held while a background task runs.
pub struct BackgroundPermit {
    _slot: OwnedSemaphorePermit,
    _lane: Option<OwnedSemaphorePermit>,
}

impl BackgroundGate {
    pub fn new(foreground: Arc<Foreground>) -> BackgroundGate {
        BackgroundGate {
            slots: Arc::new(Semaphore::new(IDLE_SLOTS)),
            busy_lane: Arc::new(Semaphore::new(BUSY_SLOTS)),
            foreground,
        }
    }

    /// Waits for a slot: one of [`IDLE_SLOTS`], and while the node is busy also one of
    /// [`BUSY_SLOTS`].
    pub async fn admit(&self) -> BackgroundPermit {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed");
        let lane = if self.foreground.busy() {
            Some(
                self.busy_lane
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the gate's semaphore is never closed"),
            )
        } else {
            None
        };
        BackgroundPermit {
            _slot: slot,
            _lane: lane,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_busy_during_a_request_and_shortly_after() {
        let f = Arc::new(Foreground::default());
        assert!(!f.busy(), "a node no client used is idle");
        let guard = f.enter();
        assert!(f.busy());
        drop(guard);
        assert!(f.busy(), "still busy within the quiet time");
        // As if the request had ended long ago.
        f.last_end_ms.store(1, Ordering::Relaxed);
        std::thread::sleep(QUIET + Duration::from_millis(5));
        assert!(!f.busy());
    }

    #[tokio::test]
    async fn an_idle_node_admits_several_and_a_busy_one_only_one() {
        let f = Arc::new(Foreground::default());
        let gate = BackgroundGate::new(f.clone());
        let idle: Vec<_> = futures::future::join_all((0..IDLE_SLOTS).map(|_| gate.admit())).await;
        assert_eq!(gate.slots.available_permits(), 0);
        drop(idle);
        let _client = f.enter();
        let first = gate.admit().await;
        let second = tokio::time::timeout(Duration::from_millis(100), gate.admit()).await;
        assert!(
            second.is_err(),
            "a second task waits while clients use the node"
        );
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(5), gate.admit())
            .await
            .expect("admitted once the first task is done");
    }
}
