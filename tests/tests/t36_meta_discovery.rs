//! Discovery: a client and a storage node configured with one metadata address learn the
//! whole membership from it (`ListReplicas`) and keep working when that replica dies.

use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_metadata_address_is_enough_to_find_every_replica() {
    let mut tc = TestCluster::start_with(3, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.env
            .push(("CAIRN_META_NODE_DOWN_AFTER_MS".into(), "2000".into()));
    })
    .await;
    let spec = tc.cluster.spec().clone();
    let first = spec.meta_addr(1);
    let client = Client::new(&tc.cluster.cluster_file_for(vec![first.clone()])).unwrap();
    assert_eq!(client.meta_replica_addrs(), vec![first.clone()]);

    // Storage node 1 knows only replica 1 too.
    tc.cluster.set_node_meta_addrs(std::slice::from_ref(&first));
    tc.cluster.stop("node-1");
    tc.cluster.start_process("node-1").unwrap();

    // The first call that succeeds teaches the client the membership.
    let data = random_bytes(70_000, 1);
    client.put("default", "before", &data[..]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut known = client.meta_replica_addrs();
        known.sort();
        if known == tc.cluster.meta_addrs() {
            break;
        }
        assert!(Instant::now() < deadline, "learnt only {known:?}");
        client.status().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The replica both were configured with dies for good.
    tc.cluster.kill("meta-1");
    let mut out = Vec::new();
    client
        .get("default", "before", None, &mut out)
        .await
        .unwrap();
    assert_eq!(out, data);
    client
        .put("default", "after", &b"written without replica 1"[..])
        .await
        .unwrap();
    // Node 1 heartbeats to the new leader (which knows a node's release only from a
    // heartbeat to it) and stays up.
    tc.wait_status(
        "node 1 heard by a leader other than replica 1",
        Duration::from_secs(30),
        |s| {
            s.leader_id != 1
                && s.nodes
                    .iter()
                    .any(|n| n.node_id == 1 && n.state == "up" && !n.version.is_empty())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = tc.client.status().await.unwrap();
    assert!(s.nodes.iter().all(|n| n.state == "up"), "{:?}", s.nodes);
}
