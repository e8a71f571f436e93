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
//!
//! The same confirmation is the leader's lease for reads ([`QuorumCheck::read_index`]):
//! within [`confirmation_lasts`] of a majority's acknowledgement no other leader can
//! exist (the followers that acknowledged refuse votes for a leader lease, openraft's
//! `election_timeout_max`, and one that restarted refuses them for
//! [`vote_wait_after_start`]: `raft_service.rs`), so every acknowledged write was
//! committed and applied here, and a read of the applied state is linearizable without a
//! heartbeat round of its own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::{BasicNode, RaftMetrics};

use crate::types::Raft;

/// How long one confirmation is trusted on the request path. Followers that acknowledged
/// it reset their election timers then, so no other leader can be elected within the
/// election timeout (500 ms by default); half of it keeps a margin.
pub fn confirmation_lasts(election_timeout: Duration) -> Duration {
    election_timeout / 2
}

/// How long a replica that just started refuses to vote: longer than a lease
/// ([`confirmation_lasts`]) granted by a majority it was part of before it restarted.
pub fn vote_wait_after_start(election_timeout: Duration) -> Duration {
    election_timeout
}

/// The term replica `id` leads in, by `metrics`; `None` if it does not lead. A
/// leadership lost and won back between two looks shows as a new term.
pub fn leading_term(metrics: &RaftMetrics<u64, BasicNode>, id: u64) -> Option<u64> {
    (metrics.current_leader == Some(id)).then_some(metrics.current_term)
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
    /// When the last successful confirmation started, and in which term.
    confirmed: Mutex<Option<(Instant, u64)>>,
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

    /// Whether a confirmation of the current term is recent enough to be trusted.
    fn fresh(&self, term: u64) -> bool {
        self.confirmed
            .lock()
            .expect("quorum lock poisoned")
            .is_some_and(|(at, t)| t == term && at.elapsed() < self.lasts)
    }

    fn record(&self, started: Instant, term: u64) {
        let mut confirmed = self.confirmed.lock().expect("quorum lock poisoned");
        match *confirmed {
            Some((at, t)) if t == term && at >= started => {}
            _ => *confirmed = Some((started, term)),
        }
    }

    /// Whether this replica, which believes it leads, has a majority behind it.
    pub async fn confirm(&self) -> bool {
        let term = self.raft.metrics().borrow().current_term;
        if self.fresh(term) {
            return true;
        }
        let started = Instant::now();
        // A leader that can reach a majority confirms in one round trip; one that cannot
        // is given a little longer than a heartbeat interval's worth of retries.
        let confirmed = leads_with_quorum(&self.raft, self.id, self.lasts * 4).await;
        if confirmed {
            self.record(started, term);
        }
        confirmed
    }

    /// Waits until a read of the applied state is linearizable: at once under the lease
    /// (a recent confirmation in this term, and this leader has applied an entry of its
    /// own term, so everything committed before its election is applied too); otherwise
    /// after one heartbeat round (`ensure_linearizable`), which renews the lease.
    pub async fn read_index(
        &self,
    ) -> Result<
        (),
        openraft::error::RaftError<
            u64,
            openraft::error::CheckIsLeaderError<u64, openraft::BasicNode>,
        >,
    > {
        let (leads, term, caught_up) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (
                m.current_leader == Some(self.id),
                m.current_term,
                m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term),
            )
        };
        if leads && caught_up && self.fresh(term) {
            return Ok(());
        }
        let started = Instant::now();
        self.raft.ensure_linearizable().await?;
        self.record(started, term);
        Ok(())
    }
}
