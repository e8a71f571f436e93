//! Inline file bytes: small files, and the first bytes of any file, kept in the metadata
//! itself (the `inline` table, replicated by Raft like every other table) instead of in
//! chunks. A write of them is one Raft entry: no chunk allocation, no shard writes.
//!
//! A file's content is its inline bytes (offset 0 up to their length) with its chunk
//! extents laid over them; past the inline bytes, gaps between extents are holes. So:
//! - an inline write (`WriteInline`) changes the inline bytes and cuts the extents it
//!   covers away, so that it shows through;
//! - a chunk write (`Write`) lays extents over the inline bytes; once extents cover all
//!   of them, they are dropped (the file has moved to chunks);
//! - a truncation cuts the inline bytes at the new size; freeing the file or replacing
//!   an object's content drops them.
//!
//! Every inline byte ends within the cluster's threshold ([`InlineLimits::max_bytes`]),
//! and all inline bytes together stay within its budget: a write that would pass either
//! is refused with `NotInline`, and the mount stores it in chunks. Pure: no IO.

use cairn_common::fs::{
    FsErrorKind, InlineRun, Ino, INLINE_MAX_LIMIT, MAX_EXTENTS_PER_WRITE, MAX_FILE_SIZE,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::extents;
use super::fs::{fail, FsRes};
use super::{Extent, InodeKind, Namespace};

/// A file's bytes up to this offset may be stored inline unless an operator sets another
/// threshold (`cairn inline set`).
pub const DEFAULT_INLINE_MAX_BYTES: u64 = 64 << 10;
/// All inline bytes of the cluster together, unless an operator sets another budget.
pub const DEFAULT_INLINE_BUDGET_BYTES: u64 = 1 << 30;

/// The cluster's inline threshold and budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineLimits {
    /// Inline bytes end within this offset; 0: no file bytes are stored inline.
    pub max_bytes: u64,
    /// All inline bytes together.
    pub budget_bytes: u64,
}

impl Default for InlineLimits {
    fn default() -> Self {
        InlineLimits {
            max_bytes: DEFAULT_INLINE_MAX_BYTES,
            budget_bytes: DEFAULT_INLINE_BUDGET_BYTES,
        }
    }
}

impl InlineLimits {
    /// Why these limits cannot be set, if they cannot.
    pub fn problem(&self) -> Option<String> {
        (self.max_bytes > INLINE_MAX_LIMIT).then(|| {
            format!(
                "inline threshold {} bytes is above the largest allowed, {INLINE_MAX_LIMIT}",
                self.max_bytes
            )
        })
    }
}

/// Whether `extents` (sorted, not overlapping) cover every byte of `0..len`.
fn covers_from_zero(extents: &[Extent], len: u64) -> bool {
    let mut at = 0;
    for e in extents {
        if e.offset > at || at >= len {
            break;
        }
        at = at.max(e.end());
    }
    at >= len
}

impl Namespace {
    pub fn inline_limits(&self) -> InlineLimits {
        self.settings.inline.unwrap_or_default()
    }

    /// All inline bytes of the cluster.
    pub fn inline_bytes_used(&self) -> u64 {
        self.counters.inline_bytes
    }

    pub(super) fn has_inline(&self, ino: Ino) -> bool {
        self.inline.contains_key(&ino)
    }

    /// The file's inline bytes (empty if it has none).
    pub fn inline_of(&self, ino: Ino) -> Vec<u8> {
        self.inline
            .get(&ino)
            .map(ByteBuf::into_vec)
            .unwrap_or_default()
    }

    pub(super) fn fs_write_inline(
        &mut self,
        ino: Ino,
        runs: Vec<InlineRun>,
        size_at_least: u64,
        now: u64,
    ) -> FsRes<()> {
        let InodeKind::File { .. } = self.inode(ino)?.kind else {
            return fail(FsErrorKind::IsDir, "write to something not a regular file");
        };
        if runs.is_empty() || runs.len() > MAX_EXTENTS_PER_WRITE {
            return fail(
                FsErrorKind::InvalidArgument,
                format!("an inline write of {} runs", runs.len()),
            );
        }
        if size_at_least > MAX_FILE_SIZE {
            return fail(FsErrorKind::FileTooBig, format!("size {size_at_least}"));
        }
        let limits = self.inline_limits();
        let mut end = 0u64;
        for run in &runs {
            if run.data.is_empty() {
                return fail(FsErrorKind::InvalidArgument, "an empty inline run");
            }
            match run.offset.checked_add(run.data.len() as u64) {
                Some(run_end) if run_end <= limits.max_bytes => end = end.max(run_end),
                _ => {
                    return fail(
                        FsErrorKind::NotInline,
                        format!(
                            "a run ends past the cluster's inline threshold of {} bytes",
                            limits.max_bytes
                        ),
                    )
                }
            }
        }
        let mut bytes = self.inline_of(ino);
        let old_len = bytes.len() as u64;
        let new_len = old_len.max(end);
        let used = self.counters.inline_bytes - old_len + new_len;
        if new_len > old_len && used > limits.budget_bytes {
            return fail(
                FsErrorKind::NotInline,
                format!(
                    "the cluster's inline budget of {} bytes is used up",
                    limits.budget_bytes
                ),
            );
        }
        bytes.resize(new_len as usize, 0);
        let mut refs = Vec::new();
        let generation = self.bump_generation();
        let inode = self.inode_mut(ino)?;
        let InodeKind::File { size, extents, .. } = &mut inode.kind else {
            unreachable!("checked above");
        };
        for run in &runs {
            let at = run.offset as usize;
            bytes[at..at + run.data.len()].copy_from_slice(&run.data);
            extents::punch(
                extents,
                run.offset,
                run.offset + run.data.len() as u64,
                &mut refs,
            );
        }
        *size = (*size).max(end).max(size_at_least);
        inode.mtime_ns = now;
        inode.ctime_ns = now;
        inode.generation = generation;
        self.apply_refs(refs);
        self.set_inline(ino, bytes);
        Ok(())
    }

    /// Cuts the file's inline bytes at `size` (a truncation).
    pub(super) fn truncate_inline(&mut self, ino: Ino, size: u64) {
        let mut bytes = self.inline_of(ino);
        if bytes.len() as u64 > size {
            bytes.truncate(size as usize);
            self.set_inline(ino, bytes);
        }
    }

    /// Drops the file's inline bytes once its extents cover them all.
    pub(super) fn drop_covered_inline(&mut self, ino: Ino, extents: &[Extent]) {
        let Some(len) = self.inline.get(&ino).map(|b| b.len() as u64) else {
            return;
        };
        if covers_from_zero(extents, len) {
            self.set_inline(ino, Vec::new());
        }
    }

    /// Replaces the file's inline bytes (empty: none), keeping the budget's count.
    pub(super) fn set_inline(&mut self, ino: Ino, bytes: Vec<u8>) {
        let old = self.inline.get(&ino).map_or(0, |b| b.len() as u64);
        self.counters.inline_bytes = self.counters.inline_bytes - old + bytes.len() as u64;
        if bytes.is_empty() {
            if old > 0 {
                self.inline.remove(&ino);
            }
        } else {
            self.inline.insert(ino, ByteBuf::from(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::ChunkId;

    fn ext(offset: u64, len: u64) -> Extent {
        Extent {
            offset,
            len,
            chunk: ChunkId([1; 16]),
            chunk_offset: 0,
        }
    }

    #[test]
    fn coverage_from_zero_needs_every_byte() {
        assert!(covers_from_zero(&[], 0));
        assert!(!covers_from_zero(&[], 1));
        assert!(covers_from_zero(&[ext(0, 10)], 10));
        assert!(!covers_from_zero(&[ext(0, 10)], 11));
        assert!(!covers_from_zero(&[ext(1, 10)], 5), "a hole at 0");
        assert!(covers_from_zero(&[ext(0, 4), ext(4, 4), ext(20, 1)], 8));
        assert!(!covers_from_zero(&[ext(0, 4), ext(5, 4)], 8), "a hole at 4");
    }

    #[test]
    fn limits_above_the_hard_cap_are_refused() {
        assert!(InlineLimits::default().problem().is_none());
        let too_big = InlineLimits {
            max_bytes: INLINE_MAX_LIMIT + 1,
            budget_bytes: 1,
        };
        assert!(too_big.problem().is_some());
    }
}
