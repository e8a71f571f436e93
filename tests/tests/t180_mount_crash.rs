//! Crash consistency of the mount (issue: fault injection; DESIGN.md invariant 1): after
//! kill -9 of a mount, or of every process of the cluster at once, files that were fsynced
//! hold exactly their fsynced content when read through a new mount, and files written
//! without fsync hold nothing but bytes that were written to them (a prefix of what was
//! written), never garbage.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

struct Written {
    /// Files and their content at their last fsync.
    synced: Vec<(String, Vec<u8>)>,
    /// Files written (all of this content) but never fsynced.
    unsynced: Vec<(String, Vec<u8>)>,
}

/// Writes through `mnt`: new files fsynced once; files overwritten in place and extended,
/// then fsynced; a file fsynced several times while growing; files never fsynced.
fn write_files(mnt: &Path) -> Written {
    let dir = mnt.join("default");
    let mut synced = Vec::new();
    for i in 0..6u64 {
        let name = format!("synced-{i}");
        let data = random_bytes(50_000 + i as usize * 70_000, i);
        let mut f = File::create(dir.join(&name)).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        synced.push((name, data));
    }
    // Overwrite the middle and extend, then fsync.
    for (name, data) in synced.iter_mut().take(3) {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(name.as_str()))
            .unwrap();
        let patch = random_bytes(10_000, 500 + data.len() as u64);
        let at = data.len() / 2;
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(&patch).unwrap();
        data.splice(
            at..(at + patch.len()).min(data.len()),
            patch.iter().copied(),
        );
        let tail = random_bytes(30_000, 900 + data.len() as u64);
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(&tail).unwrap();
        data.extend_from_slice(&tail);
        f.sync_data().unwrap();
    }
    // A log: appended and fsynced record by record.
    let mut log = Vec::new();
    let mut f = File::create(dir.join("log")).unwrap();
    for r in 0..20u64 {
        let record = random_bytes(4096 + r as usize * 100, 2000 + r);
        f.write_all(&record).unwrap();
        f.sync_data().unwrap();
        log.extend_from_slice(&record);
    }
    synced.push(("log".to_owned(), log));
    // Written and left open, never fsynced: in the mount's write buffer when it dies.
    let mut unsynced = Vec::new();
    for i in 0..3u64 {
        let name = format!("unsynced-{i}");
        let data = random_bytes(200_000, 3000 + i);
        let mut f = File::create(dir.join(&name)).unwrap();
        f.write_all(&data).unwrap();
        std::mem::forget(f); // still open when the mount is killed
        unsynced.push((name, data));
    }
    Written { synced, unsynced }
}

fn check_files(mnt: &Path, written: &Written) {
    let dir = mnt.join("default");
    for (name, data) in &written.synced {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        assert!(
            got == *data,
            "{name}: {} bytes after the crash, {} were fsynced{}",
            got.len(),
            data.len(),
            if got.len() == data.len() {
                " (same length, different bytes)"
            } else {
                ""
            }
        );
    }
    for (name, data) in &written.unsynced {
        let mut got = Vec::new();
        match File::open(dir.join(name)) {
            Ok(mut f) => {
                f.read_to_end(&mut got).unwrap();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("open {name}: {e}"),
        }
        assert!(
            got.len() <= data.len() && got == data[..got.len()],
            "{name}: {} bytes after the crash are not a prefix of the {} written",
            got.len(),
            data.len()
        );
    }
}

async fn cluster() -> TestCluster {
    TestCluster::start_with(3, 4, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        // A dead mount's session (and its open-file holds) ends soon.
        s.env
            .push(("CAIRN_META_SESSION_LEASE_MS".into(), "3000".into()));
    })
    .await
}

/// Mounts the cluster at `DIR/mnt-a` and writes the files there; returns the mount's
/// name, its path and what was written.
async fn mount_and_write(tc: &mut TestCluster) -> (String, PathBuf, Written) {
    let a = tc.dir().join("mnt-a");
    let name = tc.cluster.add_mount(&a, &[]).await.unwrap();
    let written = {
        let a = a.clone();
        tokio::task::spawn_blocking(move || write_files(&a))
            .await
            .unwrap()
    };
    (name, a, written)
}

fn kill_mount(tc: &mut TestCluster, name: &str, mnt: &Path) {
    tc.cluster.kill(name);
    let _ = Command::new("umount").arg("-l").arg(mnt).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsynced_files_survive_kill_9_of_the_mount() {
    let mut tc = cluster().await;
    let (mount_a, a, written) = mount_and_write(&mut tc).await;
    kill_mount(&mut tc, &mount_a, &a);
    let b = tc.dir().join("mnt-b");
    tc.cluster.add_mount(&b, &[]).await.unwrap();
    tokio::task::spawn_blocking(move || check_files(&b, &written))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsynced_files_survive_kill_9_of_the_whole_cluster() {
    let mut tc = cluster().await;
    let (mount_a, a, written) = mount_and_write(&mut tc).await;
    // Every process at once: the mount, the storage nodes, the metadata replicas.
    kill_mount(&mut tc, &mount_a, &a);
    let daemons: Vec<String> = tc
        .cluster
        .names()
        .into_iter()
        .filter(|n| n.starts_with("node-") || n.starts_with("meta-"))
        .collect();
    for name in &daemons {
        tc.cluster.kill(name);
    }
    for name in &daemons {
        tc.cluster.start_process(name).unwrap();
    }
    tc.wait_status(
        "cluster back after kill -9 of everything",
        Duration::from_secs(60),
        |s| s.nodes.iter().all(|n| n.state == "up"),
    )
    .await;
    let b = tc.dir().join("mnt-b");
    tc.cluster.add_mount(&b, &[]).await.unwrap();
    tokio::task::spawn_blocking(move || check_files(&b, &written))
        .await
        .unwrap();
}
