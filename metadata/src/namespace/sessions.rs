//! Mount sessions in the replicated state: opening one, ending one (closed by its mount
//! or expired by the leader's lease tracker), and what ending releases. A session id is
//! never reused, so a session that ended stays fenced for good.

use cairn_common::fs::{FsReply, SessionId};

use super::{Namespace, SessionRecord};

impl Namespace {
    pub(super) fn open_session(&mut self, name: String, now_ns: u64) -> FsReply {
        let id = self.next_session.max(1);
        self.next_session = id + 1;
        self.sessions.insert(
            id,
            SessionRecord {
                name,
                opened_ns: now_ns,
            },
        );
        // The lease length is the leader's configuration; the service fills it in.
        FsReply::Session { id, lease_ms: 0 }
    }

    /// Ends a session: its locks and holds go, and inodes only it kept alive are freed.
    pub(super) fn end_session(&mut self, session: SessionId) {
        if self.sessions.remove(&session).is_none() {
            return;
        }
        self.locks.retain(|_, table| {
            table.unlock_where(|(s, _)| *s == session);
            !table.is_empty()
        });
        let held: Vec<_> = self
            .holds
            .iter_mut()
            .filter_map(|(ino, holders)| holders.remove(&session).then_some(*ino))
            .collect();
        for ino in held {
            self.free_if_unused(ino);
        }
        self.holds.retain(|_, holders| !holders.is_empty());
    }

    pub fn session_is_open(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Every open session.
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionId, &SessionRecord)> {
        self.sessions.iter()
    }
}
