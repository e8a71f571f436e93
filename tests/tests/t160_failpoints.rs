//! Crashes at the crash-critical steps (issue: fault injection; DESIGN.md invariants 1-2):
//! a daemon is armed with a failpoint that kills it (SIGKILL, as `kill -9`) at the step,
//! a workload runs into it, the daemon is restarted without it, and then every
//! acknowledged object reads back byte-identical and the cluster is back to full
//! redundancy. Each test also checks that the crash happened where it was meant to.

use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_devcluster::DevClusterSpec;
use cairn_tests::{log_lines, random_bytes, TestCluster};

const PUT_ATTEMPTS: usize = 8;

fn small_chunks_fast_repair(spec: &mut DevClusterSpec) {
    spec.chunk_size = 64 * 1024;
    cairn_tests::fast_repair(spec);
}

/// Puts `count` objects named `prefix/i`, each retried (after restarting whatever
/// crashed) until acknowledged; returns them and the daemons that crashed meanwhile.
async fn put_through_crashes(
    tc: &mut TestCluster,
    prefix: &str,
    count: u64,
    size: usize,
) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let client = tc.client.clone().with_meta_retry(Duration::from_secs(5));
    let mut acked = Vec::new();
    let mut crashed = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}/{i:03}");
        let data = random_bytes(size, 7_000 + i);
        let mut last_error = None;
        for _ in 0..PUT_ATTEMPTS {
            let result = client.put("default", &key, &data[..]).await;
            crashed.extend(tc.restart_crashed());
            match result {
                Ok(_) => {
                    last_error = None;
                    break;
                }
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        if let Some(e) = last_error {
            panic!("{key} not stored after {PUT_ATTEMPTS} attempts: {e}");
        }
        acked.push((key, data));
    }
    (acked, crashed)
}

async fn wait_full_redundancy(tc: &TestCluster) {
    tc.wait_status(
        "every node up and full redundancy",
        Duration::from_secs(90),
        |s| {
            s.nodes.iter().all(|n| n.state == "up") && s.degraded_chunks == 0 && s.repair_queue == 0
        },
    )
    .await;
}

async fn verify_all(tc: &TestCluster, acked: &[(String, Vec<u8>)]) {
    for (key, data) in acked {
        tc.must_get_equal("default", key, data).await;
    }
}

/// Waits (bounded) until `daemon` has exited on its own; returns whether it did.
async fn wait_for_crash(tc: &mut TestCluster, daemon: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if tc.cluster.has_exited(daemon) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node dies between writing a shard and its fdatasync: the puts that needed it are
/// retried and acknowledged elsewhere, the half-written temporary file it left is removed
/// when it restarts, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_crash_before_fsync_loses_nothing_acknowledged() {
    let mut tc = TestCluster::start_with(1, 4, Redundancy::Ec { k: 2, m: 1 }, |s| {
        small_chunks_fast_repair(s)
    })
    .await;
    tc.arm("node-1", "shard-write-before-fsync=4*off->return(crash)");
    tc.wait_status("node 1 back", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    // Fire the failpoint, then look at the disk before the node is restarted.
    let client = tc.client.clone().with_meta_retry(Duration::from_secs(5));
    let mut acked = Vec::new();
    let mut i = 0u64;
    while !wait_for_crash(&mut tc, "node-1", Duration::from_millis(1)).await {
        assert!(i < 200, "node 1 never reached its failpoint");
        let (key, data) = (format!("pre/{i:03}"), random_bytes(200_000, i));
        if client.put("default", &key, &data[..]).await.is_ok() {
            acked.push((key, data));
        }
        i += 1;
    }
    let left = tc.temp_shard_files(1);
    assert!(
        !left.is_empty(),
        "the crash before fsync left no temporary file: it did not happen mid-write"
    );
    let (more, _) = put_through_crashes(&mut tc, "post", 10, 200_000).await;
    acked.extend(more);
    wait_full_redundancy(&tc).await;
    let survived: Vec<_> = left.iter().filter(|p| p.exists()).collect();
    assert!(
        survived.is_empty(),
        "temporary files of the crashed writes survived the restart: {survived:?}"
    );
    verify_all(&tc, &acked).await;
}

/// A node dies after a shard is durable but before it answers: the write counts as failed
/// (the shard is an orphan), the put goes elsewhere, and everything acknowledged verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_crash_between_fsync_and_ack_loses_nothing_acknowledged() {
    let mut tc = TestCluster::start_with(1, 4, Redundancy::Ec { k: 2, m: 1 }, |s| {
        small_chunks_fast_repair(s)
    })
    .await;
    tc.arm("node-2", "shard-write-before-ack=6*off->return(crash)");
    tc.wait_status("node 2 back", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    let (acked, crashed) = put_through_crashes(&mut tc, "obj", 25, 200_000).await;
    assert!(
        crashed.iter().any(|n| n == "node-2"),
        "node 2 never reached its failpoint (crashed: {crashed:?})"
    );
    wait_full_redundancy(&tc).await;
    verify_all(&tc, &acked).await;
}

/// Metadata replicas die between a Raft commit and the reply to the client (each replica
/// once, at its own fourth write as leader): the client's retries see the committed state
/// through the next leader, and every acknowledged object verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_between_commit_and_reply_loses_nothing_acknowledged() {
    let mut tc = TestCluster::start_with(3, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        small_chunks_fast_repair(s)
    })
    .await;
    tc.arm_every_replica("meta-commit-before-reply=3*off->1*return(crash)")
        .await;
    let (acked, crashed) = put_through_crashes(&mut tc, "obj", 20, 100_000).await;
    assert!(
        crashed.iter().any(|n| n.starts_with("meta-")),
        "no metadata replica reached its failpoint (crashed: {crashed:?})"
    );
    wait_full_redundancy(&tc).await;
    verify_all(&tc, &acked).await;
    // Every key holds its one value, acknowledged or retried after a lost reply.
    let listed = tc.client.list_all("default", "obj/").await.unwrap();
    assert_eq!(listed.len(), acked.len());
}

/// A delete whose answer is lost after its commit (an injected error at the same point,
/// on whichever replica leads): the client's retry finds the key gone, and the delete is
/// reported done, not "not found". A delete of a key that never existed still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_answer_was_lost_is_reported_done() {
    let mut tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    tc.must_put("default", "victim", b"short-lived").await;
    tc.arm_every_replica("meta-commit-before-reply=1*return(error)")
        .await;
    tc.wait_status("every node up", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    tc.client
        .delete("default", "victim")
        .await
        .expect("the delete is done, though its first answer was lost");
    assert!(matches!(
        tc.get("default", "victim").await,
        Err(cairn_client::ClientError::NotFound { .. })
    ));
    let injected: usize = (1..=3)
        .map(|i| {
            log_lines(
                &tc.log_path(&format!("meta-{i}")),
                &["failpoint: injected error"],
            )
        })
        .sum();
    assert_eq!(injected, 1, "the leader lost exactly one answer");
    assert!(matches!(
        tc.client.delete("default", "never-there").await,
        Err(cairn_client::ClientError::NotFound { .. })
    ));
}

/// The metadata leader dies during repair, after writing the rebuilt shards and before
/// committing their placement: after its restart repair starts over, the cluster reaches
/// full redundancy without the dead node, and every object verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_mid_repair_still_heals() {
    let mut tc = TestCluster::start_with(1, 4, Redundancy::Ec { k: 2, m: 1 }, |s| {
        small_chunks_fast_repair(s)
    })
    .await;
    let (acked, _) = put_through_crashes(&mut tc, "obj", 12, 300_000).await;
    tc.arm("meta-1", "repair-before-commit=2*off->1*return(crash)");
    tc.leader().await;
    tc.cluster.kill("node-4");
    assert!(
        wait_for_crash(&mut tc, "meta-1", Duration::from_secs(60)).await,
        "the leader never reached its repair failpoint"
    );
    let crashed = tc.restart_crashed();
    assert_eq!(crashed, ["meta-1"]);
    tc.wait_status("repaired without node 4", Duration::from_secs(90), |s| {
        s.nodes.iter().any(|n| n.node_id == 4 && n.state == "out")
            && s.degraded_chunks == 0
            && s.repair_queue == 0
    })
    .await;
    verify_all(&tc, &acked).await;
}

/// The metadata leader dies while rebalancing onto a new node, after copying a shard and
/// before committing the move: after its restart the moves continue, the new node fills,
/// and every object verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_mid_rebalance_still_balances() {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        small_chunks_fast_repair(s)
    })
    .await;
    let (acked, _) = put_through_crashes(&mut tc, "obj", 12, 300_000).await;
    tc.arm("meta-1", "rebalance-before-commit=2*off->1*return(crash)");
    tc.leader().await;
    tc.cluster.add_node().unwrap();
    assert!(
        wait_for_crash(&mut tc, "meta-1", Duration::from_secs(60)).await,
        "the leader never reached its rebalance failpoint"
    );
    let crashed = tc.restart_crashed();
    assert_eq!(crashed, ["meta-1"]);
    tc.wait_status("new node filled", Duration::from_secs(90), |s| {
        s.nodes
            .iter()
            .any(|n| n.node_id == 4 && n.state == "up" && n.placed_shards > 0)
            && s.degraded_chunks == 0
            && s.repair_queue == 0
    })
    .await;
    verify_all(&tc, &acked).await;
}

/// Storage nodes die while executing repair and rebalance orders (each has a rebuilt
/// shard durable and is killed before it answers the leader): the leader commits
/// nothing for those orders, the restarted nodes take new ones, the cluster reaches full
/// redundancy without a dead node, and every object verifies. The rebuilt shards the
/// crashes left behind uncommitted are orphans (the sweep's business), never placements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_node_crash_mid_rebuild_still_heals() {
    let mut tc = TestCluster::start_with(1, 5, Redundancy::Ec { k: 2, m: 1 }, |s| {
        small_chunks_fast_repair(s)
    })
    .await;
    let (acked, _) = put_through_crashes(&mut tc, "obj", 12, 300_000).await;
    // Every write from now on is a rebuild's: no client writes. Each node survives its
    // first and dies at its second.
    for i in 1..=4 {
        tc.arm(
            &format!("node-{i}"),
            "shard-write-before-ack=1*off->1*return(crash)",
        );
    }
    tc.cluster.kill("node-5");
    // Restart whatever crashes until the cluster has healed without node 5.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut crashed = Vec::new();
    loop {
        crashed.extend(tc.restart_crashed());
        let healed = tc.client.status().await.is_ok_and(|s| {
            s.nodes.iter().any(|n| n.node_id == 5 && n.state == "out")
                && s.nodes
                    .iter()
                    .filter(|n| n.node_id != 5)
                    .all(|n| n.state == "up")
                && s.degraded_chunks == 0
                && s.repair_queue == 0
                && s.repaired_chunks > 0
        });
        if healed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not repaired without node 5 within 120 s (crashed: {crashed:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !crashed.is_empty() && crashed.iter().all(|n| n.starts_with("node-")),
        "storage nodes reached their failpoint while rebuilding (crashed: {crashed:?})"
    );
    let lines: usize = crashed
        .iter()
        .map(|n| {
            log_lines(
                &tc.log_path(n),
                &["failpoint: crashing", "shard-write-before-ack"],
            )
        })
        .sum();
    assert!(
        lines >= 1,
        "the crashes happened at the rebuilds' failpoint"
    );
    verify_all(&tc, &acked).await;
}
