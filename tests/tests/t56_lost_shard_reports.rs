//! Lost-shard reports (hardening issue, defect 2). A reader that finds a shard missing or
//! corrupt reports it, and the leader drops the placement so repair rebuilds the shard.
//! Before the fix any client could report any placement and it was dropped unchecked: a
//! user allowed only to read could report three shards of an ec 4+2 chunk and make it
//! unreadable for good (repair needs four). Now the caller must be allowed to read the
//! bucket it names, and the leader drops a placement only when the node holding the shard
//! confirms it missing or corrupt.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::{LookupObjectRequest, ReportShardLostRequest};
use cairn_tests::{grpc_channel, random_bytes, TestCluster};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_confirmed_losses_reported_by_readers_drop_placements() {
    // Repair is slowed so that a dropped placement stays visible as a degraded chunk.
    let tc = TestCluster::start_with(3, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "600000".into()));
    })
    .await;
    let data = random_bytes(1_000_000, 56);
    tc.must_put("default", "doc", &data).await;
    tc.client
        .set_grant("default", "reader", "read")
        .await
        .unwrap();
    tc.client_with_new_cert("reader");
    tc.client_with_new_cert("stranger");
    let spec = tc.cluster.spec().clone();
    // A follower's address too: a forwarded report must keep its caller.
    let meta = |user: &str, i: usize| {
        MetaServiceClient::new(grpc_channel(&spec, &spec.meta_addr(i), user))
    };
    let mut reader = meta("reader", 1);

    let lookup = reader
        .lookup_object(LookupObjectRequest {
            bucket: "default".into(),
            key: "doc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lookup.chunks.len(), 1);
    let chunk = &lookup.chunks[0];
    assert_eq!(chunk.shards.len(), 6);
    let report = |index: u32, node_id: u64, bucket: &str| ReportShardLostRequest {
        chunk_id: chunk.chunk_id.clone(),
        index,
        node_id,
        bucket: bucket.into(),
    };

    // Without a grant, or without naming a bucket, a client's report is refused.
    for (user, bucket, code) in [
        ("stranger", "default", Code::PermissionDenied),
        ("reader", "", Code::PermissionDenied),
    ] {
        let p = &chunk.shards[0];
        let refused = meta(user, 2)
            .report_shard_lost(report(p.index, p.node_id, bucket))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{user} / {bucket:?}: {refused:?}");
    }

    // The reader reports three intact shards lost, through two replicas: each is checked
    // with its node and kept.
    for (n, p) in chunk.shards.iter().take(3).enumerate() {
        let answer = meta("reader", 1 + n % 2)
            .report_shard_lost(report(p.index, p.node_id, "default"))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.dropped, "shard {} was intact", p.index);
    }
    let status = tc.client.status().await.unwrap();
    assert_eq!(status.degraded_chunks, 0, "no placement was dropped");
    tc.must_get_equal("default", "doc", &data).await;

    // A shard that really is gone: its report is confirmed and the placement dropped.
    let gone = chunk
        .shards
        .iter()
        .find(|p| p.index == 5)
        .expect("shard 5 is placed");
    let file = tc
        .shard_files()
        .into_iter()
        .find(|f| {
            f.extension().is_some_and(|e| e == "5")
                && f.starts_with(tc.dir().join(format!("node-{}", gone.node_id)))
        })
        .expect("shard 5's file");
    std::fs::remove_file(&file).unwrap();
    let answer = reader
        .report_shard_lost(report(gone.index, gone.node_id, "default"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.dropped, "a missing shard's report is confirmed");
    tc.wait_status("the chunk is degraded", Duration::from_secs(10), |s| {
        s.degraded_chunks == 1
    })
    .await;
    tc.must_get_equal("default", "doc", &data).await;
}
