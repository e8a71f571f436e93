//! Bad input (DESIGN.md invariant 6): invalid names, unknown buckets and keys, schemes
//! that need more nodes than exist, garbage bytes and oversized gRPC messages all get a
//! clear error and a non-zero exit; the daemons keep running and nothing changes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_proto::common::ShardId;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::ListObjectsRequest;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::StatShardRequest;
use cairn_tests::{grpc_channel, TestCluster};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Every bad request fails with one clear line on stderr and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    tc.must_put("default", "keep", b"precious").await;
    let long_key = format!("default/{}", "k".repeat(1025));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["put".into(), "default/".into(), "-".into()], "empty"),
        (
            vec!["put".into(), "default/../x".into(), "-".into()],
            "'..'",
        ),
        (
            vec!["put".into(), "default/a/./b".into(), "-".into()],
            "'.'",
        ),
        (vec!["put".into(), long_key, "-".into()], "1025 bytes"),
        (
            vec!["put".into(), "Bad_Bucket/x".into(), "-".into()],
            "bucket name",
        ),
        (
            vec!["put".into(), "nosuchbucket/x".into(), "-".into()],
            "does not exist",
        ),
        (
            vec!["get".into(), "default/missing".into(), "-".into()],
            "does not exist",
        ),
        (
            vec!["stat".into(), "nosuchbucket/x".into()],
            "does not exist",
        ),
        (
            vec!["rm".into(), "default/missing".into()],
            "does not exist",
        ),
        (vec!["ls".into(), "nosuchbucket".into()], "does not exist"),
        (
            vec![
                "bucket".into(),
                "create".into(),
                "wide".into(),
                "--ec".into(),
                "8+3".into(),
            ],
            "needs at least 9 storage nodes",
        ),
        (
            vec![
                "bucket".into(),
                "create".into(),
                "zero".into(),
                "--ec".into(),
                "4+0".into(),
            ],
            "out of range",
        ),
        (
            vec!["bucket".into(), "create".into(), "default".into()],
            "already exists",
        ),
        (
            vec![
                "get".into(),
                "default/keep".into(),
                "-".into(),
                "--range".into(),
                "5-100".into(),
            ],
            "outside",
        ),
    ];
    for (args, expect) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tc.cli_with_stdin(&args, Some(b"data"));
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(expect),
            "{args:?}: stderr {err:?} lacks {expect:?}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("cairn: "), "{err}");
    }
    // A key with a NUL byte cannot pass through argv; the library refuses it.
    let err = tc
        .client
        .put("default", "a\0b", &b"x"[..])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");

    // Nothing changed.
    let keys: Vec<String> = tc
        .client
        .list_all("default", "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["keep"]);
    assert_eq!(tc.client.list_buckets().await.unwrap().len(), 1);
    tc.must_get_equal("default", "keep", b"precious").await;
}

/// Raw garbage on every daemon's port, and an oversized gRPC message, are refused; every
/// daemon keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_do_not_hurt_daemons() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    tc.must_put("default", "keep", b"precious").await;
    let spec = tc.cluster.spec().clone();
    let addrs: Vec<String> = std::iter::once(spec.meta_addr(1))
        .chain((1..=3).map(|j| spec.node_addr(j)))
        .collect();
    for addr in &addrs {
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0xffu8; 4096][..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x01\xff\xff\xff\xff\xff",
        ] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(garbage);
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
        }
    }
    // A 9 MiB gRPC message (over the 8 MiB limit), sent by a client without our
    // client-side limits, is refused by the metadata service and by a storage node.
    let huge = "x".repeat(9 << 20);
    let mut meta = MetaServiceClient::new(grpc_channel(&spec, &spec.meta_addr(1), "client"))
        .max_encoding_message_size(usize::MAX);
    let status = meta
        .list_objects(ListObjectsRequest {
            bucket: "default".into(),
            prefix: huge.clone(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    let mut node = NodeServiceClient::new(grpc_channel(&spec, &spec.node_addr(1), "meta-1"))
        .max_encoding_message_size(usize::MAX);
    let status = node
        .stat_shard(StatShardRequest {
            id: Some(ShardId {
                chunk_id: huge.into_bytes().into(),
                index: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    // Our own client refuses an over-long prefix before sending it.
    let err = tc
        .client
        .list_page("default", &"x".repeat(2000), "", 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit is 1024"), "{err}");
    let mut cluster = tc;
    let exited = cluster.cluster.reap_exited();
    assert!(exited.is_empty(), "daemons exited: {exited:?}");
    cluster.must_get_equal("default", "keep", b"precious").await;
    cluster
        .wait_status("every node up", Duration::from_secs(10), |s| {
            s.nodes.iter().all(|n| n.state == "up")
        })
        .await;
}
