//! An open file keeps working when its name is looked up again after it changed
//! (regression test for the EIO that failed PostgreSQL's WAL writes in `t110` now and
//! then). The mount gave the kernel the file's content version as the inode's FUSE
//! generation; the kernel reads a new generation for a known inode number as "the number
//! was reused for another file" and marks its inode bad, so every descriptor already open
//! on it failed with EIO (without any request reaching the mount) once the name was looked
//! up again after a write. The generation must stay fixed for an inode's whole life.

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
