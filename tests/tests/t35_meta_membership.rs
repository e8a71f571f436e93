//! Metadata replicas join and leave a running cluster (Raft membership change). A
//! replica that joins after the log was compacted catches up by snapshot install; the
//! joined replicas then carry the cluster when the original one dies.

use std::time::Duration;

use cairn_client::Client;
use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Starts one replica with a snapshot every 20 entries, writes 60 objects (so the log is
/// compacted behind a snapshot), adds two replicas with `--join`, kills the original and
/// removes it from the membership with `cairn meta remove`: a joined replica leads, every
/// object reads back, and writes continue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_join_by_snapshot_and_take_over() {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.env
            .push(("CAIRN_META_SNAPSHOT_EVERY".into(), "20".into()));
    })
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| (format!("m/{i:02}"), random_bytes(100 + i, i as u64)))
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }

    tc.cluster.add_meta(&[]).unwrap();
    tc.cluster.add_meta(&[]).unwrap();
    let all = Client::from_file(&tc.cluster_file()).unwrap();
    let three_voters = |s: &cairn_client::ClusterStatus| {
        s.replicas.len() == 3 && s.replicas.iter().all(|r| r.voter)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = all.status().await {
            if three_voters(&s) {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas did not join"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The log was compacted before they joined: they caught up from a snapshot. A replica
    // may be promoted before its log shows the install (the line is written after the
    // state machine took the snapshot), so wait for the line rather than read it once.
    for name in ["meta-2", "meta-3"] {
        let path = tc.log_path(name);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while cairn_tests::log_lines(&path, &["installed a snapshot"]) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} did not install a snapshot"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Storage nodes learn the new replicas through their config (restart).
    let addrs = tc.cluster.meta_addrs();
    tc.cluster.set_node_meta_addrs(&addrs);
    for j in 1..=3 {
        let name = format!("node-{j}");
        tc.cluster.stop(&name);
        tc.cluster.start_process(&name).unwrap();
    }

    tc.cluster.kill("meta-1");
    let survivors = Client::new(&tc.cluster.cluster_file_for(addrs[1..].to_vec())).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = survivors.status().await {
            if s.leader_id != 1 && s.nodes.iter().all(|n| n.state == "up") {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader with all nodes up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (key, data) in &objects {
        let mut out = Vec::new();
        survivors.get("default", key, None, &mut out).await.unwrap();
        assert_eq!(&out, data, "{key}");
    }

    // The dead replica leaves the membership; two voters keep a majority of two.
    survivors.remove_meta_replica(1).await.unwrap();
    let s = survivors.status().await.unwrap();
    assert_eq!(s.replicas.len(), 2, "{:?}", s.replicas);
    survivors
        .put("default", "after", &b"still writable"[..])
        .await
        .unwrap();
    let err = survivors.remove_meta_replica(1).await.unwrap_err();
    assert!(err.to_string().contains("not a voter"), "{err}");
}
