//! Storage-node loss with ec 4+2 (DESIGN.md invariant 2): any two nodes may die and every
//! object still reads byte-identical; a third loss makes reads fail fast with a clear
//! "data unavailable" error (never wrong bytes, never a hang); restarting the nodes makes
//! the data readable again.

use std::time::{Duration, Instant};

use cairn_client::{ChunkReadError, ClientError};
use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Kills node pairs in turn (every object keeps k shards), then three nodes; checks reads
/// after each step and after restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_losses_are_survived_and_a_third_fails_cleanly() {
    let tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.chunk_size = 128 * 1024
    })
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("obj-{i}"),
                random_bytes(300_000 + i * 1000, i as u64),
            )
        })
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }

    let mut tc = tc;
    for pair in [("node-1", "node-2"), ("node-3", "node-6")] {
        tc.cluster.kill(pair.0);
        tc.cluster.kill(pair.1);
        for (key, data) in &objects {
            tc.must_get_equal("default", key, data).await;
        }
        tc.cluster.start_process(pair.0).unwrap();
        tc.cluster.start_process(pair.1).unwrap();
    }

    // Three of six gone: no chunk has 4 shards left.
    for name in ["node-1", "node-2", "node-3"] {
        tc.cluster.kill(name);
    }
    let started = Instant::now();
    let err = tc.get("default", "obj-0").await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ChunkRead(ChunkReadError::Unavailable {
                available: 3,
                needed: 4,
                ..
            })
        ),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("data unavailable"), "{err}");
    // "Fail fast" is about not hanging; the bound is generous for a loaded CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "read took {:?}",
        started.elapsed()
    );

    // The CLI reports it in one line with a non-zero exit.
    let out = tc.cli(&["get", "default/obj-1", "-"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no bytes are written on failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data unavailable"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    for name in ["node-1", "node-2", "node-3"] {
        tc.cluster.start_process(name).unwrap();
    }
    tc.wait_status("all nodes up", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
}
