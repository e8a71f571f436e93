//! Which regions of an attached volume small writes have fragmented, and which to rewrite
//! next. Pure: the volume records what it writes and asks for a region; it does the IO.
//!
//! Every write that covers only part of a region (and every hole punched into part of
//! one) may split the region's extents; a write covering a whole region leaves it one
//! run. So the count of partial writes since a region was last whole bounds its extents,
//! and rewriting a region whose count passed the threshold as one run bounds the
//! volume's extents (and so the chunks they keep alive, and the size of the file's entry
//! in the metadata) at about `regions x threshold`, whatever the write pattern and
//! however long it runs. The server is the volume's only writer while it holds the
//! claim, so what it records is the whole story since it attached (a volume fragmented
//! by an earlier server is found again as it is written).

use std::collections::BTreeMap;

/// Bytes per region (a quarter of a chunk: a rewrite costs one region's bytes).
pub const REGION: u64 = 1 << 20;
/// Partial writes a region takes before it is rewritten.
pub const THRESHOLD: u32 = 32;

#[derive(Debug, Default)]
pub struct Fragmentation {
    /// Partial writes per region since it was last whole (regions with none are absent).
    partial: BTreeMap<u64, u32>,
}

impl Fragmentation {
    /// Records a write (or a punched hole) of `offset..offset + len`.
    pub fn record(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = offset.saturating_add(len);
        let (first, last) = (offset / REGION, (end - 1) / REGION);
        for region in first..=last {
            let start = region * REGION;
            let whole = offset <= start && end >= start + REGION;
            if whole {
                self.partial.remove(&region);
            } else {
                *self.partial.entry(region).or_insert(0) += 1;
            }
        }
    }

    /// The most fragmented region past the threshold: its first byte.
    pub fn worst(&self) -> Option<u64> {
        self.partial
            .iter()
            .filter(|(_, &n)| n >= THRESHOLD)
            .max_by_key(|(&region, &n)| (n, std::cmp::Reverse(region)))
            .map(|(&region, _)| region * REGION)
    }

    /// The region at `offset` was rewritten as one run.
    pub fn rewritten(&mut self, offset: u64) {
        self.partial.remove(&(offset / REGION));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_count_per_region_and_a_whole_write_clears_it() {
        let mut f = Fragmentation::default();
        for i in 0..THRESHOLD - 1 {
            f.record(u64::from(i) * 8192, 4096);
        }
        assert_eq!(f.worst(), None, "below the threshold");
        // A write straddling regions 0 and 1 counts for both.
        f.record(REGION - 100, 200);
        assert_eq!(f.worst(), Some(0));
        assert_eq!(f.partial.len(), 2);
        // A write covering region 1 whole (and part of 2) clears 1 and counts for 2.
        f.record(REGION - 1, REGION + 2);
        assert_eq!(f.partial.len(), 2, "regions 0 and 2");
        f.rewritten(0);
        assert_eq!(f.worst(), None);
        assert_eq!(f.partial.len(), 1);
        f.record(5, 0);
        assert_eq!(f.partial.len(), 1, "an empty write is nothing");
    }

    #[test]
    fn the_worst_region_is_the_most_written_then_the_first() {
        let mut f = Fragmentation::default();
        for _ in 0..THRESHOLD + 5 {
            f.record(7 * REGION + 1, 1);
        }
        for _ in 0..THRESHOLD + 5 {
            f.record(3 * REGION + 1, 1);
        }
        for _ in 0..THRESHOLD {
            f.record(REGION, 1);
        }
        assert_eq!(f.worst(), Some(3 * REGION));
        f.rewritten(3 * REGION);
        assert_eq!(f.worst(), Some(7 * REGION));
    }
}
