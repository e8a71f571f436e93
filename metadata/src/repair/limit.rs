//! What held a repair or rebalance pass back, from what the pass saw: a pure
//! classification for `cairn repair status`.

use std::time::Duration;

/// What held a repair or rebalance pass back, for `cairn repair status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RepairLimit {
    /// Nothing to do.
    Idle = 0,
    /// The cluster-wide throttle paced the orders.
    Throttle = 1,
    /// Most orders found their node serving clients (rebuilds yield to client I/O).
    ClientIo = 2,
    /// Orders were held back because every node had its share in flight: the nodes'
    /// CPU, disks and network are the limit.
    NodeSpeed = 3,
    /// Every order that could be sent was in flight at once: the work available.
    Work = 4,
}

/// What a pass saw, for [`RepairLimit::of`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PassCounts {
    pub(super) orders: u64,
    /// Orders the nodes ran in their busy-time slot.
    pub(super) yielded: u64,
    /// Times an order waited for a node's budget or the in-flight cap.
    pub(super) held_back: u64,
    /// Time spent waiting for the throttle, and the pass's whole time.
    pub(super) throttled: Duration,
    pub(super) elapsed: Duration,
}

impl RepairLimit {
    pub(super) fn of(p: &PassCounts) -> RepairLimit {
        if p.orders == 0 {
            RepairLimit::Idle
        } else if p.throttled * 4 > p.elapsed {
            RepairLimit::Throttle
        } else if p.yielded * 2 >= p.orders {
            RepairLimit::ClientIo
        } else if p.held_back > 0 {
            RepairLimit::NodeSpeed
        } else {
            RepairLimit::Work
        }
    }

    pub(super) fn from_u8(v: u8) -> RepairLimit {
        match v {
            1 => RepairLimit::Throttle,
            2 => RepairLimit::ClientIo,
            3 => RepairLimit::NodeSpeed,
            4 => RepairLimit::Work,
            _ => RepairLimit::Idle,
        }
    }

    /// In words, for an operator; empty for [`RepairLimit::Idle`].
    pub fn describe(self) -> &'static str {
        match self {
            RepairLimit::Idle => "",
            RepairLimit::Throttle => "the cluster-wide throttle (cairn repair throttle)",
            RepairLimit::ClientIo => {
                "client I/O: nodes serving clients rebuild one shard at a time"
            }
            RepairLimit::NodeSpeed => {
                "the storage nodes' speed (CPU, disk, network): each has its share of rebuilds in flight"
            }
            RepairLimit::Work => "the work available: every rebuild possible now is in flight",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_reports_what_limited_it() {
        let pass = |orders, yielded, held_back, throttled_ms| PassCounts {
            orders,
            yielded,
            held_back,
            throttled: Duration::from_millis(throttled_ms),
            elapsed: Duration::from_millis(1000),
        };
        assert_eq!(RepairLimit::of(&pass(0, 0, 0, 0)), RepairLimit::Idle);
        assert_eq!(
            RepairLimit::of(&pass(50, 40, 9, 600)),
            RepairLimit::Throttle
        );
        assert_eq!(
            RepairLimit::of(&pass(50, 25, 9, 100)),
            RepairLimit::ClientIo
        );
        assert_eq!(
            RepairLimit::of(&pass(50, 5, 9, 100)),
            RepairLimit::NodeSpeed
        );
        assert_eq!(RepairLimit::of(&pass(50, 5, 0, 0)), RepairLimit::Work);
        for limit in [
            RepairLimit::Idle,
            RepairLimit::Throttle,
            RepairLimit::ClientIo,
            RepairLimit::NodeSpeed,
            RepairLimit::Work,
        ] {
            assert_eq!(RepairLimit::from_u8(limit as u8), limit);
        }
    }
}
