//! A sparse byte array in 4 KiB pages: the content of one in-memory file. Holes (pages
//! never written, or cut by a truncate) read as zeros and take no memory. Pure; knows
//! nothing of inodes or capacity (it reports page counts so the caller can account).

use std::collections::BTreeMap;

/// Page size in bytes; also the `st_blocks` granularity the memory backend reports.
pub const PAGE: u64 = 4096;

/// One file's bytes.
#[derive(Clone, Debug, Default)]
pub struct SparseData {
    size: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl SparseData {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pages holding data (the file's allocation).
    pub fn allocated_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Up to `len` bytes at `offset`, short only at the end of the file.
    pub fn read(&self, offset: u64, len: u64) -> Vec<u8> {
        if offset >= self.size || len == 0 {
            return Vec::new();
        }
        let end = offset.saturating_add(len).min(self.size);
        let mut out = vec![0u8; (end - offset) as usize];
        for (&index, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let page_start = index * PAGE;
            let from = offset.max(page_start);
            let to = end.min(page_start + PAGE);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&page[(from - page_start) as usize..(to - page_start) as usize]);
        }
        out
    }

    /// Pages a write of `len` bytes at `offset` would newly allocate.
    pub fn pages_needed(&self, offset: u64, len: u64) -> u64 {
        if len == 0 {
            return 0;
        }
        let first = offset / PAGE;
        let last = (offset + len - 1) / PAGE;
        let present = self.pages.range(first..=last).count() as u64;
        last - first + 1 - present
    }

    /// Writes `data` at `offset` (the caller checked `offset + len` against the size limit);
    /// returns the number of pages allocated.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> u64 {
        if data.is_empty() {
            return 0;
        }
        let end = offset + data.len() as u64;
        let mut allocated = 0;
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let page_start = index * PAGE;
            let to = end.min(page_start + PAGE);
            let page = self.pages.entry(index).or_insert_with(|| {
                allocated += 1;
                vec![0u8; PAGE as usize].into_boxed_slice()
            });
            page[(pos - page_start) as usize..(to - page_start) as usize]
                .copy_from_slice(&data[(pos - offset) as usize..(to - offset) as usize]);
            pos = to;
        }
        self.size = self.size.max(end);
        allocated
    }

    /// Zeros `offset..offset + len` (within the size, which does not change), freeing the
    /// pages it covers whole. Returns the number of pages freed.
    pub fn punch(&mut self, offset: u64, len: u64) -> u64 {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return 0;
        }
        let (first_whole, end_whole) = (offset.div_ceil(PAGE), end / PAGE);
        let mut freed = 0;
        if first_whole < end_whole {
            let whole: Vec<u64> = self
                .pages
                .range(first_whole..end_whole)
                .map(|(&i, _)| i)
                .collect();
            for index in whole {
                self.pages.remove(&index);
                freed += 1;
            }
        }
        for (&index, page) in self.pages.range_mut(offset / PAGE..=(end - 1) / PAGE) {
            let page_start = index * PAGE;
            let from = offset.max(page_start) - page_start;
            let to = end.min(page_start + PAGE) - page_start;
            page[from as usize..to as usize].fill(0);
        }
        freed
    }

    /// Sets the size; bytes past a shrink are gone (a later grow reads zeros there).
    /// Returns the number of pages freed.
    pub fn truncate(&mut self, size: u64) -> u64 {
        if size < self.size {
            let first_dropped = size.div_ceil(PAGE);
            let dropped = self.pages.split_off(&first_dropped);
            if !size.is_multiple_of(PAGE) {
                if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
                    page[(size % PAGE) as usize..].fill(0);
                }
            }
            self.size = size;
            return dropped.len() as u64;
        }
        self.size = size;
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn punch_zeros_the_range_and_frees_whole_pages_only() {
        let mut d = SparseData::default();
        d.write(0, &[1u8; 4 * PAGE as usize]);
        assert_eq!(d.punch(100, 2 * PAGE), 1, "only page 1 is covered whole");
        assert_eq!(d.allocated_pages(), 3);
        let bytes = d.read(0, 4 * PAGE);
        assert!(bytes[..100].iter().all(|&b| b == 1));
        assert!(bytes[100..100 + 2 * PAGE as usize].iter().all(|&b| b == 0));
        assert!(bytes[100 + 2 * PAGE as usize..].iter().all(|&b| b == 1));
        assert_eq!(d.size(), 4 * PAGE);
        assert_eq!(d.punch(3 * PAGE, u64::MAX), 1, "past the end: to the end");
        assert_eq!(d.size(), 4 * PAGE);
        assert_eq!(d.punch(9 * PAGE, 1), 0);
    }

    use super::*;

    #[test]
    fn write_then_read_returns_same_bytes_across_pages() {
        let mut d = SparseData::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        d.write(100, &data);
        assert_eq!(d.size(), 10_100);
        assert_eq!(d.read(100, 10_000), data);
        assert_eq!(d.read(0, 100), vec![0; 100]);
    }

    #[test]
    fn holes_read_as_zeros_and_take_no_pages() {
        let mut d = SparseData::default();
        d.write(1 << 40, b"end");
        assert_eq!(d.size(), (1 << 40) + 3);
        assert_eq!(d.allocated_pages(), 1);
        assert_eq!(d.read(1 << 30, 8192), vec![0; 8192]);
        assert_eq!(d.read((1 << 40) - 2, 10), b"\0\0end".to_vec());
    }

    #[test]
    fn read_past_end_is_short_or_empty() {
        let mut d = SparseData::default();
        d.write(0, b"hello");
        assert_eq!(d.read(3, 100), b"lo".to_vec());
        assert!(d.read(5, 10).is_empty());
        assert!(d.read(u64::MAX - 1, 10).is_empty());
    }

    #[test]
    fn shrink_then_grow_reads_zeros_where_data_was() {
        let mut d = SparseData::default();
        d.write(0, &[7u8; 9000]);
        assert_eq!(d.truncate(5000), 1);
        assert_eq!(d.size(), 5000);
        d.truncate(9000);
        assert_eq!(d.read(0, 5000), vec![7; 5000]);
        assert_eq!(d.read(5000, 4000), vec![0; 4000]);
    }

    #[test]
    fn pages_needed_counts_only_missing_pages() {
        let mut d = SparseData::default();
        d.write(0, &[1u8; 10]);
        assert_eq!(d.pages_needed(0, 10), 0);
        assert_eq!(d.pages_needed(4000, 200), 1);
        assert_eq!(d.pages_needed(PAGE * 10, 0), 0);
    }
}
