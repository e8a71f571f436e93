//! Mount session leases, tracked by the leader in memory: a renewal only records the
//! time, so it costs no Raft write. A session whose lease ran out is ended through Raft
//! (`Command::EndSession`), which frees its locks and fences it: every later change from
//! it is refused. A new leader gives every open session a full lease from its election,
//! so a leadership change never expires a live mount: also a replica that lost the
//! leadership and won it back between two looks (a new term), while the mounts renewed
//! with the leader in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::fs::SessionId;
use tokio_util::sync::CancellationToken;

use crate::leadership;
use crate::namespace::Command;
use crate::state_machine::SharedState;
use crate::types::Raft;

pub struct Leases {
    ttl: Duration,
    renewed: HashMap<SessionId, Instant>,
    leader_since: Instant,
    /// The term this replica led in at the last [`Leases::observe`], if it led.
    leading_term: Option<u64>,
}

impl Leases {
    pub fn new(ttl: Duration, now: Instant) -> Self {
        Leases {
            ttl,
            renewed: HashMap::new(),
            leader_since: now,
            leading_term: None,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Records whether this replica leads now (`Some(term)`) or not. Leading in a term it
    /// did not lead in at the last observation forgets every renewal, so leases count
    /// from `now`. Returns whether it leads.
    pub fn observe(&mut self, leading_term: Option<u64>, now: Instant) -> bool {
        if leading_term.is_some() && leading_term != self.leading_term {
            self.leader_since = now;
            self.renewed.clear();
        }
        self.leading_term = leading_term;
        leading_term.is_some()
    }

    pub fn renew(&mut self, session: SessionId, now: Instant) {
        self.renewed.insert(session, now);
    }

    pub fn forget(&mut self, session: SessionId) {
        self.renewed.remove(&session);
    }

    /// The sessions among `open` whose lease ran out at `now`.
    pub fn expired(
        &self,
        open: impl IntoIterator<Item = SessionId>,
        now: Instant,
    ) -> Vec<SessionId> {
        open.into_iter()
            .filter(|id| {
                let last = self
                    .renewed
                    .get(id)
                    .copied()
                    .unwrap_or(self.leader_since)
                    .max(self.leader_since);
                now.saturating_duration_since(last) > self.ttl
            })
            .collect()
    }
}

/// On the leader, ends sessions whose lease ran out.
pub async fn run(
    id: u64,
    raft: Raft,
    state: SharedState,
    leases: Arc<Mutex<Leases>>,
    shutdown: CancellationToken,
) {
    let period = {
        let ttl = leases.lock().expect("lease lock poisoned").ttl();
        (ttl / 4).max(Duration::from_millis(100))
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let leading_term = leadership::leading_term(&raft.metrics().borrow(), id);
        let is_leader = leases
            .lock()
            .expect("lease lock poisoned")
            .observe(leading_term, Instant::now());
        if !is_leader {
            continue;
        }
        let open: Vec<SessionId> = {
            let state = state.read().expect("state lock poisoned");
            state
                .namespace
                .sessions()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        let expired = leases
            .lock()
            .expect("lease lock poisoned")
            .expired(open, Instant::now());
        for session in expired {
            tracing::warn!(
                session,
                "mount session lease expired: releasing its locks and fencing it"
            );
            match raft.client_write(Command::EndSession { session }).await {
                Ok(_) => {
                    leases.lock().expect("lease lock poisoned").forget(session);
                    // Counted once, by the leader that ended it (deploy/monitoring alerts).
                    metrics::counter!("cairn_meta_sessions_fenced_total").increment(1);
                }
                Err(e) => {
                    tracing::warn!(session, error = %e, "could not end an expired session");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_only_after_its_ttl_without_renewal() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut leases = Leases::new(ttl, t0);
        leases.renew(1, t0 + Duration::from_secs(5));
        let at = |s| t0 + Duration::from_secs(s);
        assert!(leases.expired([1, 2], at(9)).is_empty());
        assert_eq!(leases.expired([1, 2], at(11)), vec![2], "2 never renewed");
        assert_eq!(leases.expired([1, 2], at(16)), vec![1, 2]);
    }

    #[test]
    fn a_new_leader_gives_every_session_a_full_lease() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut leases = Leases::new(ttl, t0);
        leases.renew(1, t0);
        assert!(leases.observe(Some(3), t0 + Duration::from_secs(20)));
        assert!(leases.expired([1], t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(leases.expired([1], t0 + Duration::from_secs(31)), vec![1]);
    }

    /// A replica that led, lost the leadership and won it back between two looks has not
    /// seen the renewals sent to the leader in between: it counts leases afresh too.
    #[test]
    fn leading_again_in_a_new_term_gives_a_full_lease() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut leases = Leases::new(Duration::from_secs(10), t0);
        assert!(leases.observe(Some(2), t0));
        leases.renew(1, at(1));
        assert!(
            leases.observe(Some(2), at(8)),
            "same term: nothing forgotten"
        );
        assert_eq!(leases.expired([1], at(12)), vec![1]);
        assert!(leases.observe(Some(4), at(12)), "led again, in term 4");
        assert!(leases.expired([1], at(21)).is_empty());
        assert!(!leases.observe(None, at(22)));
        assert!(
            leases.observe(Some(4), at(23)),
            "not leading at the last look: counted afresh"
        );
        assert!(leases.expired([1], at(32)).is_empty());
        assert_eq!(leases.expired([1], at(34)), vec![1]);
    }
}
