//! POSIX byte-range lock table of one inode: conflict test, set/convert/unlock with range
//! splitting and merging of an owner's own locks. Pure and generic over who owns a lock:
//! the in-memory FUSE backend keys locks by the kernel's lock owner, the metadata service
//! by (session, lock owner).

use serde::{Deserialize, Serialize};

/// Largest file offset a lock can reach (Linux `MAX_LFS_FILESIZE`); longer ranges are
/// clamped to it ("to the end of the file, however long it grows").
pub const MAX_LOCK_OFFSET: u64 = i64::MAX as u64;

/// A lock's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    Read,
    Write,
    Unlock,
}

/// A byte-range lock: bytes `start..=end` (`end` at or beyond [`MAX_LOCK_OFFSET`] means to
/// the end of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    pub start: u64,
    pub end: u64,
    pub kind: LockKind,
    /// The process that took it (reported by `F_GETLK`; not used for ownership).
    pub pid: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockError {
    #[error("lock range starts after it ends")]
    InvalidRange,
    #[error("lock held by another owner")]
    Conflict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Held<O> {
    owner: O,
    start: u64,
    /// Inclusive, at most `MAX_LOCK_OFFSET`.
    end: u64,
    write: bool,
    pid: u32,
}

impl<O> Held<O> {
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable<O> {
    held: Vec<Held<O>>,
}

impl<O> Default for LockTable<O> {
    fn default() -> Self {
        LockTable { held: Vec::new() }
    }
}

fn range(lock: &FileLock) -> Result<(u64, u64), LockError> {
    let end = lock.end.min(MAX_LOCK_OFFSET);
    if lock.start > end {
        return Err(LockError::InvalidRange);
    }
    Ok((lock.start, end))
}

impl<O: Copy + Eq> LockTable<O> {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The first lock of another owner that conflicts with `lock` (`Unlock` never does).
    pub fn conflict(&self, owner: O, lock: &FileLock) -> Result<Option<FileLock>, LockError> {
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

    /// Takes, converts or releases `lock` for `owner`; `Conflict` leaves the table
    /// unchanged.
    pub fn set(&mut self, owner: O, lock: &FileLock) -> Result<(), LockError> {
        if self.conflict(owner, lock)?.is_some() {
            return Err(LockError::Conflict);
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

    /// Drops every lock whose owner passes `drop`; true if there was any.
    pub fn unlock_where(&mut self, drop: impl Fn(&O) -> bool) -> bool {
        let before = self.held.len();
        self.held.retain(|h| !drop(&h.owner));
        self.held.len() != before
    }

    /// Drops every lock of `owner`; true if there was any.
    pub fn unlock_all(&mut self, owner: O) -> bool {
        self.unlock_where(|o| *o == owner)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 1;
    const B: u64 = 2;

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
        let mut t = LockTable::<u64>::default();
        t.set(A, &lk(0, 99, LockKind::Write)).expect("free");
        assert!(matches!(
            t.set(B, &lk(50, 60, LockKind::Read)),
            Err(LockError::Conflict)
        ));
        t.set(A, &lk(50, 60, LockKind::Read))
            .expect("own lock converts");
        t.set(B, &lk(100, 200, LockKind::Write)).expect("disjoint");
    }

    #[test]
    fn read_locks_share() {
        let mut t = LockTable::<u64>::default();
        t.set(A, &lk(0, u64::MAX, LockKind::Read)).expect("free");
        t.set(B, &lk(0, 10, LockKind::Read)).expect("shared");
        let c = t.conflict(B, &lk(5, 5, LockKind::Write)).expect("valid");
        assert_eq!(c.map(|l| l.kind), Some(LockKind::Read));
    }

    #[test]
    fn unlocking_the_middle_splits_a_lock() {
        let mut t = LockTable::<u64>::default();
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
        let mut t = LockTable::<u64>::default();
        t.set(A, &lk(0, 9, LockKind::Write)).expect("free");
        t.set(A, &lk(10, 19, LockKind::Write)).expect("free");
        let c = t.conflict(B, &lk(0, 0, LockKind::Read)).expect("v");
        assert_eq!(c.map(|l| (l.start, l.end)), Some((0, 19)));
    }

    #[test]
    fn unlock_all_frees_only_that_owner() {
        let mut t = LockTable::<u64>::default();
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
        let mut t = LockTable::<u64>::default();
        assert!(matches!(
            t.set(A, &lk(10, 5, LockKind::Write)),
            Err(LockError::InvalidRange)
        ));
    }
}
