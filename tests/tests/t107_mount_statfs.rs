//! What `df` shows on a mount: the bytes the cluster can store, not its raw disk.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

/// Raw capacity each storage node reports.
const NODE_BYTES: u64 = 3 << 30;

fn statvfs(path: &Path) -> libc::statvfs {
    let c = CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: `st` is a plain C struct that statvfs fills; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
    st
}

/// Six nodes of 3 GiB each (18 GiB raw), so the root's default redundancy is ec 4+2: a
/// `cairn-mount` reports 12 GiB (4/6 of the raw capacity) in total and as available, and
/// what `df` prints agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn df_on_an_ec_4_2_cluster_shows_four_sixths_of_the_raw_capacity() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.env
            .push(("CAIRN_NODE_CAPACITY_BYTES".into(), NODE_BYTES.to_string()));
    })
    .await;
    let mountpoint = tc.dir().join("mnt");
    tc.cluster.add_mount(&mountpoint, &[]).await.expect("mount");

    let storable = 6 * NODE_BYTES * 4 / 6;
    // Every node's capacity is known once each has registered with the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = statvfs(&mountpoint);
        let total = st.f_blocks * st.f_frsize;
        if total == storable || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (total, available) = (st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize);
    assert_eq!(
        total,
        storable,
        "df total: {total} bytes, raw {}",
        6 * NODE_BYTES
    );
    // Nothing is stored yet but the bucket: all of it is available, give or take a block.
    assert!(
        available <= total && total - available < 64 << 20,
        "available {available} of {total}"
    );

    let df = std::process::Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(&mountpoint)
        .output()
        .expect("run df");
    assert!(df.status.success(), "{df:?}");
    let shown: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df output: {}", String::from_utf8_lossy(&df.stdout)));
    assert_eq!(shown, storable, "df -B1 size");
}
