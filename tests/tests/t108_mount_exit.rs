//! A `cairn-mount` process ends soon after its mount point is unmounted, also when the
//! cluster it served is gone: neither `umount` (which asks the mount for `statfs`) nor the
//! process may hang on to metadata calls nobody answers.

use std::process::Command;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

/// How long `umount` and the mount's exit may take together once the cluster is gone:
/// about one session lease (10 s, after which the mount fences itself and ends every call
/// still waiting), well below the 30 s of retries a `statfs` used to wait.
const EXIT_BOUND: Duration = Duration::from_secs(20);

/// Mounts, writes a file, kills every metadata replica and storage node, unmounts with
/// `umount`: `umount` returns and the `cairn-mount` process exits within `EXIT_BOUND`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_exits_soon_after_its_unmount_with_the_cluster_down() {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |_| {}).await;
    let mountpoint = tc.dir().join("mnt");
    let mount = tc.cluster.add_mount(&mountpoint, &[]).await.expect("mount");
    std::fs::write(
        mountpoint.join("default").join("f"),
        b"written before the outage",
    )
    .expect("write through the mount");

    for name in tc.cluster.names() {
        if name.starts_with("meta-") || name.starts_with("node-") {
            tc.cluster.kill(&name);
        }
    }
    let since = Instant::now();
    let unmounted = Command::new("umount")
        .arg(&mountpoint)
        .status()
        .expect("run umount");
    assert!(unmounted.success(), "umount {mountpoint:?}: {unmounted}");
    eprintln!("umount returned after {:?}", since.elapsed());
    while !tc.cluster.has_exited(&mount) {
        assert!(
            since.elapsed() < EXIT_BOUND,
            "{mount} still runs {:?} after the unmount began",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = since.elapsed();
    assert!(took < EXIT_BOUND, "unmount and exit took {took:?}");
    eprintln!("{mount} exited {took:?} after the unmount began");
}
