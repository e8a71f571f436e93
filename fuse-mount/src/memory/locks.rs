//! POSIX byte-range lock table of one inode: conflict test, set/convert/unlock with range
//! splitting and merging of an owner's own locks. Pure; the memory backend keeps one per
//! inode (a cluster backend implements the same rules in the metadata service).

use crate::backend::{FileLock, FsError, LockKind, LockOwner, MAX_FILE_SIZE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    owner: LockOwner,
    start: u64,
    /// Inclusive, at most `MAX_FILE_SIZE`.
    end: u64,
    write: bool,
    pid: u32,
}

impl Held {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    fn as_lock(&self) -> FileLock {
        FileLock {
            start: self.start,
            end: self.end,
            kind: if self.write {
                LockKind::Write
            } else {
                LockKind::Read
            },
            pid: self.pid,
        }
    }
}

/// The locks held on one inode.
#[derive(Debug, Default)]
pub struct LockTable {
    held: Vec<Held>,
}

fn range(lock: &FileLock) -> Result<(u64, u64), FsError> {
    let end = lock.end.min(MAX_FILE_SIZE);
    if lock.start > end {
        return Err(FsError::InvalidArgument);
    }
    Ok((lock.start, end))
}

impl LockTable {
    /// The first lock of another owner that conflicts with `lock` (`Unlock` never does).
    pub fn conflict(&self, owner: LockOwner, lock: &FileLock) -> Result<Option<FileLock>, FsError> {
        let (start, end) = range(lock)?;
        let write = match lock.kind {
            LockKind::Unlock => return Ok(None),
            LockKind::Read => false,
            LockKind::Write => true,
        };
        Ok(self
            .held
            .iter()
            .find(|h| h.owner != owner && h.overlaps(start, end) && (write || h.write))
            .map(Held::as_lock))
    }

    /// Takes, converts or releases `lock` for `owner`; `WouldBlock` on a conflict, leaving
    /// the table unchanged.
    pub fn set(&mut self, owner: LockOwner, lock: &FileLock) -> Result<(), FsError> {
        if self.conflict(owner, lock)?.is_some() {
            return Err(FsError::WouldBlock);
        }
        let (start, end) = range(lock)?;
        // Carve [start, end] out of the owner's own locks, keeping what sticks out.
        let mut kept = Vec::with_capacity(self.held.len() + 1);
        for h in self.held.drain(..) {
            if h.owner != owner || !h.overlaps(start, end) {
                kept.push(h);
                continue;
            }
            if h.start < start {
                kept.push(Held {
                    end: start - 1,
                    ..h
                });
            }
            if h.end > end {
                kept.push(Held {
                    start: end + 1,
                    ..h
                });
            }
        }
        self.held = kept;
        let write = match lock.kind {
            LockKind::Unlock => return Ok(()),
            LockKind::Read => false,
            LockKind::Write => true,
        };
        // Merge with the owner's adjacent locks of the same kind.
        let mut new = Held {
            owner,
            start,
            end,
            write,
            pid: lock.pid,
        };
        self.held.retain(|h| {
            let touches =
                h.start <= new.end.saturating_add(1) && new.start <= h.end.saturating_add(1);
            if h.owner == owner && h.write == write && touches {
                new.start = new.start.min(h.start);
                new.end = new.end.max(h.end);
                false
            } else {
                true
            }
        });
        self.held.push(new);
        Ok(())
    }

    /// Drops every lock of `owner`; true if there was any.
    pub fn unlock_all(&mut self, owner: LockOwner) -> bool {
        let before = self.held.len();
        self.held.retain(|h| h.owner != owner);
        self.held.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: LockOwner = LockOwner(1);
    const B: LockOwner = LockOwner(2);

    fn lk(start: u64, end: u64, kind: LockKind) -> FileLock {
        FileLock {
            start,
            end,
            kind,
            pid: 7,
        }
    }

    #[test]
    fn write_lock_conflicts_with_other_owner_only() {
        let mut t = LockTable::default();
        t.set(A, &lk(0, 99, LockKind::Write)).expect("free");
        assert!(matches!(
            t.set(B, &lk(50, 60, LockKind::Read)),
            Err(FsError::WouldBlock)
        ));
        t.set(A, &lk(50, 60, LockKind::Read))
            .expect("own lock converts");
        t.set(B, &lk(100, 200, LockKind::Write)).expect("disjoint");
    }

    #[test]
    fn read_locks_share() {
        let mut t = LockTable::default();
        t.set(A, &lk(0, u64::MAX, LockKind::Read)).expect("free");
        t.set(B, &lk(0, 10, LockKind::Read)).expect("shared");
        let c = t.conflict(B, &lk(5, 5, LockKind::Write)).expect("valid");
        assert_eq!(c.map(|l| l.kind), Some(LockKind::Read));
    }

    #[test]
    fn unlocking_the_middle_splits_a_lock() {
        let mut t = LockTable::default();
        t.set(A, &lk(0, 99, LockKind::Write)).expect("free");
        t.set(A, &lk(40, 59, LockKind::Unlock)).expect("unlock");
        t.set(B, &lk(40, 59, LockKind::Write))
            .expect("hole is free");
        assert!(t
            .conflict(B, &lk(39, 39, LockKind::Read))
            .expect("v")
            .is_some());
        assert!(t
            .conflict(B, &lk(60, 60, LockKind::Read))
            .expect("v")
            .is_some());
    }

    #[test]
    fn adjacent_same_kind_locks_merge() {
        let mut t = LockTable::default();
        t.set(A, &lk(0, 9, LockKind::Write)).expect("free");
        t.set(A, &lk(10, 19, LockKind::Write)).expect("free");
        let c = t.conflict(B, &lk(0, 0, LockKind::Read)).expect("v");
        assert_eq!(c.map(|l| (l.start, l.end)), Some((0, 19)));
    }

    #[test]
    fn unlock_all_frees_only_that_owner() {
        let mut t = LockTable::default();
        t.set(A, &lk(0, 9, LockKind::Read)).expect("free");
        t.set(B, &lk(0, 9, LockKind::Read)).expect("free");
        assert!(t.unlock_all(A));
        assert!(!t.unlock_all(A));
        assert!(t
            .conflict(A, &lk(0, 0, LockKind::Write))
            .expect("v")
            .is_some());
    }

    #[test]
    fn inverted_range_is_invalid() {
        let mut t = LockTable::default();
        assert!(matches!(
            t.set(A, &lk(10, 5, LockKind::Write)),
            Err(FsError::InvalidArgument)
        ));
    }
}
