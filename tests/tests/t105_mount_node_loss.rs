//! With `ec 4+2` on eight storage nodes, two nodes are killed (kill -9) while files are
//! written and read through a mount: no error reaches the application, and every file
//! verifies afterwards through the mount and through the object API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

const FILES: usize = 16;
const FILE_BYTES: usize = (2 << 20) + 12_345;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_two_nodes_under_mount_traffic_reaches_no_application() {
    let mut tc = TestCluster::start(1, 8, Redundancy::Ec { k: 4, m: 2 }).await;
    let mountpoint = tc.dir().join("mnt");
    // No chunk cache: every read fetches shards from the nodes.
    tc.cluster
        .add_mount(&mountpoint, &["--chunk-cache-mib", "0"])
        .await
        .expect("mount the cluster");
    let root = mountpoint.canonicalize().unwrap().join("default");

    // A reader keeps reading the first file while the writer works and nodes die.
    std::fs::write(root.join("file-0"), random_bytes(FILE_BYTES, 0)).expect("first file");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (root, stop) = (root.clone(), stop.clone());
        std::thread::spawn(move || {
            let expected = random_bytes(FILE_BYTES, 0);
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let got = std::fs::read(root.join("file-0"))
                    .unwrap_or_else(|e| panic!("read {reads} failed: {e}"));
                assert!(got == expected, "read {reads} returned wrong bytes");
                reads += 1;
            }
            reads
        })
    };

    let writer = {
        let root = root.clone();
        std::thread::spawn(move || {
            for i in 1..FILES {
                let data = random_bytes(FILE_BYTES, i as u64);
                let path = root.join(format!("file-{i}"));
                std::fs::write(&path, &data).unwrap_or_else(|e| panic!("write file-{i}: {e}"));
                let back = std::fs::read(&path).unwrap_or_else(|e| panic!("read file-{i}: {e}"));
                assert!(back == data, "file-{i} read back wrong");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tc.cluster.kill("node-1");
    tc.cluster.kill("node-2");
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap()
        .expect("the writer saw no error");
    stop.store(true, Ordering::Relaxed);
    let reads = tokio::task::spawn_blocking(move || reader.join())
        .await
        .unwrap()
        .expect("the reader saw no error");
    assert!(reads > 0);

    for i in 0..FILES {
        let expected = random_bytes(FILE_BYTES, i as u64);
        let got = std::fs::read(root.join(format!("file-{i}"))).expect("read after the kills");
        assert!(got == expected, "file-{i} differs after the kills");
        tc.must_get_equal("default", &format!("file-{i}"), &expected)
            .await;
    }
}
