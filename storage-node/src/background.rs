//! Client I/O before background work. A node counts the shard reads and writes its
//! clients (mounts, object gateways, clients) have in flight; background work (the
//! rebuilds of repair, drain and rebalance) runs up to [`IDLE_SLOTS`] at once while the
//! node is idle. While clients use it (or used it within [`QUIET`]) tasks run one at a
//! time, each followed by a pause ([`cool_down`]) that keeps background work to the
//! gate's share of the time (25 % by default), unless the clients' I/O ends first. So
//! an idle cluster repairs at full speed and a busy one keeps repairing, slowly, without
//! a fixed bandwidth cap that is wrong for every disk.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Background tasks at once on an idle node.
pub const IDLE_SLOTS: usize = 4;
/// Background tasks at once while clients use the node.
pub const BUSY_SLOTS: usize = 1;
/// How long after the last client request the node still counts as in use.
pub const QUIET: Duration = Duration::from_millis(200);
/// How often a waiting task looks for the end of client I/O.
const POLL: Duration = Duration::from_millis(20);
/// The longest pause after one background task (one that ran long, behind a slow peer,
/// does not stop the others for minutes).
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(5);

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
    /// Percent of the time background work may run while clients use the node.
    busy_share_pct: u32,
    /// While clients use the node, no background task starts before this.
    next_busy_start: Arc<Mutex<tokio::time::Instant>>,
}

/// Held while a background task runs.
pub struct BackgroundPermit {
    _slot: OwnedSemaphorePermit,
    _lane: Option<OwnedSemaphorePermit>,
    yielded: bool,
    /// For a task run while clients used the node: when it started, and where its
    /// cool-down goes.
    pacing: Option<(tokio::time::Instant, u32, Arc<Mutex<tokio::time::Instant>>)>,
}

impl BackgroundPermit {
    /// Whether the task gave way to clients: it ran in the busy-time slot, after the
    /// previous one's cool-down.
    pub fn yielded(&self) -> bool {
        self.yielded
    }
}

impl Drop for BackgroundPermit {
    fn drop(&mut self) {
        if let Some((started, share, next)) = &self.pacing {
            let now = tokio::time::Instant::now();
            let pause = cool_down(now - *started, *share);
            *next.lock().unwrap_or_else(|p| p.into_inner()) = now + pause;
        }
    }
}

/// The pause after a background task that ran `ran` while clients used the node, so
/// that background work takes `share_pct` percent of the time: `ran x (100 - share) /
/// share`, at most [`MAX_COOL_DOWN`].
pub fn cool_down(ran: Duration, share_pct: u32) -> Duration {
    let share = share_pct.clamp(1, 100);
    (ran * (100 - share) / share).min(MAX_COOL_DOWN)
}

impl BackgroundGate {
    /// `busy_share_pct`: percent of the time background work may run while clients
    /// use the node (1-100; 100: one task at a time without pauses).
    pub fn new(foreground: Arc<Foreground>, busy_share_pct: u32) -> BackgroundGate {
        BackgroundGate {
            slots: Arc::new(Semaphore::new(IDLE_SLOTS)),
            busy_lane: Arc::new(Semaphore::new(BUSY_SLOTS)),
            foreground,
            busy_share_pct: busy_share_pct.clamp(1, 100),
            next_busy_start: Arc::new(Mutex::new(tokio::time::Instant::now())),
        }
    }

    /// Waits for a slot: one of [`IDLE_SLOTS`]; while the node is busy, also the one
    /// busy-time slot and the end of the previous busy-time task's cool-down (or the
    /// end of the clients' I/O, whichever comes first).
    pub async fn admit(&self) -> BackgroundPermit {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed");
        if !self.foreground.busy() {
            return BackgroundPermit {
                _slot: slot,
                _lane: None,
                yielded: false,
                pacing: None,
            };
        }
        let lane = self
            .busy_lane
            .clone()
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed");
        loop {
            let next = *self
                .next_busy_start
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            if now >= next || !self.foreground.busy() {
                break;
            }
            tokio::time::sleep((next - now).min(POLL)).await;
        }
        BackgroundPermit {
            _slot: slot,
            _lane: Some(lane),
            yielded: true,
            pacing: Some((
                tokio::time::Instant::now(),
                self.busy_share_pct,
                self.next_busy_start.clone(),
            )),
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

    #[test]
    fn the_pause_keeps_background_work_to_its_share() {
        let ran = Duration::from_millis(100);
        assert_eq!(cool_down(ran, 25), Duration::from_millis(300));
        assert_eq!(cool_down(ran, 50), Duration::from_millis(100));
        assert_eq!(cool_down(ran, 100), Duration::ZERO);
        assert_eq!(cool_down(Duration::from_secs(60), 25), MAX_COOL_DOWN);
        assert_eq!(
            cool_down(ran, 0),
            cool_down(ran, 1),
            "a share of at least 1 %"
        );
    }

    #[tokio::test]
    async fn an_idle_node_admits_several_and_a_busy_one_only_one() {
        let f = Arc::new(Foreground::default());
        let gate = BackgroundGate::new(f.clone(), 100);
        let idle: Vec<_> = futures::future::join_all((0..IDLE_SLOTS).map(|_| gate.admit())).await;
        assert_eq!(gate.slots.available_permits(), 0);
        assert!(idle.iter().all(|p| !p.yielded()));
        drop(idle);
        let _client = f.enter();
        let first = gate.admit().await;
        assert!(first.yielded());
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

    #[tokio::test]
    async fn a_busy_node_pauses_after_each_task_until_clients_leave() {
        let f = Arc::new(Foreground::default());
        let gate = BackgroundGate::new(f.clone(), 50);
        let client = f.enter();
        let task = gate.admit().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(task);
        // The task ran 200 ms at a 50 % share: the next waits about as long.
        let started = tokio::time::Instant::now();
        let next = gate.admit().await;
        assert!(next.yielded());
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        drop(next);
        // Once the clients are gone (and the quiet time passed) nothing waits.
        drop(client);
        f.last_end_ms.store(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let free = gate.admit().await;
        assert!(!free.yielded());
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
