//! Replacing a file while another mount reads it (regression test for a bug the nemesis
//! found): a writer on one mount replaces a file over and over (write a temporary file,
//! fsync, rename it over the name) while a reader on another mount reads the name. Every
//! read must return one whole version; none may fail. The kernel looks a name up and then
//! opens the inode it found, two requests; when the inode was replaced in between, the
//! mount answered the open with ENOENT and the application saw "no such file" for a file
//! that always existed. It now answers ESTALE, on which the kernel looks the name up again.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::history::{payload, payload_id};
use cairn_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_one_mount_never_fail_while_another_replaces_the_file() {
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mut dirs = Vec::new();
    for m in ["mnt-writer", "mnt-reader"] {
        let mountpoint = tc.dir().join(m);
        // No kernel caching of names: every open looks the name up.
        tc.cluster
            .add_mount(&mountpoint, &["--attr-ttl-ms", "0"])
            .await
            .expect("mount");
        dirs.push(mountpoint.join("default"));
    }
    let (writer_dir, reader_dir) = (dirs[0].clone(), dirs[1].clone());
    std::fs::write(writer_dir.join("target"), payload(0, 5000)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut id = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let temp = writer_dir.join(format!(".target-{id}"));
                let mut f = std::fs::File::create(&temp).unwrap();
                f.write_all(&payload(id, 5000 + id as usize % 3000))
                    .unwrap();
                f.sync_all().unwrap();
                drop(f);
                std::fs::rename(&temp, writer_dir.join("target")).unwrap();
                id += 1;
            }
            id - 1
        })
    };
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(8);
        let (mut reads, mut failures) = (0u64, Vec::new());
        while Instant::now() < deadline {
            match std::fs::read(reader_dir.join("target")) {
                Ok(bytes) => {
                    if let Err(why) = payload_id(&bytes) {
                        failures.push(format!("torn read: {why}"));
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
            reads += 1;
        }
        (reads, failures)
    });
    let (reads, failures) = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let replaced = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    eprintln!("{reads} reads while the file was replaced {replaced} times");
    assert!(
        replaced >= 10,
        "only {replaced} replacements: the test proves little"
    );
    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed, first: {}",
        failures.len(),
        failures[0]
    );
}
