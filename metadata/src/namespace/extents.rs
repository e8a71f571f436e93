//! A file's extent list (sorted by offset, never overlapping, gaps are holes): laying a
//! new run over it, cutting it at a new size, and finding the runs in a byte range. Pure;
//! every reference taken or dropped on a chunk is reported, so the namespace can keep
//! its chunk reference counts.

use cairn_common::ChunkId;

use super::Extent;

/// A reference to a chunk that an operation took or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RefChange {
    Take(ChunkId),
    Drop(ChunkId),
}

/// The part of `e` within `from..to` (which must overlap it).
fn clip(e: &Extent, from: u64, to: u64) -> Extent {
    let start = e.offset.max(from);
    let end = e.end().min(to);
    Extent {
        offset: start,
        len: end - start,
        chunk: e.chunk,
        chunk_offset: e.chunk_offset + (start - e.offset),
    }
}

/// Index of the first extent ending after `offset`.
fn first_after(extents: &[Extent], offset: u64) -> usize {
    extents.partition_point(|e| e.end() <= offset)
}

/// Cuts `from..to` out of `extents` (an extent covering it in the middle becomes two runs
/// of the same chunk); returns where the cut is, for an extent put in its place.
pub(super) fn punch(
    extents: &mut Vec<Extent>,
    from: u64,
    to: u64,
    refs: &mut Vec<RefChange>,
) -> usize {
    let first = first_after(extents, from);
    let mut last = first;
    let mut replacement = Vec::with_capacity(2);
    while last < extents.len() && extents[last].offset < to {
        let e = extents[last];
        refs.push(RefChange::Drop(e.chunk));
        if e.offset < from {
            replacement.push(clip(&e, e.offset, from));
            refs.push(RefChange::Take(e.chunk));
        }
        if e.end() > to {
            replacement.push(clip(&e, to, e.end()));
            refs.push(RefChange::Take(e.chunk));
        }
        last += 1;
    }
    let at = first
        + replacement
            .iter()
            .position(|e| e.offset >= to)
            .unwrap_or(replacement.len());
    extents.splice(first..last, replacement);
    at
}

/// Lays `new` over `extents`: what it covers is cut away (an extent covered in the middle
/// becomes two runs of the same chunk).
pub(super) fn overlay(extents: &mut Vec<Extent>, new: Extent, refs: &mut Vec<RefChange>) {
    let at = punch(extents, new.offset, new.end(), refs);
    refs.push(RefChange::Take(new.chunk));
    extents.insert(at, new);
}

/// Drops everything at or beyond `size` (the extent straddling it keeps its head).
pub(super) fn truncate(extents: &mut Vec<Extent>, size: u64, refs: &mut Vec<RefChange>) {
    let from = first_after(extents, size);
    let tail: Vec<Extent> = extents.drain(from..).collect();
    for e in tail {
        refs.push(RefChange::Drop(e.chunk));
        if e.offset < size {
            extents.push(clip(&e, e.offset, size));
            refs.push(RefChange::Take(e.chunk));
        }
    }
}

/// The extents overlapping `offset..offset+len`, unclipped.
pub(super) fn in_range(extents: &[Extent], offset: u64, len: u64) -> &[Extent] {
    let end = offset.saturating_add(len);
    let from = first_after(extents, offset);
    let to = from + extents[from..].partition_point(|e| e.offset < end);
    &extents[from..to]
}

/// Bytes stored (not holes).
pub(super) fn allocated(extents: &[Extent]) -> u64 {
    extents.iter().map(|e| e.len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(offset: u64, len: u64, chunk: ChunkId, chunk_offset: u64) -> Extent {
        Extent {
            offset,
            len,
            chunk,
            chunk_offset,
        }
    }

    fn net(refs: &[RefChange], chunk: ChunkId) -> i64 {
        refs.iter()
            .map(|r| match r {
                RefChange::Take(c) if *c == chunk => 1,
                RefChange::Drop(c) if *c == chunk => -1,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn overlay_in_the_middle_splits_one_extent_in_two() {
        let (a, b) = (ChunkId::random(), ChunkId::random());
        let mut extents = vec![ext(0, 100, a, 0)];
        let mut refs = Vec::new();
        overlay(&mut extents, ext(40, 10, b, 0), &mut refs);
        assert_eq!(
            extents,
            vec![ext(0, 40, a, 0), ext(40, 10, b, 0), ext(50, 50, a, 50)]
        );
        assert_eq!(net(&refs, a), 1, "one more reference to a");
        assert_eq!(net(&refs, b), 1);
    }

    #[test]
    fn overlay_covering_several_extents_drops_them() {
        let (a, b, c, d) = (
            ChunkId::random(),
            ChunkId::random(),
            ChunkId::random(),
            ChunkId::random(),
        );
        let mut extents = vec![ext(0, 10, a, 0), ext(10, 10, b, 0), ext(30, 10, c, 5)];
        let mut refs = Vec::new();
        overlay(&mut extents, ext(5, 30, d, 0), &mut refs);
        assert_eq!(
            extents,
            vec![ext(0, 5, a, 0), ext(5, 30, d, 0), ext(35, 5, c, 10)]
        );
        assert_eq!(net(&refs, a), 0);
        assert_eq!(net(&refs, b), -1);
        assert_eq!(net(&refs, c), 0);
    }

    #[test]
    fn overlay_into_a_hole_and_past_the_end() {
        let (a, b, c) = (ChunkId::random(), ChunkId::random(), ChunkId::random());
        let mut extents = vec![ext(0, 10, a, 0)];
        let mut refs = Vec::new();
        overlay(&mut extents, ext(100, 10, b, 0), &mut refs);
        overlay(&mut extents, ext(50, 10, c, 0), &mut refs);
        assert_eq!(
            extents,
            vec![ext(0, 10, a, 0), ext(50, 10, c, 0), ext(100, 10, b, 0)]
        );
    }

    #[test]
    fn punch_cuts_a_range_out_of_extents() {
        let (a, b) = (ChunkId::random(), ChunkId::random());
        let mut extents = vec![ext(0, 100, a, 0), ext(200, 10, b, 0)];
        let mut refs = Vec::new();
        assert_eq!(punch(&mut extents, 40, 50, &mut refs), 1);
        assert_eq!(
            extents,
            vec![ext(0, 40, a, 0), ext(50, 50, a, 50), ext(200, 10, b, 0)]
        );
        assert_eq!(net(&refs, a), 1, "one more reference to a");
        assert_eq!(punch(&mut extents, 30, 205, &mut refs), 1);
        assert_eq!(extents, vec![ext(0, 30, a, 0), ext(205, 5, b, 5)]);
        assert_eq!(net(&refs, a), 0);
        assert_eq!(net(&refs, b), 0);
        assert_eq!(punch(&mut extents, 100, 150, &mut refs), 1, "a hole");
        assert_eq!(extents.len(), 2);
        punch(&mut extents, 0, 1000, &mut refs);
        assert!(extents.is_empty());
        assert_eq!(net(&refs, a), -1);
        assert_eq!(net(&refs, b), -1);
    }

    #[test]
    fn truncate_clips_the_straddling_extent() {
        let (a, b) = (ChunkId::random(), ChunkId::random());
        let mut extents = vec![ext(0, 10, a, 0), ext(20, 10, b, 3)];
        let mut refs = Vec::new();
        truncate(&mut extents, 25, &mut refs);
        assert_eq!(extents, vec![ext(0, 10, a, 0), ext(20, 5, b, 3)]);
        assert_eq!(net(&refs, b), 0);
        truncate(&mut extents, 5, &mut refs);
        assert_eq!(extents, vec![ext(0, 5, a, 0)]);
        assert_eq!(net(&refs, b), -1);
        truncate(&mut extents, 0, &mut refs);
        assert!(extents.is_empty());
        assert_eq!(net(&refs, a), -1);
    }

    #[test]
    fn in_range_finds_overlapping_extents() {
        let (a, b) = (ChunkId::random(), ChunkId::random());
        let extents = vec![ext(0, 10, a, 0), ext(20, 10, b, 0)];
        assert_eq!(in_range(&extents, 5, 1).len(), 1);
        assert_eq!(in_range(&extents, 10, 10).len(), 0);
        assert_eq!(in_range(&extents, 9, 12).len(), 2);
        assert_eq!(in_range(&extents, 30, 100).len(), 0);
    }
}
