//! The on-disk shard format, as pure functions (no IO): a fixed header, a table of
//! per-block blake3 hashes, then the data.
//!
//! ```text
//! offset 0   magic b"CAIRNSH1"                 8 bytes
//!        8   format version (u32 LE)            4
//!       12   data length (u64 LE)               8
//!       20   block size (u32 LE) = 64 KiB       4
//!       24   blake3 of the whole data          32
//!       56   first 8 bytes of blake3(bytes 0..56): the header's own checksum
//!       64   block table: blake3 of each data block, 32 bytes per block
//!   64+32n   data
//! ```
//!
//! A ranged read verifies only the blocks it touches ([`ReadPlan`]), so a 4 KiB read hashes
//! at most two 64 KiB blocks, never the whole shard. Knows nothing of files, gRPC or ids.

/// First bytes of every shard file.
pub const MAGIC: [u8; 8] = *b"CAIRNSH1";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the data blocks that each carry their own hash.
pub const BLOCK_SIZE: u32 = 64 * 1024;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Size of one block-table entry (a blake3 hash).
pub const HASH_LEN: usize = 32;

const CHECKSUM_AT: usize = 56;

/// Why a header (or the file it heads) cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("file is {len} bytes, shorter than a shard header")]
    TooShort { len: u64 },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported format version {found}")]
    BadVersion { found: u32 },
    #[error("header checksum mismatch")]
    BadHeaderChecksum,
    #[error("unsupported block size {found}")]
    BadBlockSize { found: u32 },
    #[error("header announces {data_len} data bytes ({expected} bytes of file) but the file has {actual}")]
    LengthMismatch {
        data_len: u64,
        expected: u64,
        actual: u64,
    },
}

/// A byte range that does not lie inside the shard's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("range {offset}+{len} is outside the shard's {data_len} bytes")]
pub struct RangeError {
    pub offset: u64,
    pub len: u64,
    pub data_len: u64,
}

/// A data block whose bytes do not match its table hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {block} does not match its hash")]
pub struct BlockMismatch {
    pub block: u64,
}

/// The parsed, validated fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub data_len: u64,
    pub block_size: u32,
    pub blake3: [u8; 32],
}

impl ShardHeader {
    /// Number of data blocks (the last one may be short).
    pub fn block_count(&self) -> u64 {
        self.data_len.div_ceil(u64::from(self.block_size))
    }

    /// File offset of the first data byte.
    pub fn data_offset(&self) -> u64 {
        prefix_len(self.data_len)
    }

    /// Size of the whole file this header describes.
    pub fn file_len(&self) -> u64 {
        self.data_offset() + self.data_len
    }

    /// The fixed header's bytes, checksum included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.data_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.block_size.to_le_bytes());
        out[24..56].copy_from_slice(&self.blake3);
        let check = header_checksum(&out);
        out[CHECKSUM_AT..].copy_from_slice(&check);
        out
    }

    /// Parses and validates a header read from a file of `file_len` bytes.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<ShardHeader, FormatError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(FormatError::TooShort {
                len: bytes.len() as u64,
            })?;
        if file_len < HEADER_LEN as u64 {
            return Err(FormatError::TooShort { len: file_len });
        }
        let magic: [u8; 8] = field(bytes, 0);
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic });
        }
        if header_checksum(bytes) != bytes[CHECKSUM_AT..] {
            return Err(FormatError::BadHeaderChecksum);
        }
        let version = u32::from_le_bytes(field(bytes, 8));
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion { found: version });
        }
        let block_size = u32::from_le_bytes(field(bytes, 20));
        if block_size != BLOCK_SIZE {
            return Err(FormatError::BadBlockSize { found: block_size });
        }
        let header = ShardHeader {
            data_len: u64::from_le_bytes(field(bytes, 12)),
            block_size,
            blake3: field(bytes, 24),
        };
        // A huge announced length must not overflow the arithmetic below.
        let expected = header
            .data_len
            .checked_add(HEADER_LEN as u64)
            .and_then(|n| n.checked_add(header.block_count().checked_mul(HASH_LEN as u64)?));
        if expected != Some(file_len) {
            return Err(FormatError::LengthMismatch {
                data_len: header.data_len,
                expected: expected.unwrap_or(u64::MAX),
                actual: file_len,
            });
        }
        Ok(header)
    }

    /// Which blocks cover `offset..offset+len` of the data and where to read them.
    /// `len == 0` means "to the end of the data".
    pub fn plan_read(&self, offset: u64, len: u64) -> Result<ReadPlan, RangeError> {
        let out_of_range = RangeError {
            offset,
            len,
            data_len: self.data_len,
        };
        if offset > self.data_len {
            return Err(out_of_range);
        }
        let len = if len == 0 {
            self.data_len - offset
        } else {
            len
        };
        let end = offset.checked_add(len).ok_or(out_of_range.clone())?;
        if end > self.data_len {
            return Err(out_of_range);
        }
        let bs = u64::from(self.block_size);
        if len == 0 {
            return Ok(ReadPlan {
                first_block: offset / bs,
                block_end: offset / bs,
                table_offset: HEADER_LEN as u64,
                table_len: 0,
                data_offset: self.data_offset(),
                data_len: 0,
                skip: 0,
                take: 0,
                block_size: self.block_size,
            });
        }
        let first_block = offset / bs;
        let block_end = end.div_ceil(bs);
        let span_start = first_block * bs;
        let span_end = (block_end * bs).min(self.data_len);
        Ok(ReadPlan {
            first_block,
            block_end,
            table_offset: HEADER_LEN as u64 + first_block * HASH_LEN as u64,
            table_len: (block_end - first_block) * HASH_LEN as u64,
            data_offset: self.data_offset() + span_start,
            data_len: span_end - span_start,
            skip: offset - span_start,
            take: len,
            block_size: self.block_size,
        })
    }
}

/// What to read from a shard file to serve one verified byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Index of the first block touched.
    pub first_block: u64,
    /// One past the last block touched.
    pub block_end: u64,
    /// File offset and length of the touched block-table entries.
    pub table_offset: u64,
    pub table_len: u64,
    /// File offset and length of the touched blocks' data.
    pub data_offset: u64,
    pub data_len: u64,
    /// Where the requested bytes start inside the data read, and how many there are.
    pub skip: u64,
    pub take: u64,
    block_size: u32,
}

impl ReadPlan {
    /// Checks every touched block of `data` (as read from `data_offset`) against `table`
    /// (as read from `table_offset`), then returns the requested bytes.
    pub fn verify<'a>(&self, table: &[u8], data: &'a [u8]) -> Result<&'a [u8], BlockMismatch> {
        let blocks = data.chunks(self.block_size as usize);
        let hashes = table.chunks(HASH_LEN);
        let expected_blocks = usize::try_from(self.block_end - self.first_block)
            .expect("a plan covers at most a shard's blocks, which fit in memory");
        if blocks.len() != expected_blocks || hashes.len() != expected_blocks {
            return Err(BlockMismatch {
                block: self.first_block,
            });
        }
        for (i, (block, hash)) in blocks.zip(hashes).enumerate() {
            if !verify_block(hash, block) {
                return Err(BlockMismatch {
                    block: self.first_block + i as u64,
                });
            }
        }
        let skip = usize::try_from(self.skip).expect("skip is below one block");
        let take = usize::try_from(self.take).expect("take is below the span read");
        data.get(skip..skip + take).ok_or(BlockMismatch {
            block: self.first_block,
        })
    }
}

/// Bytes before the data (header and block table) in the file of a `data_len`-byte shard.
pub fn prefix_len(data_len: u64) -> u64 {
    HEADER_LEN as u64 + data_len.div_ceil(u64::from(BLOCK_SIZE)) * HASH_LEN as u64
}

/// Header plus block table for `data`: everything that precedes the data in the file.
pub struct BuiltShard {
    pub header: ShardHeader,
    /// Encoded header followed by the block table.
    pub prefix: Vec<u8>,
}

/// Hashes `data` (whole and per block) and lays out the bytes that precede it on disk.
pub fn build(data: &[u8]) -> BuiltShard {
    let header = ShardHeader {
        data_len: data.len() as u64,
        block_size: BLOCK_SIZE,
        blake3: *blake3::hash(data).as_bytes(),
    };
    let mut prefix = Vec::with_capacity(
        usize::try_from(header.data_offset()).expect("a prefix of an in-memory shard fits"),
    );
    prefix.extend_from_slice(&header.encode());
    for block in data.chunks(BLOCK_SIZE as usize) {
        prefix.extend_from_slice(blake3::hash(block).as_bytes());
    }
    BuiltShard { header, prefix }
}

/// True when `block` hashes to the 32-byte table entry `hash`.
pub fn verify_block(hash: &[u8], block: &[u8]) -> bool {
    hash.len() == HASH_LEN && blake3::hash(block).as_bytes() == hash
}

fn header_checksum(bytes: &[u8; HEADER_LEN]) -> [u8; 8] {
    let full = blake3::hash(&bytes[..CHECKSUM_AT]);
    field(full.as_bytes(), 0)
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N]
        .try_into()
        .expect("header fields lie inside the fixed-size header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn file_of(data: &[u8]) -> Vec<u8> {
        let built = build(data);
        let mut file = built.prefix;
        file.extend_from_slice(data);
        file
    }

    /// Serves a range from a whole in-memory file the way the store does from disk.
    fn read_range(file: &[u8], offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let header = ShardHeader::parse(&file[..HEADER_LEN], file.len() as u64)
            .map_err(|e| e.to_string())?;
        let plan = header.plan_read(offset, len).map_err(|e| e.to_string())?;
        let table = &file[plan.table_offset as usize..][..plan.table_len as usize];
        let data = &file[plan.data_offset as usize..][..plan.data_len as usize];
        plan.verify(table, data)
            .map(<[u8]>::to_vec)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn built_file_parses_and_reads_back_whole() {
        let data = sample(300_000);
        let file = file_of(&data);
        let header = ShardHeader::parse(&file, file.len() as u64).unwrap();
        assert_eq!(header.data_len, 300_000);
        assert_eq!(header.block_count(), 5);
        assert_eq!(&header.blake3, blake3::hash(&data).as_bytes());
        assert_eq!(header.file_len(), file.len() as u64);
        assert_eq!(read_range(&file, 0, 0).unwrap(), data);
    }

    #[test]
    fn empty_shard_is_valid() {
        let file = file_of(&[]);
        assert_eq!(file.len(), HEADER_LEN);
        assert_eq!(read_range(&file, 0, 0).unwrap(), Vec::<u8>::new());
        assert!(read_range(&file, 1, 0).is_err());
    }

    #[test]
    fn ranged_read_verifies_only_touched_blocks() {
        let data = sample(10 * BLOCK_SIZE as usize);
        let header = build(&data).header;
        // 4 KiB inside block 3.
        let plan = header.plan_read(3 * 65536 + 100, 4096).unwrap();
        assert_eq!((plan.first_block, plan.block_end), (3, 4));
        assert_eq!(plan.data_len, 65536);
        assert_eq!(plan.table_len, 32);
        // 4 KiB straddling blocks 4 and 5.
        let plan = header.plan_read(5 * 65536 - 10, 4096).unwrap();
        assert_eq!((plan.first_block, plan.block_end), (4, 6));
        assert_eq!(plan.data_len, 2 * 65536);
        // A damaged block outside the range does not matter to that range.
        let mut file = file_of(&data);
        let data_at = header.data_offset() as usize;
        file[data_at + 9 * 65536 + 5] ^= 1;
        assert_eq!(
            read_range(&file, 3 * 65536 + 100, 4096).unwrap(),
            &data[3 * 65536 + 100..][..4096]
        );
        assert!(read_range(&file, 9 * 65536, 10).is_err());
    }

    #[test]
    fn ranges_match_the_data_at_every_boundary() {
        let data = sample(3 * BLOCK_SIZE as usize + 17);
        let file = file_of(&data);
        for (offset, len) in [
            (0u64, 1u64),
            (65535, 2),
            (65536, 65536),
            (1, 3 * 65536 + 16),
            (3 * 65536 + 16, 1),
            (3 * 65536 + 17, 0),
            (100, 0),
        ] {
            let want_len = if len == 0 {
                data.len() as u64 - offset
            } else {
                len
            };
            assert_eq!(
                read_range(&file, offset, len).unwrap(),
                &data[offset as usize..][..want_len as usize],
                "range {offset}+{len}"
            );
        }
    }

    #[test]
    fn range_past_the_end_is_refused() {
        let header = build(&sample(1000)).header;
        assert!(header.plan_read(1000, 0).is_ok());
        assert!(header.plan_read(1001, 0).is_err());
        assert!(header.plan_read(999, 2).is_err());
        assert!(header.plan_read(u64::MAX, 2).is_err());
        assert!(header.plan_read(1, u64::MAX).is_err());
    }

    #[test]
    fn flipped_data_byte_is_detected() {
        let data = sample(200_000);
        let mut file = file_of(&data);
        let at = build(&data).header.data_offset() as usize + 150_000;
        file[at] ^= 0x40;
        let err = read_range(&file, 0, 0).unwrap_err();
        assert!(err.contains("block 2"), "{err}");
    }

    #[test]
    fn flipped_table_byte_is_detected() {
        let data = sample(100_000);
        let mut file = file_of(&data);
        file[HEADER_LEN + 33] ^= 1;
        assert!(read_range(&file, 70_000, 10).is_err());
        assert!(read_range(&file, 10, 10).is_ok());
    }

    #[test]
    fn corrupted_headers_get_typed_errors() {
        let data = sample(1000);
        let file = file_of(&data);
        let len = file.len() as u64;

        let mut bad = file.clone();
        bad[0] = b'X';
        assert!(matches!(
            ShardHeader::parse(&bad, len),
            Err(FormatError::BadMagic { .. })
        ));

        // Any flipped bit in the checksummed fields is caught by the checksum.
        for at in [9, 13, 21, 30, 55, 60] {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert_eq!(
                ShardHeader::parse(&bad, len),
                Err(FormatError::BadHeaderChecksum),
                "byte {at}"
            );
        }

        // A well-formed header of another version (checksum recomputed).
        let mut bad: [u8; HEADER_LEN] = file[..HEADER_LEN].try_into().unwrap();
        bad[8..12].copy_from_slice(&2u32.to_le_bytes());
        let check = header_checksum(&bad);
        bad[CHECKSUM_AT..].copy_from_slice(&check);
        assert_eq!(
            ShardHeader::parse(&bad, len),
            Err(FormatError::BadVersion { found: 2 })
        );

        assert!(matches!(
            ShardHeader::parse(&file, len - 1),
            Err(FormatError::LengthMismatch { .. })
        ));
        assert!(matches!(
            ShardHeader::parse(&file, len + 1),
            Err(FormatError::LengthMismatch { .. })
        ));
        assert!(matches!(
            ShardHeader::parse(&file[..10], 10),
            Err(FormatError::TooShort { .. })
        ));
    }

    #[test]
    fn absurd_length_does_not_overflow() {
        let header = ShardHeader {
            data_len: u64::MAX - 10,
            block_size: BLOCK_SIZE,
            blake3: [0; 32],
        };
        let bytes = header.encode();
        assert!(matches!(
            ShardHeader::parse(&bytes, 1 << 20),
            Err(FormatError::LengthMismatch { .. })
        ));
    }
}

/// Arbitrary and mutated bytes from a disk never panic the parser or the read planner.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_headers_are_rejected_or_consistent(bytes in prop::collection::vec(any::<u8>(), 0..200), file_len in any::<u64>()) {
            if let Ok(header) = ShardHeader::parse(&bytes, file_len) {
                prop_assert_eq!(header.file_len(), file_len);
            }
        }

        #[test]
        fn mutated_valid_headers_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..300_000),
            flips in prop::collection::vec((0usize..HEADER_LEN, any::<u8>()), 1..4),
            offset in any::<u64>(),
            len in any::<u64>(),
        ) {
            let built = build(&data);
            let mut header = built.header.encode();
            for (at, xor) in flips {
                header[at] ^= xor;
            }
            let file_len = built.header.file_len();
            if let Ok(parsed) = ShardHeader::parse(&header, file_len) {
                // A header that still parses plans reads without overflow.
                let _ = parsed.plan_read(offset % (parsed.data_len + 2), len % (parsed.data_len + 2));
            }
            let plan = built.header.plan_read(offset, len);
            if let Ok(plan) = plan {
                prop_assert!(plan.data_len <= file_len);
            }
        }
    }
}
