//! Writes with a storage node down (DESIGN.md invariant 1): a put succeeds with k+1..k+m
//! durable shards, never fewer; its chunks show as degraded in `cairn status`.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_a_node_down_succeeds_degraded() {
    let mut tc = TestCluster::start(1, 6, Redundancy::Ec { k: 4, m: 2 }).await;
    tc.cluster.kill("node-4");
    tc.wait_status("node 4 down", Duration::from_secs(30), |s| {
        s.nodes.iter().any(|n| n.node_id == 4 && n.state == "down")
    })
    .await;
    let data = random_bytes(5 << 20, 9);
    let outcome = tc
        .client
        .put("default", "degraded", &data[..])
        .await
        .unwrap();
    assert_eq!(outcome.degraded_chunks, 2);
    tc.must_get_equal("default", "degraded", &data).await;
    let status = tc.client.status().await.unwrap();
    assert_eq!(status.degraded_chunks, 2);
    let out = tc.cli(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 degraded"), "{text}");
    assert!(text.contains("down"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&tc.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["degraded_chunks"], 2);
    assert_eq!(json["nodes_up"], 5);

    // With two nodes down only k shards can be written: the put is refused, not
    // acknowledged with too few.
    tc.cluster.kill("node-5");
    tc.wait_status("node 5 down", Duration::from_secs(30), |s| {
        s.nodes.iter().any(|n| n.node_id == 5 && n.state == "down")
    })
    .await;
    let err = tc
        .client
        .put("default", "refused", &data[..])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 5"), "{err}");
    assert!(tc.client.stat("default", "refused").await.is_err());
}
