//! The newest size this mount knows for each recently changed inode, by content
//! generation (`FsAttr::generation`, which every size change bumps).
//!
//! A lookup or getattr reads the metadata service, then answers the kernel. When one of
//! this mount's own commits (an `fsync`, a `close`, a truncate) lands in between, the
//! answer is older than that commit, and the kernel, which cannot tell, would take the
//! file's size back to what it was: a reader on this mount then sees a file shorter than
//! what was fsynced (PostgreSQL read its own `postmaster.pid` as empty). An answer whose
//! generation is older than one this mount committed or saw takes that newer size.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::backend::Ino;

/// Entries are dropped after this long (a stale reply is at most one metadata call old)
/// once there are more than [`PRUNE_ABOVE`] of them.
const KEEP_FOR: Duration = Duration::from_secs(60);
const PRUNE_ABOVE: usize = 4096;

pub(super) struct NewestSizes {
    seen: HashMap<Ino, Seen>,
    /// The table is pruned when it holds more than this: twice what the last pruning
    /// left (at least [`PRUNE_ABOVE`]), so that a mount touching more inodes in a minute
    /// than that prunes once per doubling, not at every call (a pass is over the whole
    /// table, and every lookup and getattr records).
    prune_above: usize,
}

impl Default for NewestSizes {
    fn default() -> Self {
        NewestSizes {
            seen: HashMap::new(),
            prune_above: PRUNE_ABOVE,
        }
    }
}

struct Seen {
    generation: u64,
    size: u64,
    at: Instant,
}

impl NewestSizes {
    /// Records that `ino` had `size` at content `generation` (ignored if older than what
    /// is known).
    pub(super) fn record(&mut self, ino: Ino, generation: u64, size: u64, now: Instant) {
        if self.seen.len() > self.prune_above {
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.at) < KEEP_FOR);
            self.prune_above = PRUNE_ABOVE.max(2 * self.seen.len());
        }
        match self.seen.get_mut(&ino) {
            Some(s) if s.generation > generation => {}
            Some(s) => {
                *s = Seen {
                    generation,
                    size,
                    at: now,
                }
            }
            None => {
                self.seen.insert(
                    ino,
                    Seen {
                        generation,
                        size,
                        at: now,
                    },
                );
            }
        }
    }

    /// The size to tell the kernel for a reply that says `size` at `generation`: the
    /// newer one known, if the reply is older.
    pub(super) fn settle(&mut self, ino: Ino, generation: u64, size: u64, now: Instant) -> u64 {
        match self.seen.get(&ino) {
            Some(s) if s.generation > generation => s.size,
            _ => {
                self.record(ino, generation, size, now);
                size
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_older_than_a_known_commit_takes_the_commits_size() {
        let mut n = NewestSizes::default();
        let t = Instant::now();
        assert_eq!(
            n.settle(7, 10, 300, t),
            300,
            "nothing known: the reply stands"
        );
        n.record(7, 12, 500, t); // this mount's fsync committed 500 bytes
        assert_eq!(
            n.settle(7, 10, 300, t),
            500,
            "a reply from before the commit"
        );
        assert_eq!(n.settle(7, 12, 500, t), 500);
        // A newer change (another mount's truncate) wins, in either direction.
        assert_eq!(n.settle(7, 15, 100, t), 100);
        assert_eq!(n.settle(7, 12, 500, t), 100);
        // An older record never replaces a newer one.
        n.record(7, 11, 900, t);
        assert_eq!(n.settle(7, 14, 50, t), 100);
        assert_eq!(n.settle(8, 1, 42, t), 42, "other inodes are independent");
    }

    #[test]
    fn old_entries_go_once_there_are_many() {
        let mut n = NewestSizes::default();
        let t = Instant::now();
        for ino in 0..=PRUNE_ABOVE as u64 {
            n.record(ino, 2, 10, t);
        }
        let later = t + KEEP_FOR + Duration::from_secs(1);
        n.record(u64::MAX, 1, 1, later);
        assert_eq!(n.seen.len(), 1, "only the new entry is left");
        assert_eq!(
            n.settle(3, 1, 5, later),
            5,
            "a forgotten inode takes the reply"
        );
    }

    #[test]
    fn young_entries_are_not_scanned_at_every_record() {
        let mut n = NewestSizes::default();
        let t = Instant::now();
        let many = 3 * PRUNE_ABOVE as u64;
        for ino in 0..many {
            n.record(ino, 1, 1, t);
        }
        assert_eq!(n.seen.len() as u64, many, "nothing is old enough to go");
        assert!(
            n.prune_above >= many as usize,
            "the next pruning waits for the table to double: {}",
            n.prune_above
        );
        // Once they are old, the next pruning drops them and the bound comes back down.
        let later = t + KEEP_FOR + Duration::from_secs(1);
        for ino in many..many + n.prune_above as u64 {
            n.record(ino, 1, 1, later);
        }
        assert!(n.seen.len() as u64 <= n.prune_above as u64 + 1);
        assert!(
            n.seen.keys().all(|&ino| ino >= many),
            "the old entries went"
        );
    }
}
