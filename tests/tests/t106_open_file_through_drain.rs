//! A file kept open through a drain (hardening issue, defect 6). A database keeps its
//! files open for days; meanwhile drains, repairs and rebalances move their chunks' shards
//! and delete the old copies. Before the fix the mount read with the extent map it opened
//! the file with, whose placements were gone: EIO. Now a read that fails on the map
//! reloads it and reads again.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_open_through_a_drain_of_three_nodes_reads_back_identical() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    let (writer, reader) = (tc.dir().join("w"), tc.dir().join("r"));
    tc.cluster.add_mount(&writer, &[]).await.expect("mount w");
    tc.cluster.add_mount(&reader, &[]).await.expect("mount r");

    // 16 chunks of ec 2+1 over 6 nodes: draining three of them leaves, with the old map,
    // chunks with fewer than two of their shards where they were.
    let data = random_bytes(1 << 20, 106);
    {
        let mut f = std::fs::File::create(writer.join("default/db")).unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        f.sync_all().unwrap();
    }
    // Opened on the other mount (nothing of it in that kernel's page cache), read not
    // yet: the mount holds the map it opened the file with.
    let mut open = std::fs::File::open(reader.join("default/db")).unwrap();

    for node in ["1", "2", "3"] {
        let out = tc.cli(&["node", "drain", node]);
        assert!(out.status.success(), "drain {node}: {out:?}");
    }
    tc.wait_status("nodes 1-3 drained", Duration::from_secs(120), |s| {
        s.nodes
            .iter()
            .filter(|n| n.node_id <= 3)
            .all(|n| n.draining && n.placed_shards == 0)
    })
    .await;
    // ...and their old shards deleted by garbage collection (bounded wait).
    let on_drained = |tc: &TestCluster| {
        tc.shard_files()
            .iter()
            .filter(|f| (1..=3).any(|j| f.starts_with(tc.dir().join(format!("node-{j}")))))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_drained(&tc) > 0 {
        assert!(
            Instant::now() < deadline,
            "old shards still on the drained nodes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut read = Vec::new();
    open.read_to_end(&mut read)
        .expect("read the file opened before the drain");
    assert!(read == data, "the file reads back byte-identical");
    // A random read too (the mount reads those straight from the data shards).
    let mut piece = vec![0u8; 1000];
    open.seek(SeekFrom::Start(700_001)).unwrap();
    open.read_exact(&mut piece).unwrap();
    assert!(piece[..] == data[700_001..701_001]);
}
