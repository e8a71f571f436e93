//! Whole-cluster restart (DESIGN.md invariant 2): stop every process, start them all
//! again on the same directories, and every object is still there, byte-identical.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_objects_survive_a_full_restart() {
    let mut tc = TestCluster::start_with(3, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.chunk_size = 512 * 1024
    })
    .await;
    tc.client
        .create_bucket("replicated", Redundancy::Replicas { n: 3 })
        .await
        .unwrap();
    let objects: Vec<(&str, String, Vec<u8>)> = (0..8)
        .map(|i| {
            let bucket = if i % 2 == 0 { "default" } else { "replicated" };
            (
                bucket,
                format!("dir/obj-{i}"),
                random_bytes(i * 200_000 + 3, i as u64),
            )
        })
        .collect();
    for (bucket, key, data) in &objects {
        tc.must_put(bucket, key, data).await;
    }

    // Hard stop: kill -9 everything (a power cut), then start everything.
    for name in tc.cluster.names() {
        tc.cluster.kill(&name);
    }
    for name in tc.cluster.names() {
        tc.cluster.start_process(&name).unwrap();
    }
    tc.wait_status("cluster back", Duration::from_secs(60), |s| {
        s.nodes.len() == 6 && s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    for (bucket, key, data) in &objects {
        tc.must_get_equal(bucket, key, data).await;
    }
    let buckets = tc.client.list_buckets().await.unwrap();
    assert_eq!(buckets.len(), 2);

    // Graceful stop and start too.
    for name in tc.cluster.names() {
        tc.cluster.stop(&name);
    }
    for name in tc.cluster.names() {
        tc.cluster.start_process(&name).unwrap();
    }
    for (bucket, key, data) in &objects {
        tc.must_get_equal(bucket, key, data).await;
    }
}
