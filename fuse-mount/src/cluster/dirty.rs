//! Writes buffered for one file until they are flushed: non-overlapping runs of bytes,
//! merged when they touch, newer bytes replacing older ones. Flushing packs every run
//! into as few chunks as possible, so many small writes become one chunk, not one chunk
//! each. Pure data structure.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Dirty {
    /// Offset -> bytes; runs never overlap or touch.
    runs: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

/// A run of file bytes placed into a packed chunk: `len` file bytes at `offset` are at
/// `chunk_offset` in the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub offset: u64,
    pub len: u64,
    pub chunk_offset: u64,
}

/// One chunk's worth of buffered bytes and where each run went.
#[derive(Debug, PartialEq, Eq)]
pub struct PackedChunk {
    pub data: Vec<u8>,
    pub runs: Vec<Placed>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Buffered bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// End of the last buffered byte (0 if none).
    pub fn end(&self) -> u64 {
        self.runs
            .last_key_value()
            .map_or(0, |(o, d)| o + d.len() as u64)
    }

    /// Buffers `data` at `offset`, replacing what it overlaps and merging with runs it
    /// touches. The run that reaches `offset` grows in place, so a sequential writer's
    /// appends cost their own length (amortised), not the run's: a 16 MiB buffer filled
    /// by 128 KiB writes copies 16 MiB, not a gigabyte.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        use std::ops::Bound::{Excluded, Included};
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // The run this write lands in or extends: it starts at or before `offset` and
        // reaches it.
        let base = self
            .runs
            .range(..=offset)
            .next_back()
            .filter(|(o, d)| *o + d.len() as u64 >= offset)
            .map(|(o, _)| *o);
        let (start, mut buf) = match base {
            Some(o) => {
                let d = self.runs.remove(&o).expect("found above");
                self.bytes -= d.len();
                (o, d)
            }
            None => (offset, Vec::with_capacity(data.len())),
        };
        let at = (offset - start) as usize;
        let inside = buf.len().saturating_sub(at).min(data.len());
        buf[at..at + inside].copy_from_slice(&data[..inside]);
        buf.extend_from_slice(&data[inside..]);
        // Later runs the write overlaps or touches: newer bytes win, a tail past `end`
        // is kept.
        let later: Vec<u64> = self
            .runs
            .range((Excluded(offset), Included(end)))
            .map(|(o, _)| *o)
            .collect();
        for o in later {
            let d = self.runs.remove(&o).expect("listed above");
            self.bytes -= d.len();
            let kept_from = (end - o) as usize;
            if kept_from < d.len() {
                buf.extend_from_slice(&d[kept_from..]);
            }
        }
        self.bytes += buf.len();
        self.runs.insert(start, buf);
    }

    /// Copies buffered bytes over `buf`, which holds the file from `offset`.
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        for (o, d) in self.runs.range(..end) {
            let run_end = o + d.len() as u64;
            if run_end <= offset {
                continue;
            }
            let from = offset.max(*o);
            let to = end.min(run_end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&d[(from - o) as usize..(to - o) as usize]);
        }
    }

    /// Takes every buffered run out, packed into chunks of at most `chunk_size` bytes.
    pub fn take_packed(&mut self, chunk_size: usize) -> Vec<PackedChunk> {
        let mut chunks: Vec<PackedChunk> = Vec::new();
        for (offset, data) in std::mem::take(&mut self.runs) {
            let mut done = 0usize;
            while done < data.len() {
                let need_new = chunks.last().is_none_or(|c| c.data.len() >= chunk_size);
                if need_new {
                    chunks.push(PackedChunk {
                        data: Vec::with_capacity(chunk_size.min(self.bytes)),
                        runs: Vec::new(),
                    });
                }
                let chunk = chunks.last_mut().expect("pushed above");
                let room = chunk_size - chunk.data.len();
                let step = room.min(data.len() - done);
                chunk.runs.push(Placed {
                    offset: offset + done as u64,
                    len: step as u64,
                    chunk_offset: chunk.data.len() as u64,
                });
                chunk.data.extend_from_slice(&data[done..done + step]);
                done += step;
            }
        }
        self.bytes = 0;
        chunks
    }

    /// Takes every buffered run out as it is: (offset, bytes) in offset order.
    pub fn take_runs(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.bytes = 0;
        std::mem::take(&mut self.runs).into_iter().collect()
    }

    /// Puts runs taken by [`Dirty::take_runs`] back (a flush that failed), under anything
    /// written since.
    pub fn restore_runs(&mut self, runs: Vec<(u64, Vec<u8>)>) {
        let newer = std::mem::take(&mut self.runs);
        self.bytes = 0;
        for (o, d) in runs.into_iter().chain(newer) {
            self.write(o, &d);
        }
    }

    /// Puts runs back (a flush that failed), under anything written since.
    pub fn restore(&mut self, packed: Vec<PackedChunk>) {
        let newer = std::mem::take(&mut self.runs);
        self.bytes = 0;
        for chunk in packed {
            for r in chunk.runs {
                let at = r.chunk_offset as usize;
                self.write(r.offset, &chunk.data[at..at + r.len as usize]);
            }
        }
        for (o, d) in newer {
            self.write(o, &d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(d: &Dirty, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![b'.'; len];
        d.overlay(offset, &mut buf);
        buf
    }

    #[test]
    fn writes_merge_and_newer_bytes_win() {
        let mut d = Dirty::default();
        d.write(2, b"abc");
        d.write(5, b"de");
        d.write(0, b"XY");
        d.write(3, b"Z");
        assert_eq!(read(&d, 0, 8), b"XYaZcde.");
        assert_eq!(d.bytes(), 7);
        assert_eq!(d.end(), 7);
        d.write(10, b"q");
        assert_eq!(read(&d, 6, 6), b"e...q.");
        assert_eq!(d.bytes(), 8);
    }

    proptest::proptest! {
        /// Whatever the writes, the buffer reads back as a plain byte array written the
        /// same way, its runs never overlap or touch, and its byte count is theirs.
        #[test]
        fn writes_read_back_as_a_plain_array_would(
            writes in proptest::collection::vec((0u64..200, 1usize..40, 0u8..255), 1..40)
        ) {
            let mut d = Dirty::default();
            let mut model = vec![None::<u8>; 260];
            for (offset, len, byte) in writes {
                d.write(offset, &vec![byte; len]);
                for slot in &mut model[offset as usize..offset as usize + len] {
                    *slot = Some(byte);
                }
            }
            let got = read(&d, 0, 260);
            let want: Vec<u8> = model.iter().map(|b| b.unwrap_or(b'.')).collect();
            proptest::prop_assert_eq!(got, want);
            let mut last_end = None;
            for (o, r) in &d.runs {
                proptest::prop_assert!(!r.is_empty());
                proptest::prop_assert!(last_end.is_none_or(|e| e < *o), "runs touch or overlap");
                last_end = Some(o + r.len() as u64);
            }
            proptest::prop_assert_eq!(d.bytes(), model.iter().flatten().count());
        }
    }

    #[test]
    fn sequential_appends_grow_one_run_in_place() {
        let mut d = Dirty::default();
        for i in 0..64u64 {
            d.write(i * 1024, &[i as u8; 1024]);
        }
        assert_eq!(d.runs.len(), 1);
        assert_eq!(d.bytes(), 64 * 1024);
        assert_eq!(read(&d, 63 * 1024, 2), vec![63, 63]);
    }

    #[test]
    fn small_scattered_writes_pack_into_one_chunk() {
        let mut d = Dirty::default();
        for i in 0..100u64 {
            d.write(i * 1000, &[i as u8; 10]);
        }
        let packed = d.take_packed(4096);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].runs.len(), 100);
        assert_eq!(packed[0].data.len(), 1000);
        assert!(d.is_empty());
        assert_eq!(d.bytes(), 0);
    }

    #[test]
    fn a_long_run_is_split_at_chunk_size() {
        let mut d = Dirty::default();
        d.write(5, &[7u8; 10_000]);
        let packed = d.take_packed(4096);
        let sizes: Vec<usize> = packed.iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, vec![4096, 4096, 1808]);
        assert_eq!(packed[1].runs[0].offset, 5 + 4096);
        assert_eq!(packed[1].runs[0].chunk_offset, 0);
    }

    #[test]
    fn restore_keeps_newer_writes_on_top() {
        let mut d = Dirty::default();
        d.write(0, b"old!");
        let packed = d.take_packed(1024);
        d.write(1, b"N");
        d.restore(packed);
        assert_eq!(read(&d, 0, 4), b"oNd!");
    }

    #[test]
    fn runs_taken_as_they_are_go_back_under_newer_writes() {
        let mut d = Dirty::default();
        d.write(0, b"old!");
        d.write(10, b"xy");
        let runs = d.take_runs();
        assert_eq!(runs, vec![(0, b"old!".to_vec()), (10, b"xy".to_vec())]);
        assert!(d.is_empty());
        assert_eq!(d.bytes(), 0);
        d.write(1, b"N");
        d.restore_runs(runs);
        assert_eq!(read(&d, 0, 12), b"oNd!......xy");
        assert_eq!(d.bytes(), 6);
    }
}
