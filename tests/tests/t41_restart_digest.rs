//! Every metadata replica killed (-9) and restarted in turn while puts and deletes go on,
//! with a snapshot every 50 entries: afterwards every acknowledged object reads back,
//! and the three replicas' applied states are identical (the same digest of every
//! table at the same applied index). The state database is written unsynced after the
//! synced log, so a replica killed mid-batch must come back to exactly the state the
//! others have.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::StateDigestRequest;
use cairn_tests::{grpc_channel, random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_restarted_mid_load_end_with_identical_state() {
    let mut tc = TestCluster::start(3, 3, Redundancy::Replicas { n: 3 }).await;
    let metas: Vec<String> = (1..=3).map(|i| format!("meta-{i}")).collect();
    for name in &metas {
        tc.cluster
            .set_env(name, "CAIRN_META_SNAPSHOT_EVERY", Some("50"))
            .unwrap();
    }

    // The load: puts of new keys, every third followed by a delete of an older one.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let client = tc.cluster.client().unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut failures = 0u32;
            for i in 0..100_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("k/{i}");
                let data = random_bytes(1000 + (i as usize % 7) * 100, i);
                match client.put("default", &key, &data[..]).await {
                    Ok(_) => {
                        acked.insert(key, data);
                    }
                    Err(_) => failures += 1,
                }
                if i % 3 == 2 {
                    let old = format!("k/{}", i / 2);
                    if acked.contains_key(&old) && client.delete("default", &old).await.is_ok() {
                        acked.remove(&old);
                    }
                }
            }
            (acked, failures)
        })
    };

    for name in &metas {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tc.cluster.kill(name);
        tokio::time::sleep(Duration::from_millis(300)).await;
        tc.cluster.start_process(name).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failures) = load.await.unwrap();
    assert!(
        acked.len() >= 50,
        "the load made progress: {} objects, {failures} failed puts",
        acked.len()
    );
    for (key, data) in &acked {
        tc.must_get_equal("default", key, data).await;
    }

    // Every replica built snapshots (checkpoints) during the load.
    for name in &metas {
        let snapshots = tc.dir().join(name).join("raft/state/snapshots");
        let metas_on_disk = std::fs::read_dir(&snapshots)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "meta"))
            })
            .count();
        assert_eq!(
            metas_on_disk, 1,
            "{name}: one snapshot kept in {snapshots:?}"
        );
    }

    // The same applied index on all three (background work such as garbage collection
    // may still commit, so look until they meet), then the same digest.
    let spec = tc.cluster.spec().clone();
    let mut last = Vec::new();
    for _ in 0..120 {
        let mut seen = Vec::new();
        for i in 1..=3 {
            let channel = grpc_channel(&spec, &spec.meta_addr(i), "client");
            match MetaServiceClient::new(channel)
                .state_digest(StateDigestRequest {})
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    seen.push((r.applied_index, r.digest));
                }
                Err(e) => seen.push((0, format!("error: {e}"))),
            }
        }
        if seen.iter().all(|s| s.0 > 0 && s.0 == seen[0].0) {
            assert!(
                seen.iter().all(|s| s.1 == seen[0].1),
                "replicas at applied index {} disagree: {seen:?}",
                seen[0].0
            );
            return;
        }
        last = seen;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the replicas never reached the same applied index: {last:?}");
}
