//! Rebalance and drain (issue: self-healing and operations): two nodes added to a loaded
//! cluster receive shards until every node is within the documented tolerance; a drained
//! node ends with zero shards and can then be removed (not before); a concurrent reader and
//! writer see no error throughout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::ClusterStatus;
use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Keys and contents of acknowledged puts.
type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Spread of placed shards over up, non-draining nodes, and the tolerance for it
/// (`max(2, 10% of the mean)`, as documented in metadata/src/rebalance.rs).
fn spread(s: &ClusterStatus) -> (u64, u64) {
    let counts: Vec<u64> = s
        .nodes
        .iter()
        .filter(|n| n.state == "up" && !n.draining)
        .map(|n| n.placed_shards)
        .collect();
    let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
    let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
    (spread, ((mean * 0.1).ceil() as u64).max(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_nodes_fill_up_and_a_drained_node_empties_under_load() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    let acked: Acked = Arc::default();
    for i in 0..30 {
        let key = format!("base/{i:02}");
        let data = random_bytes(200_000, i);
        tc.must_put("default", &key, &data).await;
        acked.lock().unwrap().push((key, data));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let load = {
        let (client, acked, stop, failures) = (
            tc.client.clone(),
            acked.clone(),
            stop.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/{i:05}");
                let data = random_bytes(100_000, 1000 + i);
                match client.put("default", &key, &data[..]).await {
                    Ok(_) => acked.lock().unwrap().push((key, data)),
                    Err(e) => {
                        eprintln!("put {key}: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let (key, data) = {
                    let a = acked.lock().unwrap();
                    a[(i as usize * 7) % a.len()].clone()
                };
                let mut out = Vec::new();
                match client.get("default", &key, None, &mut out).await {
                    Ok(_) => assert_eq!(out, data, "{key}: wrong bytes"),
                    Err(e) => {
                        eprintln!("get {key}: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        })
    };

    // Two new, empty nodes: rebalancing moves shards to them.
    tc.cluster.add_node().unwrap();
    tc.cluster.add_node().unwrap();
    tc.wait_status("rebalanced onto 8 nodes", Duration::from_secs(90), |s| {
        let (spread, tolerance) = spread(s);
        s.nodes.len() == 8
            && s.nodes
                .iter()
                .filter(|n| n.node_id >= 7)
                .all(|n| n.placed_shards > 0)
            && spread <= tolerance
    })
    .await;
    assert!(tc.client.status().await.unwrap().moved_shards > 0);

    // Drain node 1: refused removal while it holds shards, empty at the end.
    let out = tc.cli(&["node", "drain", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tc.cli(&["node", "remove", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("drain it first"));
    tc.wait_status("node 1 drained", Duration::from_secs(90), |s| {
        s.nodes
            .iter()
            .any(|n| n.node_id == 1 && n.draining && n.placed_shards == 0)
            && s.repair_queue == 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    tc.cluster.stop("node-1");
    let out = tc.cli(&["node", "remove", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&tc.cli(&["node", "ls"]).stdout).to_string();
    assert!(!listed.lines().any(|l| l.starts_with("1 ")), "{listed}");

    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "operations failed under rebalance/drain"
    );
    let acked = acked.lock().unwrap().clone();
    for (key, data) in &acked {
        tc.must_get_equal("default", key, data).await;
    }
}

/// A node given weight 3 ends up holding well over twice the shards of the others;
/// `cairn rebalance --dry-run` shows the plan first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_change_moves_shards_toward_the_heavier_node() {
    // 6 nodes: one node can hold at most one shard per chunk (a third of a 2+1 chunk), so
    // with fewer nodes a weight of 3 could not be honoured.
    let tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    for i in 0..20 {
        tc.must_put("default", &format!("w/{i}"), &random_bytes(300_000, i))
            .await;
    }
    let out = tc.cli(&["node", "weight", "1", "0"]);
    assert!(!out.status.success(), "a zero weight is refused");
    let out = tc.cli(&["node", "weight", "1", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&tc.cli(&["rebalance", "--dry-run"]).stdout).to_string();
    assert!(plan.contains("would move"), "{plan}");
    assert!(
        plan.lines()
            .any(|l| l.starts_with("1 ") && l.contains("3.00")),
        "{plan}"
    );
    tc.wait_status("node 1 fills up", Duration::from_secs(60), |s| {
        let of = |id: u64| {
            s.nodes
                .iter()
                .find(|n| n.node_id == id)
                .map_or(0, |n| n.placed_shards)
        };
        let others = (2..=6).map(of).sum::<u64>() as f64 / 5.0;
        of(1) as f64 >= 2.0 * others
            && s.nodes
                .iter()
                .any(|n| n.node_id == 1 && n.weight_pct == 300)
    })
    .await;
    for i in 0..20 {
        tc.must_get_equal("default", &format!("w/{i}"), &random_bytes(300_000, i))
            .await;
    }
}
