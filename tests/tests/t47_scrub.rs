//! Scrub (DESIGN.md invariant 3 without waiting for a reader): shard files corrupted on
//! two nodes are found by `cairn scrub`, quarantined and rebuilt by repair; afterwards
//! every object verifies and the cluster is at full redundancy again.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_scrub_finds_and_repairs_corruption_on_two_nodes() {
    let tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.chunk_size = 256 * 1024;
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("scrub/{i}"), random_bytes(600_000, 50 + i as u64)))
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }
    let shards_before = tc.shard_files().len();

    // Flip a byte in one shard file on node 2 and one on node 5.
    for node in ["node-2", "node-5"] {
        let dir = tc.dir().join(node).join("shards");
        let victim = std::fs::read_dir(&dir)
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .next()
            .expect("the node holds a shard");
        let mut bytes = std::fs::read(&victim).unwrap();
        let at = bytes.len() - 1;
        bytes[at] ^= 0x80;
        std::fs::write(&victim, &bytes).unwrap();
    }

    let out = tc.cli(&["scrub"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 corrupt shards found"), "{stdout}");
    assert_eq!(tc.quarantined_files().len(), 2);

    tc.wait_status(
        "repair of the scrubbed chunks",
        Duration::from_secs(30),
        |s| s.repaired_chunks >= 1 && s.degraded_chunks == 0 && s.repair_queue == 0,
    )
    .await;
    assert_eq!(tc.shard_files().len(), shards_before);
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
    // A second scrub finds nothing.
    let out = tc.cli(&["scrub", "--node", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 corrupt shards found"));
}
