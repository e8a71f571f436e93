//! `fallocate` and `copy_file_range` through real FUSE mounts of the memory backend and
//! of a real cluster, with the system calls and with the tools that use them
//! (`fallocate(1)`, `cp`). Mode 0 and `FALLOC_FL_KEEP_SIZE` are supported (the size is
//! guaranteed, space is not reserved: storage is allocated when bytes are written), and
//! so is punching holes; every other mode is `EOPNOTSUPP`. `copy_file_range` copies through the mount's own
//! reads and writes.

mod common;

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{check, check_size, must_errno, Mounted};

on_both_backends!(
    fallocate_mode_0_extends_and_keep_size_does_not,
    fallocate_refuses_other_modes_and_more_than_the_free_space,
    fallocate_punches_holes_that_read_as_zeros,
    fallocate_tool_allocates_punches_and_reports_unsupported_modes,
    copy_file_range_and_cp_copy_bytes_exactly,
);

const MIB: u64 = 1 << 20;

fn fallocate(f: &File, mode: i32, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: a valid descriptor; plain syscall.
    check(unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) }).map(drop)
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path:?}: {e}"))
}

/// Deterministic bytes that differ at every offset of interest.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed)) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Mode 0 grows a file to `offset + len` (before: `EOPNOTSUPP`), the new bytes read as
/// zeros and the old ones stay; inside the file it changes nothing. `KEEP_SIZE` leaves
/// the size alone. Both are seen through a fresh open (another descriptor).
fn fallocate_mode_0_extends_and_keep_size_does_not(m: &impl Mounted) {
    let path = m.p("f");
    fs::write(&path, b"head").expect("write");
    let f = open_rw(&path);
    fallocate(&f, 0, 0, 10 * MIB).expect("fallocate mode 0");
    assert_eq!(f.metadata().expect("fstat").len(), 10 * MIB);
    fallocate(&f, 0, MIB, 4096).expect("fallocate inside the file");
    assert_eq!(f.metadata().expect("fstat").len(), 10 * MIB);
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 10 * MIB, 30 * MIB).expect("keep size");
    assert_eq!(f.metadata().expect("fstat").len(), 10 * MIB);
    fallocate(&f, 0, 12 * MIB + 5, 7).expect("fallocate past the end");
    drop(f);
    let data = fs::read(&path).expect("read through a new open");
    assert_eq!(data.len() as u64, 12 * MIB + 12);
    assert_eq!(&data[..4], b"head");
    assert!(
        data[4..].iter().all(|&b| b == 0),
        "allocated bytes read as zeros"
    );
    // Writes into the allocated range land where they are written.
    let f = open_rw(&path);
    f.write_all_at(b"mid", 6 * MIB)
        .expect("write into the range");
    drop(f);
    let mut mid = [0u8; 5];
    File::open(&path)
        .expect("open")
        .read_exact_at(&mut mid, 6 * MIB - 1)
        .expect("read");
    assert_eq!(&mid, b"\0mid\0");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 12 * MIB + 12);
}

/// Zeroing, collapsing and inserting ranges are `EOPNOTSUPP` and change nothing, and refusing them does not stop mode 0 from working (the kernel gives up on
/// `fallocate` for good only after `ENOSYS`). A request for more than the free space is
/// `ENOSPC`; one past the largest file size `EFBIG`; a read-only descriptor `EBADF`.
fn fallocate_refuses_other_modes_and_more_than_the_free_space(m: &impl Mounted) {
    let path = m.p("f");
    let data = pattern(100_000, 1);
    fs::write(&path, &data).expect("write");
    let f = open_rw(&path);
    for (name, mode) in [
        ("punch hole without keep size", libc::FALLOC_FL_PUNCH_HOLE),
        ("zero range", libc::FALLOC_FL_ZERO_RANGE),
        (
            "zero range, keep size",
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        ),
        ("collapse range", libc::FALLOC_FL_COLLAPSE_RANGE),
        ("insert range", libc::FALLOC_FL_INSERT_RANGE),
        ("unshare range", libc::FALLOC_FL_UNSHARE_RANGE),
    ] {
        assert_eq!(
            must_errno(fallocate(&f, mode, 0, 4096)),
            libc::EOPNOTSUPP,
            "{name}"
        );
    }
    let petabyte = 1u64 << 50;
    assert_eq!(must_errno(fallocate(&f, 0, 0, petabyte)), libc::ENOSPC);
    assert_eq!(
        must_errno(fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, petabyte)),
        libc::ENOSPC
    );
    assert_eq!(
        must_errno(fallocate(&f, 0, i64::MAX as u64 - 10, 100)),
        libc::EFBIG
    );
    fallocate(&f, 0, 0, 200_000).expect("mode 0 still works");
    drop(f);
    let after = fs::read(&path).expect("read");
    assert_eq!(after.len(), 200_000);
    assert_eq!(&after[..100_000], &data[..], "nothing was punched or moved");
    let ro = File::open(&path).expect("open read-only");
    assert_eq!(must_errno(fallocate(&ro, 0, 0, 300_000)), libc::EBADF);
}

/// `PUNCH_HOLE | KEEP_SIZE` at unaligned offsets, over bytes still buffered by this
/// descriptor too: the range reads as zeros (through this descriptor and a new open),
/// every other byte and the size stay; a range running past the end is cut at it.
fn fallocate_punches_holes_that_read_as_zeros(m: &impl Mounted) {
    const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let path = m.p("f");
    let mut data = pattern(300_000, 3);
    fs::write(&path, &data[..200_000]).expect("write");
    let f = open_rw(&path);
    f.write_all_at(&data[200_000..], 200_000)
        .expect("buffered write");
    fallocate(&f, PUNCH, 5_001, 20_000).expect("punch inside");
    fallocate(&f, PUNCH, 190_000, 20_000).expect("punch over the buffered bytes");
    fallocate(&f, PUNCH, 299_000, 50_000).expect("punch past the end");
    data[5_001..25_001].fill(0);
    data[190_000..210_000].fill(0);
    data[299_000..].fill(0);
    let mut seen = vec![0u8; data.len()];
    f.read_exact_at(&mut seen, 0).expect("read");
    assert!(
        seen == data,
        "the punched ranges read as zeros, the rest stays"
    );
    assert_eq!(f.metadata().expect("fstat").len(), 300_000);
    drop(f);
    assert!(fs::read(&path).expect("read again") == data, "after close");
}

/// The util-linux tool: `fallocate -l` and `fallocate -n -l` succeed with the sizes they
/// promise; `fallocate -p` punches a hole; `fallocate -z` (zero range) fails and leaves
/// the bytes alone.
fn fallocate_tool_allocates_punches_and_reports_unsupported_modes(m: &impl Mounted) {
    let run = |args: &[&str], file: &str| {
        Command::new("fallocate")
            .args(args)
            .arg(m.p(file))
            .output()
            .expect("run fallocate(1)")
    };
    let out = run(&["-l", "10M"], "g");
    assert!(out.status.success(), "fallocate -l 10M: {out:?}");
    assert_eq!(fs::metadata(m.p("g")).expect("stat").len(), 10 * MIB);
    fs::write(m.p("f"), b"some bytes").expect("write");
    let out = run(&["-n", "-l", "10M"], "f");
    assert!(out.status.success(), "fallocate -n -l 10M: {out:?}");
    assert_eq!(fs::metadata(m.p("f")).expect("stat").len(), 10);
    let out = run(&["-z", "-o", "0", "-l", "4"], "f");
    assert!(!out.status.success(), "fallocate -z must fail: {out:?}");
    assert_eq!(fs::read(m.p("f")).expect("read"), b"some bytes");
    let out = run(&["-p", "-o", "2", "-l", "3"], "f");
    assert!(out.status.success(), "fallocate -p: {out:?}");
    assert_eq!(fs::read(m.p("f")).expect("read"), b"so\0\0\0bytes");
}

/// `copy_file_range(2)` copies exactly the range asked, between offsets that are not
/// aligned, into a file holding other bytes; `cp --reflink=never` (which uses it) makes
/// an identical copy, also of a sparse file.
fn copy_file_range_and_cp_copy_bytes_exactly(m: &impl Mounted) {
    let src = pattern(3 * MIB as usize + 1234, 7);
    fs::write(m.p("src"), &src).expect("write src");
    fs::write(m.p("dst"), pattern(5000, 9)).expect("write dst");
    let (input, output) = (File::open(m.p("src")).expect("open"), open_rw(&m.p("dst")));
    let (mut off_in, mut off_out) = (4097i64, 123i64);
    let mut left = 2 * MIB as usize + 77;
    while left > 0 {
        // SAFETY: valid descriptors and offset pointers; plain syscall.
        let n = check_size(unsafe {
            libc::copy_file_range(
                input.as_raw_fd(),
                &mut off_in,
                output.as_raw_fd(),
                &mut off_out,
                left,
                0,
            )
        })
        .expect("copy_file_range");
        assert!(n > 0, "copy_file_range made no progress");
        left -= n;
    }
    drop((input, output));
    let mut expected = pattern(5000, 9);
    expected.truncate(123);
    expected.extend_from_slice(&src[4097..4097 + 2 * MIB as usize + 77]);
    assert_eq!(fs::read(m.p("dst")).expect("read dst"), expected);

    let sparse = m.p("sparse");
    let f = open_rw(&sparse);
    f.write_all_at(b"start", 0).expect("write");
    f.write_all_at(b"end", 9 * MIB).expect("write far");
    drop(f);
    for (from, to) in [("src", "copy"), ("sparse", "sparse-copy")] {
        let out = Command::new("cp")
            .arg("--reflink=never")
            .arg(m.p(from))
            .arg(m.p(to))
            .output()
            .expect("run cp");
        assert!(out.status.success(), "cp {from}: {out:?}");
        assert!(
            fs::read(m.p(from)).expect("read") == fs::read(m.p(to)).expect("read"),
            "{to} differs from {from}"
        );
    }
}
