//! Mount sessions in the replicated state: opening one, ending one (closed by its mount
//! or expired by the leader's lease tracker), and what ending releases. A session id is
//! never reused, so a session that ended stays fenced for good.

use cairn_common::fs::{FsChange, FsReply, FsResult, SessionId};

use std::ops::Bound;

use super::{Namespace, SessionRecord};

/// Answers remembered per session: far more than the changes one mount has in flight at
/// once (one per FUSE request being served), so a retry finds its answer.
pub const MAX_REMEMBERED_ANSWERS: u64 = 256;

/// How far a restore moves the id counters: more ids than a cluster hands out between
/// a backup and a restore (four billion sessions, files or object versions).
pub const RESTORE_ID_GAP: u64 = 1 << 32;

impl Namespace {
    /// Applies a numbered change once: a retry of a change whose answer is remembered
    /// gets that answer again. Answers are kept for the last `MAX_REMEMBERED_ANSWERS`
    /// sequence numbers of each session.
    pub(super) fn apply_numbered(
        &mut self,
        session: SessionId,
        seq: u64,
        change: FsChange,
        now_ns: u64,
    ) -> FsResult {
        if let Some(first) = self.first_answer(session, seq) {
            return first;
        }
        let remember = seq != 0 && change.needs_first_answer();
        let result = self.apply_fs(session, change, now_ns);
        if remember {
            // An answer below the session's floor would never be forgotten: a change
            // that old is not remembered again.
            if let Some(mut record) = self
                .sessions
                .get(&session)
                .filter(|r| seq >= r.answers_from)
            {
                self.answers.insert((session, seq), result.clone());
                let forget_below = seq.saturating_sub(MAX_REMEMBERED_ANSWERS);
                if forget_below > record.answers_from {
                    let old: Vec<(SessionId, u64)> = self
                        .answers
                        .range(
                            Bound::Included((session, record.answers_from)),
                            Bound::Excluded((session, forget_below)),
                        )
                        .map(|(key, _)| key)
                        .collect();
                    for key in old {
                        self.answers.remove(&key);
                    }
                    record.answers_from = forget_below;
                    self.sessions.insert(session, record);
                }
            }
        }
        result
    }

    pub fn first_answer(&self, session: SessionId, seq: u64) -> Option<FsResult> {
        if seq == 0 {
            return None;
        }
        self.answers.get(&(session, seq))
    }

    pub(super) fn open_session(&mut self, name: String, now_ns: u64) -> FsReply {
        let id = self.counters.next_session.max(1);
        self.counters.next_session = id + 1;
        self.sessions.insert(
            id,
            SessionRecord {
                name,
                opened_ns: now_ns,
                answers_from: 0,
            },
        );
        // The lease length is the leader's configuration; the service fills it in.
        FsReply::Session { id, lease_ms: 0 }
    }

    pub(super) fn end_session(&mut self, session: SessionId) {
        let Some(record) = self.sessions.remove(&session) else {
            return;
        };
        let answers: Vec<(SessionId, u64)> = self
            .answers
            .range(
                Bound::Included((session, record.answers_from)),
                Bound::Included((session, u64::MAX)),
            )
            .map(|(key, _)| key)
            .collect();
        for key in answers {
            self.answers.remove(&key);
        }
        let locked: Vec<_> = self.locks.iter().collect();
        for (ino, mut table) in locked {
            let before = table.clone();
            table.unlock_where(|(s, _)| *s == session);
            if table.is_empty() {
                self.locks.remove(&ino);
            } else if table != before {
                self.locks.insert(ino, table);
            }
        }
        let held: Vec<_> = self
            .holds
            .iter()
            .filter(|(_, holders)| holders.contains(&session))
            .collect();
        for (ino, mut holders) in held {
            holders.remove(&session);
            if holders.is_empty() {
                self.holds.remove(&ino);
            } else {
                self.holds.insert(ino, holders);
            }
            self.free_if_unused(ino);
        }
    }

    /// Prepares a state restored from a backup to serve again (`backup.rs`): ends every
    /// session (their mounts may have changed files after the backup; they are fenced
    /// and open new sessions) and moves the counters of ids that outlive a session
    /// (sessions, inodes, object generations) `RESTORE_ID_GAP` ahead, so that no id
    /// handed out after the backup, which a mount or a client may still hold, is handed
    /// out again for something else. Returns how many sessions it ended.
    pub fn prepare_restored(&mut self) -> usize {
        let sessions: Vec<SessionId> = self.sessions.iter().map(|(id, _)| id).collect();
        for &session in &sessions {
            self.end_session(session);
        }
        let counters = &mut self.counters;
        counters.next_session = counters.next_session.saturating_add(RESTORE_ID_GAP);
        counters.next_ino = counters.next_ino.saturating_add(RESTORE_ID_GAP);
        counters.next_generation = counters.next_generation.saturating_add(RESTORE_ID_GAP);
        sessions.len()
    }

    pub fn session_is_open(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn sessions(&self) -> Vec<(SessionId, SessionRecord)> {
        self.sessions.iter().collect()
    }
}
