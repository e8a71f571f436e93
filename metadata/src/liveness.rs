//! Which storage nodes are up: heartbeats seen by the current leader, kept in memory
//! (not replicated: a new leader counts every registered node as last seen when it became
//! leader). A node is `up` while heartbeats arrive, `down` after `down_after` without one
//! (reads avoid it, nothing new is placed on it, its shards are NOT rebuilt: it may come
//! back), and `out` after `out_after` (its shards are rebuilt elsewhere). Pure
//! bookkeeping, no IO.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_common::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Down,
    Out,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Out => "out",
        }
    }
}

/// What a heartbeat reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub shard_count: u64,
    pub quarantined_count: u64,
}

#[derive(Debug)]
pub struct Liveness {
    down_after: Duration,
    out_after: Duration,
    leader_since: Instant,
    seen: HashMap<NodeId, (Instant, Usage)>,
}

impl Liveness {
    pub fn new(down_after: Duration, out_after: Duration, now: Instant) -> Self {
        Liveness {
            down_after,
            out_after: out_after.max(down_after),
            leader_since: now,
            seen: HashMap::new(),
        }
    }

    /// Forget everything heard before: this replica just became leader.
    pub fn became_leader(&mut self, now: Instant) {
        self.leader_since = now;
        self.seen.clear();
    }

    pub fn record(&mut self, node: NodeId, usage: Usage, now: Instant) {
        self.seen.insert(node, (now, usage));
    }

    pub fn state(&self, node: NodeId, now: Instant) -> NodeState {
        let last = match self.seen.get(&node) {
            Some((at, _)) => *at,
            None => self.leader_since,
        };
        let silent = now.saturating_duration_since(last);
        if silent < self.down_after {
            NodeState::Up
        } else if silent < self.out_after {
            NodeState::Down
        } else {
            NodeState::Out
        }
    }

    pub fn usage(&self, node: NodeId) -> Option<Usage> {
        self.seen.get(&node).map(|(_, u)| *u)
    }

    /// Time since the node's last heartbeat, if one was seen by this leader.
    pub fn since_last(&self, node: NodeId, now: Instant) -> Option<Duration> {
        self.seen
            .get(&node)
            .map(|(at, _)| now.saturating_duration_since(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_goes_down_after_missing_heartbeats() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::from_secs(5), Duration::from_secs(60), t0);
        l.record(7, Usage::default(), t0);
        assert_eq!(l.state(7, t0 + Duration::from_secs(4)), NodeState::Up);
        assert_eq!(l.state(7, t0 + Duration::from_secs(6)), NodeState::Down);
        l.record(7, Usage::default(), t0 + Duration::from_secs(6));
        assert_eq!(l.state(7, t0 + Duration::from_secs(7)), NodeState::Up);
    }

    #[test]
    fn node_is_out_after_the_longer_timeout_and_back_up_on_a_heartbeat() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::from_secs(5), Duration::from_secs(60), t0);
        l.record(3, Usage::default(), t0);
        assert_eq!(l.state(3, t0 + Duration::from_secs(59)), NodeState::Down);
        assert_eq!(l.state(3, t0 + Duration::from_secs(61)), NodeState::Out);
        l.record(3, Usage::default(), t0 + Duration::from_secs(62));
        assert_eq!(l.state(3, t0 + Duration::from_secs(63)), NodeState::Up);
    }

    #[test]
    fn new_leader_gives_unseen_nodes_a_grace_period() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::from_secs(5), Duration::from_secs(60), t0);
        l.record(1, Usage::default(), t0);
        let t1 = t0 + Duration::from_secs(100);
        l.became_leader(t1);
        assert_eq!(l.state(1, t1 + Duration::from_secs(1)), NodeState::Up);
        assert_eq!(l.state(2, t1 + Duration::from_secs(1)), NodeState::Up);
        assert_eq!(l.state(2, t1 + Duration::from_secs(5)), NodeState::Down);
        assert!(l.usage(1).is_none(), "old heartbeats are forgotten");
    }
}
