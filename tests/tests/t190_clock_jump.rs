//! Clock jumps (issue: fault injection): the storage nodes run under libfaketime, whose
//! wall clock the test moves at run time (the monotonic clock is left alone, as an NTP
//! step would). The nodes read the wall clock to age shard files for the orphan sweep.
//!
//! Regression test for a lost write found this way: a write whose shards are stored but
//! not yet committed is protected from the sweep by the leader's in-memory list of writes
//! in progress, and after a leader change only by the shards' age. With the nodes' clocks
//! jumped two hours forward, the new leader did not know the shards, they looked two hours
//! old, and the sweep deleted them; the client then committed the object (acknowledged)
//! and it could not be read. The sweep now deletes a shard only after it has been unknown
//! for a whole grace period by the monotonic clock.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_and_a_leader_change_do_not_lose_a_write_in_progress() {
    let mut tc = TestCluster::start_with(3, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        // The default grace (an hour), swept often.
        s.env
            .push(("CAIRN_NODE_ORPHAN_SWEEP_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    let clock = tc.nodes_on_a_movable_clock();
    tc.wait_status("nodes back on faketime", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    tc.must_put("default", "before", b"written before the jump")
        .await;

    // The nodes' wall clocks jump two hours forward: every shard file now looks older
    // than the sweep's one-hour grace.
    std::fs::write(&clock, "+2h\n").unwrap();

    // A put that stores its shards, then stalls for 6 s before committing.
    let data = random_bytes(100_000, 190);
    let put = tc.put_stalled_before_commit("default", "in-progress", data.clone(), 6000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The leader, which knew the write was in progress, dies; the next one does not.
    let leader = tc.leader().await;
    tc.cluster.kill(&format!("meta-{leader}"));
    tc.cluster.start_process(&format!("meta-{leader}")).unwrap();
    tc.leader().await;

    let put = tokio::task::spawn_blocking(move || put.join().unwrap())
        .await
        .unwrap();
    put.expect("the put is acknowledged after the leader change");
    // Several sweeps ran while the put stalled; the object must read back.
    std::fs::write(&clock, "+0\n").unwrap();
    tc.must_get_equal("default", "in-progress", &data).await;
    tc.must_get_equal("default", "before", b"written before the jump")
        .await;
}
