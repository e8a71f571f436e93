//! Mount session leases, tracked by the leader in memory: a renewal only records the
//! time, so it costs no Raft write. A session whose lease ran out is ended through Raft
//! (`Command::EndSession`), which frees its locks and fences it: every later change from
//! it is refused. A new leader gives every open session a full lease from its election,
//! so a leadership change never expires a live mount.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::fs::SessionId;
use tokio_util::sync::CancellationToken;

use crate::namespace::Command;
use crate::state_machine::SharedState;
use crate::types::Raft;

pub struct Leases {
    ttl: Duration,
    renewed: HashMap<SessionId, Instant>,
    leader_since: Instant,
}

impl Leases {
    pub fn new(ttl: Duration, now: Instant) -> Self {
        Leases {
            ttl,
            renewed: HashMap::new(),
            leader_since: now,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Forgets every renewal: leases count from `now`.
    pub fn became_leader(&mut self, now: Instant) {
        self.leader_since = now;
        self.renewed.clear();
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
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let is_leader = raft.metrics().borrow().current_leader == Some(id);
        if is_leader && !was_leader {
            leases
                .lock()
                .expect("lease lock poisoned")
                .became_leader(Instant::now());
        }
        was_leader = is_leader;
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
                Ok(_) => leases.lock().expect("lease lock poisoned").forget(session),
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
        leases.became_leader(t0 + Duration::from_secs(20));
        assert!(leases.expired([1], t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(leases.expired([1], t0 + Duration::from_secs(31)), vec![1]);
    }
}
