//! Page-aligned byte buffers for `O_DIRECT` writes, which need the memory address, the
//! file offset and the length all to be multiples of the device's logical block size
//! (4096 covers every common device). An [`AlignedBuf`] holds a file's exact bytes in
//! whole pages, zero-padded; the IO engine gets them as [`Bytes`] (`Bytes::from_owner`),
//! so the engines need no second buffer type.
//!
//! Freed buffers go back to a small bounded pool: a fresh multi-MiB allocation is an
//! `mmap` whose every page faults in zeroed and whose `munmap` flushes TLBs, which the
//! PUT profile showed (BENCHMARKS.md).

use std::mem::MaybeUninit;
use std::sync::Mutex;

use bytes::Bytes;

/// Alignment and length granule of a direct write.
pub const DIRECT_ALIGN: usize = 4096;

/// One aligned page. `repr(C)` over a byte array: no padding, every bit pattern valid.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; DIRECT_ALIGN]);

/// At most this many bytes of freed buffers are kept for reuse.
const POOL_BYTES: usize = 32 << 20;
/// Buffers smaller than this are not pooled (the allocator reuses those well).
const POOL_MIN_PAGES: usize = 16;

/// Freed page vectors (empty, with capacity), newest last.
static POOL: Mutex<Vec<Vec<Page>>> = Mutex::new(Vec::new());

/// An empty vector with room for `count` pages: a pooled one when one fits without
/// wasting more than half of it, else a new one.
fn take_pages(count: usize) -> Vec<Page> {
    if count >= POOL_MIN_PAGES {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        let fits = |v: &Vec<Page>| v.capacity() >= count && v.capacity() <= 2 * count;
        if let Some(i) = pool.iter().rposition(fits) {
            return pool.swap_remove(i);
        }
    }
    Vec::with_capacity(count)
}

fn give_back(mut pages: Vec<Page>) {
    if pages.capacity() < POOL_MIN_PAGES {
        return;
    }
    pages.clear();
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pooled: usize = pool.iter().map(|v| v.capacity() * DIRECT_ALIGN).sum();
    if pooled + pages.capacity() * DIRECT_ALIGN <= POOL_BYTES {
        pool.push(pages);
    }
}

/// Owns whole pages; derefs to their bytes. Returns them to the pool when dropped.
struct Pages(Vec<Page>);

impl Drop for Pages {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

impl AsRef<[u8]> for Pages {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `Page` is a `repr(C)` byte array of exactly DIRECT_ALIGN bytes, so the
        // initialised pages are one contiguous run of `len * DIRECT_ALIGN` bytes.
        unsafe {
            std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * DIRECT_ALIGN)
        }
    }
}

impl AsMut<[u8]> for Pages {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`, through the exclusive borrow of the vector.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.0.as_mut_ptr().cast::<u8>(),
                self.0.len() * DIRECT_ALIGN,
            )
        }
    }
}

/// A file's bytes (`len` of them) at the start of zero-padded, page-aligned memory.
pub struct AlignedBuf {
    pages: Pages,
    len: usize,
}

impl AlignedBuf {
    /// `gap` zero bytes followed by `parts`, written in one pass (no zeroing first).
    pub fn with_gap_then(gap: usize, parts: &[Bytes]) -> AlignedBuf {
        let len = gap + parts.iter().map(Bytes::len).sum::<usize>();
        let count = len.div_ceil(DIRECT_ALIGN);
        let mut pages = take_pages(count);
        let spare: &mut [MaybeUninit<Page>] = &mut pages.spare_capacity_mut()[..count];
        let base = spare.as_mut_ptr().cast::<u8>();
        // SAFETY: `base` points to `count * DIRECT_ALIGN` writable bytes of capacity. The
        // writes below cover [0, gap), then each part, then [len, count * DIRECT_ALIGN):
        // every byte exactly once, within bounds (len <= count * DIRECT_ALIGN), and the
        // sources (`parts`) do not overlap the fresh allocation. After them all `count`
        // pages are initialised, which is what `set_len` requires.
        unsafe {
            std::ptr::write_bytes(base, 0, gap);
            let mut at = gap;
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), base.add(at), part.len());
                at += part.len();
            }
            std::ptr::write_bytes(base.add(len), 0, count * DIRECT_ALIGN - len);
            pages.set_len(count);
        }
        AlignedBuf {
            pages: Pages(pages),
            len,
        }
    }

    /// `parts` concatenated.
    pub fn from_parts(parts: &[Bytes]) -> AlignedBuf {
        AlignedBuf::with_gap_then(0, parts)
    }

    /// The exact bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.pages.as_ref()[..self.len]
    }

    /// The exact bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.pages.as_mut()[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole pages (length a multiple of [`DIRECT_ALIGN`]) and the exact length.
    pub fn into_padded(self) -> (Bytes, usize) {
        (Bytes::from_owner(self.pages), self.len)
    }

    /// Just the exact bytes, for a buffered write.
    pub fn into_exact(self) -> Bytes {
        let len = self.len;
        Bytes::from_owner(self.pages).slice(..len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_gap_aligned_and_zero_padded() {
        let parts = [Bytes::from_static(b"head"), Bytes::from(vec![7u8; 5000])];
        let buf = AlignedBuf::with_gap_then(3, &parts);
        assert_eq!(buf.len(), 5007);
        assert_eq!(&buf.as_slice()[..7], b"\0\0\0head");
        let (padded, len) = buf.into_padded();
        assert_eq!((padded.len(), len), (2 * DIRECT_ALIGN, 5007));
        assert_eq!(padded.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert!(padded[7..5007].iter().all(|&b| b == 7));
        assert!(padded[5007..].iter().all(|&b| b == 0));
    }

    #[test]
    fn exact_multiples_get_no_padding_and_empty_input_no_pages() {
        let buf = AlignedBuf::from_parts(&[Bytes::from(vec![1u8; DIRECT_ALIGN])]);
        let (padded, len) = buf.into_padded();
        assert_eq!((padded.len(), len), (DIRECT_ALIGN, DIRECT_ALIGN));
        let buf = AlignedBuf::from_parts(&[]);
        assert!(buf.is_empty());
        assert_eq!(buf.into_padded().0.len(), 0);
    }

    #[test]
    fn freed_buffers_are_reused_and_come_back_fully_rewritten() {
        let big = vec![Bytes::from(vec![0xAAu8; 20 * DIRECT_ALIGN])];
        drop(AlignedBuf::from_parts(&big));
        // Other tests run in parallel and may take the pooled buffer; whichever buffer
        // this one gets, its gap and padding are zero and its data is the new data.
        let small = Bytes::from(vec![0x55u8; 19 * DIRECT_ALIGN + 5]);
        let (again, len) = AlignedBuf::with_gap_then(7, &[small]).into_padded();
        assert!(again[..7].iter().all(|&b| b == 0));
        assert!(again[7..len].iter().all(|&b| b == 0x55));
        assert!(again[len..].iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_through_the_mutable_view_are_kept() {
        let mut buf = AlignedBuf::with_gap_then(2, &[Bytes::from_static(b"xy")]);
        buf.as_mut_slice()[..2].copy_from_slice(b"ab");
        assert_eq!(&buf.into_exact()[..], b"abxy");
    }
}
