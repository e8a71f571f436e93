//! Which lock owners of this mount may hold a lock on a file, so that a `close` (which
//! must release every lock its process holds on the file) costs no commit when the
//! process never asked for one: most files are opened, read or written, and closed
//! without a lock.
//!
//! An owner is marked before its lock request is sent, so a lock granted while its reply
//! was lost is still released on close. A release forgets the mark only if no lock was
//! asked for meanwhile (each mark has a number): a lock granted after the release's
//! commit keeps its mark and is released at the next close.

use std::collections::HashMap;

use crate::backend::{Ino, LockOwner};

#[derive(Default)]
pub(super) struct LockOwners {
    /// The number of the newest lock request of each owner that may hold a lock.
    marks: HashMap<(Ino, u64), u64>,
    next: u64,
}

/// What a release saw before its commit: passed back once it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark(u64);

impl LockOwners {
    /// `owner` is about to ask for a lock on `ino`.
    pub(super) fn asking(&mut self, ino: Ino, owner: LockOwner) {
        self.next += 1;
        self.marks.insert((ino, owner.0), self.next);
    }

    /// Whether releasing `owner`'s locks on `ino` needs a commit: `None` when the owner
    /// never asked for a lock there (or all were released since).
    pub(super) fn releasing(&self, ino: Ino, owner: LockOwner) -> Option<Mark> {
        self.marks.get(&(ino, owner.0)).copied().map(Mark)
    }

    /// The release that saw `mark` is committed: the owner holds nothing on `ino` unless
    /// it asked again meanwhile.
    pub(super) fn released(&mut self, ino: Ino, owner: LockOwner, mark: Mark) {
        if self.marks.get(&(ino, owner.0)) == Some(&mark.0) {
            self.marks.remove(&(ino, owner.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Ino = 7;
    const G: Ino = 8;
    const A: LockOwner = LockOwner(1);
    const B: LockOwner = LockOwner(2);

    #[test]
    fn an_owner_that_never_asked_needs_no_release() {
        let mut owners = LockOwners::default();
        assert_eq!(owners.releasing(F, A), None);
        owners.asking(F, A);
        assert!(owners.releasing(F, A).is_some());
        // Another file, another owner: still nothing to release.
        assert_eq!(owners.releasing(G, A), None);
        assert_eq!(owners.releasing(F, B), None);
    }

    #[test]
    fn a_committed_release_forgets_the_owner() {
        let mut owners = LockOwners::default();
        owners.asking(F, A);
        let mark = owners.releasing(F, A).expect("asked");
        owners.released(F, A, mark);
        assert_eq!(owners.releasing(F, A), None);
    }

    #[test]
    fn a_lock_asked_for_during_a_release_is_released_at_the_next_close() {
        let mut owners = LockOwners::default();
        owners.asking(F, A);
        let mark = owners.releasing(F, A).expect("asked");
        // Granted after the release's commit: the owner may hold it.
        owners.asking(F, A);
        owners.released(F, A, mark);
        assert!(owners.releasing(F, A).is_some());
    }
}
