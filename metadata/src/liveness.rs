//! Which storage nodes are up: heartbeats seen by the current leader, kept in memory
//! (not replicated: a new leader counts every registered node as last seen when it became
//! leader). A node is `up` while heartbeats arrive, `down` after `down_after` without one
//! (reads avoid it, nothing new is placed on it, its shards are NOT rebuilt: it may come
//! back), and `out` after `out_after` (its shards are rebuilt elsewhere). Pure
//! bookkeeping, no IO.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use cairn_common::placement::Candidate;
use cairn_common::NodeId;

use crate::namespace::NodeRecord;

/// Free space assumed for a node whose heartbeat the leader has not seen yet.
pub const UNKNOWN_FREE_BYTES: u64 = 1 << 40;

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
    /// The release each node's last heartbeat named.
    versions: HashMap<NodeId, String>,
}

impl Liveness {
    pub fn new(down_after: Duration, out_after: Duration, now: Instant) -> Self {
        Liveness {
            down_after,
            out_after: out_after.max(down_after),
            leader_since: now,
            seen: HashMap::new(),
            versions: HashMap::new(),
        }
    }

    /// Forget everything heard before: this replica just became leader.
    pub fn became_leader(&mut self, now: Instant) {
        self.leader_since = now;
        self.seen.clear();
        self.versions.clear();
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

    /// Records the release a node's heartbeat named.
    pub fn record_version(&mut self, node: NodeId, version: &str) {
        if self.versions.get(&node).is_none_or(|v| v != version) {
            self.versions.insert(node, version.to_string());
        }
    }

    /// The release the node's last heartbeat to this leader named.
    pub fn version(&self, node: NodeId) -> Option<&str> {
        self.versions.get(&node).map(String::as_str)
    }

    pub fn usage(&self, node: NodeId) -> Option<Usage> {
        self.seen.get(&node).map(|(_, u)| *u)
    }

    /// Free bytes the node last reported, or [`UNKNOWN_FREE_BYTES`] before its first
    /// heartbeat to this leader.
    pub fn free_bytes(&self, node: NodeId) -> u64 {
        self.usage(node)
            .map(|u| u.capacity_bytes.saturating_sub(u.used_bytes))
            .unwrap_or(UNKNOWN_FREE_BYTES)
    }

    /// When this leader received the node's last heartbeat, and what it reported.
    pub fn last_heartbeat(&self, node: NodeId) -> Option<(Instant, Usage)> {
        self.seen.get(&node).copied()
    }

    /// Time since the node's last heartbeat, if one was seen by this leader.
    pub fn since_last(&self, node: NodeId, now: Instant) -> Option<Duration> {
        self.seen
            .get(&node)
            .map(|(at, _)| now.saturating_duration_since(*at))
    }
}

/// The nodes new shards may go to, as placement candidates: `up`, not draining and not
/// `excluded`, each weighted by its free space (`state_and_free` gives both) scaled by its
/// relative weight. Chunk allocation and repair both choose targets from this.
pub fn placement_candidates(
    nodes: &BTreeMap<NodeId, NodeRecord>,
    state_and_free: impl Fn(NodeId) -> (NodeState, u64),
    excluded: impl Fn(NodeId) -> bool,
) -> Vec<Candidate> {
    nodes
        .iter()
        .filter(|(id, n)| !n.draining && !excluded(**id))
        .filter_map(|(id, n)| {
            let (state, free) = state_and_free(*id);
            (state == NodeState::Up).then(|| Candidate {
                id: *id,
                zone: n.zone.clone(),
                free_bytes: free.saturating_mul(u64::from(n.weight_pct)) / 100,
            })
        })
        .collect()
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

    #[test]
    fn candidates_are_up_undrained_unexcluded_nodes_weighted_by_free_space() {
        let record = |draining, weight_pct| NodeRecord {
            addr: String::new(),
            zone: "z".into(),
            draining,
            weight_pct,
            disk: None,
        };
        let nodes = BTreeMap::from([
            (1, record(false, 100)),
            (2, record(true, 100)),
            (3, record(false, 200)),
            (4, record(false, 100)),
            (5, record(false, 100)),
        ]);
        let state = |id| match id {
            4 => (NodeState::Down, 1000),
            _ => (NodeState::Up, 1000),
        };
        let picked: Vec<(NodeId, u64)> = placement_candidates(&nodes, state, |id| id == 5)
            .into_iter()
            .map(|c| (c.id, c.free_bytes))
            .collect();
        assert_eq!(picked, vec![(1, 1000), (3, 2000)]);
    }
}
