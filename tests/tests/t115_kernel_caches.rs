//! What the mount tells the kernel about a file must never contradict what this mount
//! already did to it (regression tests for the failures of PostgreSQL on a mount in
//! `t110`, each reproduced here first):
//! - An open file keeps working when its name is looked up again after it changed. The
//!   mount gave the kernel the file's content version as the inode's FUSE generation; the
//!   kernel reads a new generation for a known inode number as "the number was reused for
//!   another file" and marks its inode bad, so every descriptor already open on it failed
//!   with EIO (without any request reaching the mount). The generation now stays fixed
//!   for an inode's whole life.
//! - A file read on the mount that fsynced it is never shorter than what was fsynced. A
//!   lookup or getattr that read the metadata before one of the mount's own commits and
//!   answered after it gave the kernel the old size, which the kernel took (it cannot tell
//!   the answer is old): PostgreSQL then read its own `postmaster.pid` as empty and shut
//!   down. Answers older than the mount's own commits now carry the committed size.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_survive_lookups_of_their_changed_file() {
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mountpoint = tc.dir().join("mnt");
    // Short kernel caches, so that each round looks the name up again.
    tc.cluster
        .add_mount(&mountpoint, &["--attr-ttl-ms", "50"])
        .await
        .expect("mount");
    let path = mountpoint.join("default").join("wal");
    let rounds = tokio::task::spawn_blocking(move || {
        let mut log = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut expected = Vec::new();
        for round in 0..20u32 {
            let record = format!("record {round:04}\n").repeat(200);
            log.write_all(record.as_bytes())
                .unwrap_or_else(|e| panic!("round {round}: write to the open file: {e}"));
            log.sync_data()
                .unwrap_or_else(|e| panic!("round {round}: fsync the open file: {e}"));
            expected.extend_from_slice(record.as_bytes());
            std::thread::sleep(Duration::from_millis(120));
            // Another process opening the same name (a new PostgreSQL backend does).
            let mut other = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("round {round}: open by name: {e}"));
            let mut seen = Vec::new();
            other.read_to_end(&mut seen).unwrap();
            assert_eq!(seen.len(), expected.len(), "round {round}: size by name");
            std::fs::metadata(&path).unwrap();
        }
        // The first descriptor still reads and writes.
        let mut head = [0u8; 11];
        log.read_exact_at(&mut head, 0)
            .expect("read through the first descriptor");
        assert_eq!(&head, b"record 0000");
        log.seek(SeekFrom::End(0)).unwrap();
        log.write_all(b"end\n")
            .expect("write through the first descriptor");
        log.sync_all().unwrap();
        20
    })
    .await
    .unwrap();
    assert_eq!(rounds, 20);
}

/// A writer grows a file (create, fsync, close; reopen, rewrite longer, fsync, close) while
/// a reader on the same mount reads it in a loop, as `pg_ctl` polls `postmaster.pid`: a
/// read that starts after an fsync returned sees at least the bytes fsynced. Before the
/// fix, 2-6 of ~1000 reads per run came back short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_files_never_read_back_short_after_fsync() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mountpoint = tc.dir().join("mnt");
    tc.cluster.add_mount(&mountpoint, &[]).await.expect("mount");
    let dir = mountpoint.join("default");
    // The last fsynced state: round * 1000 + size.
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, committed, stop) = (dir.clone(), committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut short = Vec::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let c = committed.load(Ordering::SeqCst);
                let (round, size) = (c / 1000, c % 1000);
                if let Ok(bytes) = std::fs::read(dir.join(format!("pid-{round}"))) {
                    reads += 1;
                    if (bytes.len() as u64) < size {
                        short.push(format!(
                            "round {round}: read {} bytes, {size} committed",
                            bytes.len()
                        ));
                    }
                }
            }
            (reads, short)
        })
    };
    let writer = {
        let (dir, committed) = (dir.clone(), committed.clone());
        std::thread::spawn(move || {
            for round in 1..=60u64 {
                let path = dir.join(format!("pid-{round}"));
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .unwrap();
                f.write_all(&[b'1'; 100]).unwrap();
                f.sync_all().unwrap();
                drop(f);
                committed.store(round * 1000 + 100, Ordering::SeqCst);
                for size in [300u64, 500] {
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .unwrap();
                    f.write_all_at(&vec![b'2'; size as usize], 0).unwrap();
                    f.sync_all().unwrap();
                    drop(f);
                    committed.store(round * 1000 + size, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
        })
    };
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (reads, short) = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    eprintln!("{reads} reads, {} short", short.len());
    assert!(reads > 200, "only {reads} reads: the test proves little");
    assert!(short.is_empty(), "{:?}", &short[..short.len().min(10)]);
}
