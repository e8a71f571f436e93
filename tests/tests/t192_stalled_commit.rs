//! A put stalled past the leader's pending-chunk time (hardening issue, defect 8): its
//! chunks are no longer protected from the storage nodes' orphan sweep, which deletes
//! their shards. Before the fix the late commit was accepted anyway: an acknowledged object
//! whose shards were gone. Now the commit is refused with an error that says why, and
//! nothing acknowledged is unreadable.

use std::time::Duration;

use cairn_client::ClientError;
use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_its_chunks_expired_is_refused_not_acknowledged() {
    let tc = TestCluster::start_with(3, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        s.env
            .push(("CAIRN_META_PENDING_CHUNK_TTL_MS".into(), "1500".into()));
        s.env
            .push(("CAIRN_NODE_ORPHAN_GRACE_MS".into(), "500".into()));
        s.env
            .push(("CAIRN_NODE_ORPHAN_SWEEP_INTERVAL_MS".into(), "200".into()));
    })
    .await;
    tc.must_put("default", "before", b"committed in time").await;
    let shards_before = tc.shard_files().len();

    // A put that stores its shards, then stalls for 6 s before committing.
    let data = random_bytes(150_000, 192);
    let put = tc.put_stalled_before_commit("default", "stalled", data.clone(), 6000);
    // The stalled put's shards appear, then the sweep takes them (bounded wait).
    let mut grew = false;
    for _ in 0..100 {
        let now = tc.shard_files().len();
        grew |= now > shards_before;
        if grew && now == shards_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let put = tokio::task::spawn_blocking(move || put.join().unwrap())
        .await
        .unwrap();
    assert!(grew, "the stalled put stored shards");
    assert_eq!(
        tc.shard_files().len(),
        shards_before,
        "the sweep deleted the stalled put's shards"
    );
    match put {
        Err(ClientError::FailedPrecondition { message }) => {
            assert!(message.contains("pending-chunk ttl"), "{message}");
            assert!(message.contains("write the data again"), "{message}");
        }
        Ok(outcome) => {
            let read = tc.get("default", "stalled").await;
            panic!(
                "the late commit was acknowledged ({outcome:?}) for swept shards; reading \
                 it gives {:?}",
                read.map(|d| d.len())
            );
        }
        Err(other) => panic!("expected the commit to be refused as expired, got {other:?}"),
    }
    assert!(matches!(
        tc.get("default", "stalled").await,
        Err(ClientError::NotFound { .. })
    ));
    // Writing again works, and what was committed in time still reads.
    tc.must_put("default", "stalled", &data).await;
    tc.must_get_equal("default", "stalled", &data).await;
    tc.must_get_equal("default", "before", b"committed in time")
        .await;
}
