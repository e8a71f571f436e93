//! One client floods a storage node (security issue, must-show 5): many concurrent shard
//! writes that announce the maximum size and stream it, and messages over the size limit.
//! The node refuses what exceeds that client's in-flight budget (RESOURCE_EXHAUSTED),
//! keeps its resident memory bounded, and keeps serving another client's writes and reads
//! meanwhile; once the flood stops, the flooding client is served again.

use std::time::Duration;

use bytes::Bytes;
use cairn_common::Redundancy;
use cairn_net::certs::{self, Validity};
use cairn_net::Role;
use cairn_proto::common::ShardId;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::{put_shard_request, PutShardHeader, PutShardRequest};
use cairn_tests::{grpc_channel, random_bytes, TestCluster};
use tonic::Code;

const STREAMS: usize = 48;
const ANNOUNCED: u64 = 64 << 20;
const FRAME: usize = 4 << 20;
/// The node's budget for one client is 256 MiB; with its other buffers it must stay
/// well under this.
const RSS_BOUND_MIB: u64 = 900;

fn put_stream(
    chunk: u8,
    announced: u64,
    frames: usize,
    frame: Bytes,
) -> impl futures::Stream<Item = PutShardRequest> {
    let header = PutShardRequest {
        part: Some(put_shard_request::Part::Header(PutShardHeader {
            id: Some(ShardId {
                chunk_id: vec![chunk; 16].into(),
                index: 0,
            }),
            length: announced,
            blake3: vec![0; 32].into(),
        })),
    };
    let data = (0..frames).map(move |_| PutShardRequest {
        part: Some(put_shard_request::Part::Data(frame.clone())),
    });
    futures::stream::iter(std::iter::once(header).chain(data))
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_refused_and_others_are_served() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    certs::issue(&spec.tls_dir(), Role::Client, "flood", Validity::days(1)).unwrap();
    let node_pid = tc.cluster.pid("node-1").expect("node-1 runs");
    let target = spec.node_addr(1);
    let frame = Bytes::from(random_bytes(FRAME, 1));

    // The flood: STREAMS concurrent writes, each announcing 64 MiB and sending all of it.
    let flood = {
        let (spec, target, frame) = (spec.clone(), target.clone(), frame.clone());
        tokio::spawn(async move {
            let calls = (0..STREAMS).map(|i| {
                let mut node = NodeServiceClient::new(grpc_channel(&spec, &target, "flood"))
                    .max_encoding_message_size(usize::MAX);
                let stream = put_stream(i as u8, ANNOUNCED, 16, frame.clone());
                async move { node.put_shard(stream).await.map(drop) }
            });
            futures::future::join_all(calls).await
        })
    };
    // Meanwhile: oversized messages, and the node's memory.
    let mut oversized = NodeServiceClient::new(grpc_channel(&spec, &target, "flood"))
        .max_encoding_message_size(usize::MAX);
    let big = Bytes::from(vec![0u8; 9 << 20]);
    let status = oversized
        .put_shard(put_stream(200, ANNOUNCED, 1, big))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // Another client keeps writing and reading through the same node (and the others).
    let mut peak = 0;
    for i in 0..10u64 {
        let data = random_bytes(1 << 20, 100 + i);
        let key = format!("during-flood-{i}");
        tokio::time::timeout(
            Duration::from_secs(60),
            tc.client.put("default", &key, &data[..]),
        )
        .await
        .expect("a put during the flood does not hang")
        .expect("a put during the flood succeeds");
        let back = tokio::time::timeout(Duration::from_secs(60), tc.get("default", &key))
            .await
            .expect("a get during the flood does not hang")
            .expect("a get during the flood succeeds");
        assert!(back == data, "object {key} reads back what was written");
        peak = peak.max(rss_mib(node_pid));
    }

    let results = flood.await.unwrap();
    peak = peak.max(rss_mib(node_pid));
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    let other_errors: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|s| !matches!(s.code(), Code::ResourceExhausted | Code::InvalidArgument))
        .collect();
    eprintln!("flood: {refused} of {STREAMS} streams refused; node-1 peak RSS {peak} MiB");
    // 48 x 64 MiB = 3 GiB offered against a 256 MiB budget: most streams are refused.
    assert!(
        refused >= STREAMS / 2,
        "{refused} of {STREAMS} refused: {results:?}"
    );
    assert!(other_errors.is_empty(), "{other_errors:?}");
    assert!(
        peak < RSS_BOUND_MIB,
        "node-1 resident memory peaked at {peak} MiB during the flood"
    );
    assert!(tc.cluster.pid("node-1").is_some());

    // The flood is over: its budget is free again for a well-formed write.
    let small = Bytes::from_static(b"hello");
    let mut node = NodeServiceClient::new(grpc_channel(&spec, &target, "flood"));
    let stream = futures::stream::iter([
        PutShardRequest {
            part: Some(put_shard_request::Part::Header(PutShardHeader {
                id: Some(ShardId {
                    chunk_id: vec![201; 16].into(),
                    index: 0,
                }),
                length: 5,
                blake3: blake3::hash(b"hello").as_bytes().to_vec().into(),
            })),
        },
        PutShardRequest {
            part: Some(put_shard_request::Part::Data(small)),
        },
    ]);
    node.put_shard(stream).await.unwrap();
}
