//! Mount sessions in the replicated state: opening one, ending one (closed by its mount
//! or expired by the leader's lease tracker), and what ending releases. A session id is
//! never reused, so a session that ended stays fenced for good.

use cairn_common::fs::{FsChange, FsReply, FsResult, SessionId};

use super::{Namespace, SessionRecord};

/// Answers remembered per session: far more than the changes one mount has in flight at
/// once (one per FUSE request being served), so a retry finds its answer.
pub const MAX_REMEMBERED_ANSWERS: usize = 256;

impl Namespace {
    /// Applies the session's change number `seq` (see `FsRequest::Change`): the answer it
    /// got the first time if it was applied already, else the change's own, remembered
    /// when applying it twice would differ.
    pub(super) fn apply_numbered(
        &mut self,
        session: SessionId,
        seq: u64,
        change: FsChange,
        now_ns: u64,
    ) -> FsResult {
        if let Some(first) = self.first_answer(session, seq) {
            return first.clone();
        }
        let remember = seq != 0 && change.needs_first_answer();
        let result = self.apply_fs(session, change, now_ns);
        if let (true, Some(record)) = (remember, self.sessions.get_mut(&session)) {
            record.answers.insert(seq, result.clone());
            while record.answers.len() > MAX_REMEMBERED_ANSWERS {
                record.answers.pop_first();
            }
        }
        result
    }

    /// The answer the session's change number `seq` got when it was applied, if it was
    /// and is still remembered.
    pub fn first_answer(&self, session: SessionId, seq: u64) -> Option<&FsResult> {
        if seq == 0 {
            return None;
        }
        self.sessions.get(&session)?.answers.get(&seq)
    }

    pub(super) fn open_session(&mut self, name: String, now_ns: u64) -> FsReply {
        let id = self.next_session.max(1);
        self.next_session = id + 1;
        self.sessions.insert(
            id,
            SessionRecord {
                name,
                opened_ns: now_ns,
                answers: Default::default(),
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
