//! Disk full (issue: fault injection, must-show 3): every storage node's data directory is
//! a small tmpfs. Writes until the disks are full fail cleanly: the object API with a
//! "no space" error naming the node, the mount with ENOSPC; every node stays up, nothing
//! stored before is damaged, and once objects are deleted (garbage collection frees their
//! shards) writes succeed again.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_client::ClientError;
use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Size of each node's tmpfs.
const DISK_MIB: u64 = 24;
const OBJECT: usize = 1 << 20;

/// Tmpfs mounts over the nodes' data directories, lazily unmounted on drop (also when the
/// test fails; the nodes' files go with them).
struct SmallDisks(Vec<PathBuf>);

impl Drop for SmallDisks {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(dir).status();
        }
    }
}

/// Moves each node's data directory onto a tmpfs of `DISK_MIB` (node stopped meanwhile).
fn small_disks(tc: &mut TestCluster) -> SmallDisks {
    let mut disks = SmallDisks(Vec::new());
    for j in 1..=tc.cluster.spec().nodes {
        let name = format!("node-{j}");
        let dir = tc.dir().join(&name);
        let saved = tc.dir().join(format!("{name}.before-tmpfs"));
        tc.cluster.stop(&name);
        std::fs::rename(&dir, &saved).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK_MIB}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {dir:?}");
        disks.0.push(dir.clone());
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", saved.display()))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "copy {saved:?} to the tmpfs");
        tc.cluster.start_process(&name).unwrap();
    }
    disks
}

fn all_alive(tc: &mut TestCluster) {
    let exited = tc.cluster.reap_exited();
    assert!(exited.is_empty(), "daemons died: {exited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disks_refuse_writes_cleanly_and_recover_after_deletes() {
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let _disks = small_disks(&mut tc);
    tc.wait_status(
        "nodes up on their small disks",
        Duration::from_secs(30),
        |s| s.nodes.len() == 3 && s.nodes.iter().all(|n| n.state == "up"),
    )
    .await;

    // Fill: 1 MiB objects (0.5 MiB shards on each of 3 nodes) until refused.
    let mut stored = Vec::new();
    let refusal = loop {
        assert!(
            stored.len() < 4 * DISK_MIB as usize,
            "the disks never filled up"
        );
        let key = format!("fill/{:03}", stored.len());
        let data = random_bytes(OBJECT, stored.len() as u64);
        match tc.client.put("default", &key, &data[..]).await {
            Ok(_) => stored.push((key, data)),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(refusal, ClientError::NoSpace { .. }),
        "a full cluster refuses with NoSpace, got: {refusal}"
    );
    let message = refusal.to_string();
    assert!(
        message.contains("no space") && message.contains("node"),
        "the error says what is full: {message}"
    );
    assert!(stored.len() >= 10, "only {} objects fit", stored.len());
    all_alive(&mut tc);

    // The CLI says the same, clearly, and exits non-zero.
    let out = tc.cli_with_stdin(
        &["put", "default/cli-object", "-"],
        Some(&vec![7u8; OBJECT]),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no space"),
        "cairn put on a full cluster: {stderr}"
    );

    // Through a mount: writing a file fails with ENOSPC at the latest on fsync.
    let mountpoint = tc.dir().join("mnt");
    tc.cluster.add_mount(&mountpoint, &[]).await.unwrap();
    let path = mountpoint.join("default").join("big-file");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        for i in 0..8u64 {
            f.write_all(&random_bytes(OBJECT, 900 + i))?;
        }
        f.sync_all()
    })();
    let err = written.expect_err("a file write on full disks must fail");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "the mount reports ENOSPC: {err}"
    );
    all_alive(&mut tc);

    // Nothing stored before is damaged.
    for (key, data) in &stored {
        tc.must_get_equal("default", key, data).await;
    }

    // Free space: delete half; garbage collection removes their shards; writes work again.
    let _ = std::fs::remove_file(&path);
    for (key, _) in stored.iter().step_by(2) {
        tc.client.delete("default", key).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let data = random_bytes(OBJECT, 4242);
    loop {
        match tc.client.put("default", "after-free", &data[..]).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "writes still refused 60 s after deleting half the objects: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    tc.must_get_equal("default", "after-free", &data).await;
    for (key, data) in stored.iter().skip(1).step_by(2) {
        tc.must_get_equal("default", key, data).await;
    }
    all_alive(&mut tc);
}
