//! Whether this replica leads with a majority behind it. openraft 0.9 does not make a
//! leader step down when it loses its quorum: cut off from the other replicas it keeps
//! the leader role (it steps down only on hearing a higher term, which a cut-off leader
//! never hears) and its metrics still name it leader. Storage nodes and clients that still
//! reach it would then feed it heartbeats and calls the real leader never sees, and its
//! garbage collection would keep deleting from its stale queue. So everything that only a
//! leader does checks that a majority acknowledged it recently: the request path
//! ([`QuorumCheck`]) and the background work (GC, repair and rebalance, the node check:
//! [`leads_with_quorum`]). Session leases are left alone: a cut-off leader cannot commit
//! the session ends it would decide on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::Raft;

/// How long one confirmation is trusted on the request path. Followers that acknowledged
/// it reset their election timers then, so no other leader can be elected within the
/// election timeout (500 ms by default); half of it keeps a margin.
pub fn confirmation_lasts(election_timeout: Duration) -> Duration {
    election_timeout / 2
}

/// Whether replica `id` leads and a majority acknowledges that now: one heartbeat round
/// (`ensure_linearizable`), given up after `within`.
pub async fn leads_with_quorum(raft: &Raft, id: u64, within: Duration) -> bool {
    if raft.metrics().borrow().current_leader != Some(id) {
        return false;
    }
    matches!(
        tokio::time::timeout(within, raft.ensure_linearizable()).await,
        Ok(Ok(_))
    )
}

/// [`leads_with_quorum`] for the request path, whose answer is reused for
/// [`confirmation_lasts`] so that a busy leader does not send a heartbeat round per call.
pub struct QuorumCheck {
    raft: Raft,
    id: u64,
    lasts: Duration,
    /// When the last successful confirmation started.
    confirmed: Mutex<Option<Instant>>,
}

impl QuorumCheck {
    pub fn new(raft: Raft, id: u64, lasts: Duration) -> QuorumCheck {
        QuorumCheck {
            raft,
            id,
            lasts,
            confirmed: Mutex::new(None),
        }
    }

    /// Whether this replica, which believes it leads, has a majority behind it.
    pub async fn confirm(&self) -> bool {
        let fresh = self
            .confirmed
            .lock()
            .expect("quorum lock poisoned")
            .is_some_and(|at| at.elapsed() < self.lasts);
        if fresh {
            return true;
        }
        let started = Instant::now();
        // A leader that can reach a majority confirms in one round trip; one that cannot
        // is given a little longer than a heartbeat interval's worth of retries.
        let confirmed = leads_with_quorum(&self.raft, self.id, self.lasts * 4).await;
        if confirmed {
            let mut at = self.confirmed.lock().expect("quorum lock poisoned");
            *at = Some(at.map_or(started, |t| t.max(started)));
        }
        confirmed
    }
}
