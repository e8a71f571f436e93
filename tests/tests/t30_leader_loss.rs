//! Metadata leader loss (DESIGN.md invariants 1, 2, 4): kill -9 the Raft leader while
//! puts stream in; a new leader serves within seconds, puts resume, and every put that
//! was acknowledged is readable afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Keys and values of puts that returned success.
type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_put() {
    let mut tc = TestCluster::start(3, 6, Redundancy::Ec { k: 4, m: 2 }).await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let writer = {
        let client = tc.client.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for i in 0..2000u64 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("stream/{i:05}");
                let data = random_bytes(1000 + (i as usize % 7) * 10_000, i);
                match client.put("default", &key, &data[..]).await {
                    Ok(_) => acked.lock().unwrap().push((key, data)),
                    // A put in flight when the leader dies may fail; it was not acknowledged.
                    Err(_) => failures += 1,
                }
            }
            failures
        })
    };

    // Let some puts land, then kill the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "puts did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = tc.leader().await;
    tc.cluster.kill(&format!("meta-{old}"));
    let killed_at = Instant::now();
    let before = acked.lock().unwrap().len();

    // A new leader is elected and puts resume.
    tc.wait_status("a new leader", Duration::from_secs(30), |s| {
        s.leader_id != 0 && s.leader_id != old
    })
    .await;
    eprintln!(
        "a new leader {:?} after the leader was killed",
        killed_at.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < before + 20 {
        assert!(
            Instant::now() < deadline,
            "puts did not resume after leader loss"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "puts resumed {:?} after the leader was killed",
        killed_at.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let failures = writer.await.unwrap();
    eprintln!("{failures} puts failed during the failover");

    // Bring the old leader back as a follower; every acknowledged put must read back.
    tc.cluster.start_process(&format!("meta-{old}")).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);
    for (key, data) in &acked {
        tc.must_get_equal("default", key, data).await;
    }
    let listed = tc.client.list_all("default", "stream/").await.unwrap();
    assert!(listed.len() >= acked.len());
}
