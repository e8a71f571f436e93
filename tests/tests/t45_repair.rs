//! Self-healing (DESIGN.md "Cluster behaviour", invariant 2): when a storage node is out,
//! the leader rebuilds its shards on other nodes until every chunk has full redundancy
//! again, so the cluster then survives m MORE node losses; a corrupt shard found by a read
//! is rebuilt the same way. A node that is only briefly down is waited for, not rebuilt.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

fn fast_repair(spec: &mut cairn_devcluster::DevClusterSpec) {
    spec.chunk_size = 256 * 1024;
    cairn_tests::fast_repair(spec);
}

/// ec 4+2 on 7 nodes: node 1 dies and goes out; repair rebuilds its shards elsewhere
/// (status shows the work and then an empty queue); then nodes 2 and 3 die as well and
/// every object still reads byte-identical (without repair, chunks that had shards on
/// nodes 1, 2 and 3 would be unreadable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_node_is_rebuilt_elsewhere_and_two_more_losses_are_survived() {
    let mut tc = TestCluster::start_with(1, 7, Redundancy::Ec { k: 4, m: 2 }, fast_repair).await;
    let objects: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("heal/{i}"),
                random_bytes(700_000 + i * 50_000, i as u64),
            )
        })
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }
    let total_chunks = tc.client.status().await.unwrap().chunks;
    let node1_shards = std::fs::read_dir(tc.dir().join("node-1/shards"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert!(
        node1_shards > 0,
        "node 1 holds no shard; the test proves nothing"
    );

    tc.cluster.kill("node-1");
    // What node 1 held, from the metadata once it is down (the rebalancer may still have
    // been moving shards onto it when the files were counted above) and before it is out
    // (when repair starts retiring its placements).
    tc.wait_status("node 1 down", Duration::from_secs(30), |s| {
        s.nodes.iter().any(|n| n.node_id == 1 && n.state == "down")
    })
    .await;
    let node1_placed = tc
        .client
        .status()
        .await
        .unwrap()
        .nodes
        .iter()
        .find(|n| n.node_id == 1)
        .map(|n| n.placed_shards)
        .unwrap();
    tc.wait_status("node 1 out", Duration::from_secs(30), |s| {
        s.nodes.iter().any(|n| n.node_id == 1 && n.state == "out")
    })
    .await;
    tc.wait_status("repair finished", Duration::from_secs(60), |s| {
        s.repair_queue == 0 && s.degraded_chunks == 0 && s.repaired_chunks > 0
    })
    .await;
    let status = tc.client.status().await.unwrap();
    assert_eq!(status.chunks, total_chunks);
    assert_eq!(
        status.repaired_chunks, node1_placed,
        "one rebuild per lost shard's chunk"
    );
    // Every chunk has all 6 shards on the 6 live nodes.
    let live_shards: usize = (2..=7)
        .map(|j| {
            std::fs::read_dir(tc.dir().join(format!("node-{j}/shards")))
                .unwrap()
                .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
                .count()
        })
        .sum();
    assert_eq!(live_shards as u64, total_chunks * 6);

    tc.cluster.kill("node-2");
    tc.cluster.kill("node-3");
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
}

/// A node that comes back before it is out keeps its shards: nothing is rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn briefly_down_node_is_not_rebuilt() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        fast_repair(s);
        s.env.retain(|(k, _)| k != "CAIRN_META_NODE_OUT_AFTER_MS");
        s.env
            .push(("CAIRN_META_NODE_OUT_AFTER_MS".into(), "60000".into()));
    })
    .await;
    let data = random_bytes(1_000_000, 9);
    tc.must_put("default", "stay", &data).await;
    tc.cluster.kill("node-2");
    tc.wait_status("node 2 down", Duration::from_secs(30), |s| {
        s.nodes.iter().any(|n| n.node_id == 2 && n.state == "down")
    })
    .await;
    tc.must_get_equal("default", "stay", &data).await;
    tc.cluster.start_process("node-2").unwrap();
    tc.wait_status("node 2 up", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    let s = tc.client.status().await.unwrap();
    assert_eq!(s.repaired_chunks, 0);
    assert_eq!(s.degraded_chunks, 0);
}

/// A corrupt shard found by a read is quarantined, reported, and rebuilt: full
/// redundancy comes back without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_shard_is_rebuilt_after_a_read_finds_it() {
    let tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, fast_repair).await;
    let data = random_bytes(200_000, 4);
    tc.must_put("default", "rot", &data).await;
    let victim = tc
        .shard_files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "1"))
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    tc.must_get_equal("default", "rot", &data).await;
    tc.wait_status("corrupt shard rebuilt", Duration::from_secs(30), |s| {
        s.repaired_chunks == 1 && s.degraded_chunks == 0 && s.repair_queue == 0
    })
    .await;
    assert_eq!(tc.shard_files().len(), 6);
    assert_eq!(tc.quarantined_files().len(), 1);
    tc.must_get_equal("default", "rot", &data).await;
}

/// `cairn repair throttle` changes the bandwidth limit cluster-wide (replicated, so it
/// survives a leader change); `cairn repair status` shows it; 0 removes it (the
/// default); nonsense is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_throttle_is_set_at_run_time_and_shown() {
    let tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, fast_repair).await;
    let out = tc.cli(&["repair", "throttle", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tc.wait_status("throttle in force", Duration::from_secs(10), |s| {
        s.repair_bytes_per_sec == 7 << 20
    })
    .await;
    let text = String::from_utf8_lossy(&tc.cli(&["repair", "status"]).stdout).to_string();
    assert!(text.contains("7.0 MiB/s"), "{text}");
    let out = tc.cli(&["repair", "throttle", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tc.wait_status("no throttle", Duration::from_secs(10), |s| {
        s.repair_bytes_per_sec == 0
    })
    .await;
    let text = String::from_utf8_lossy(&tc.cli(&["repair", "status"]).stdout).to_string();
    assert!(text.contains("throttle:         none"), "{text}");
    let out = tc.cli(&["repair", "throttle", "-5"]);
    assert!(!out.status.success(), "a negative throttle is refused");
}
