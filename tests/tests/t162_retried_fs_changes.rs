//! Filesystem changes retried after a lost answer (hardening issue, defect 7). The
//! metadata leader commits a mount's `mkdir` or `rename`, then its answer is lost (the
//! failpoint `meta-commit-before-reply` injects the error a crash or a leader change
//! gives); the mount sends the change again. Before the fix the retry was applied as a new
//! change: `mkdir` failed with EEXIST and `mv` with ENOENT (PostgreSQL PANICs on a failed
//! rename). Now each change carries the session's number for it and a retry gets the first
//! answer.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{log_lines, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mkdir_and_mv_succeed_when_their_first_answer_is_lost() {
    let mut tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mnt = tc.dir().join("mnt");
    tc.cluster.add_mount(&mnt, &[]).await.expect("mount");
    let dir = mnt.join("default");
    std::fs::write(dir.join("a"), b"first version").unwrap();

    // Every replica loses the answers to its next two writes, whichever leads.
    tc.arm_every_replica("meta-commit-before-reply=2*return(error)")
        .await;
    tc.wait_status("every node up", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;

    std::fs::create_dir(dir.join("d")).expect("mkdir, though its first answer was lost");
    std::fs::rename(dir.join("a"), dir.join("d/b")).expect("mv, though its first answer was lost");

    let injected: usize = (1..=3)
        .map(|i| {
            log_lines(
                &tc.log_path(&format!("meta-{i}")),
                &["failpoint: injected error"],
            )
        })
        .sum();
    assert_eq!(injected, 2, "the leader lost both answers");
    assert!(!dir.join("a").exists());
    assert_eq!(std::fs::read(dir.join("d/b")).unwrap(), b"first version");
    // Applied once: one directory, one entry in it.
    let entries: Vec<_> = std::fs::read_dir(dir.join("d")).unwrap().collect();
    assert_eq!(entries.len(), 1);
}
