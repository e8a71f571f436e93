//! Two mounts that coordinate with POSIX locks (as databases and mail stores do) see each
//! other's writes under the lock: a mount publishes its buffered data before it unlocks,
//! and a lock granted to a mount refreshes what it knows of the file.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

/// Appends per mount.
const APPENDS: usize = 12;

/// Opens `path` for appending, takes a `lockf` lock on the whole file (waiting for it),
/// appends `line` and closes (which drops the lock), `APPENDS` times.
fn append_under_lockf(path: &Path, who: &str) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    for i in 0..APPENDS {
        let line = format!("{who} {i:02}\n");
        // SAFETY: `c` is a valid C string; the descriptor is closed below on every path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_APPEND) };
        assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is open; lockf(F_LOCK, 0) locks from the offset to the end of file.
        let locked = unsafe { libc::lockf(fd, libc::F_LOCK, 0) };
        let written = if locked == 0 {
            // SAFETY: `line` outlives the call; `fd` is open for writing.
            unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) }
        } else {
            -1
        };
        let error = std::io::Error::last_os_error();
        // SAFETY: `fd` is open and not used again.
        let closed = unsafe { libc::close(fd) };
        assert_eq!(locked, 0, "lockf: {error}");
        assert_eq!(written, line.len() as isize, "write: {error}");
        assert_eq!(closed, 0, "close: {}", std::io::Error::last_os_error());
    }
}

/// Two `cairn-mount`s of one cluster append to one file, each append under `lockf`, both
/// at once: the file ends up with every line of both (no append lands on a stale end of
/// file, none is lost to a later one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_under_lockf_from_two_mounts_all_survive() {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |_| {}).await;
    let mut files: Vec<PathBuf> = Vec::new();
    for m in ["mnt-a", "mnt-b"] {
        let mountpoint = tc.dir().join(m);
        tc.cluster.add_mount(&mountpoint, &[]).await.expect("mount");
        files.push(mountpoint.join("default").join("journal"));
    }
    std::fs::write(&files[0], b"").expect("create the journal");

    let writers: Vec<_> = files
        .iter()
        .cloned()
        .zip(["a", "b"])
        .map(|(path, who)| std::thread::spawn(move || append_under_lockf(&path, who)))
        .collect();
    for w in writers {
        w.join().expect("appending thread");
    }

    for path in &files {
        let text = std::fs::read_to_string(path).expect("read the journal");
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            2 * APPENDS,
            "every append under the lock survives, read through {path:?}:\n{text}"
        );
        lines.sort_unstable();
        let expected: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|who| (0..APPENDS).map(move |i| format!("{who} {i:02}")))
            .collect();
        assert_eq!(lines, expected, "{path:?}");
    }
}
