//! Mutual TLS on every port and role checks (security issue, must-shows 1 and 2), on a
//! real cluster started with certificates (`cairn dev up`'s default):
//! - a peer without a certificate, with one from another CA, with an expired one, or
//!   speaking plaintext is refused by every metadata replica and storage node, and each
//!   daemon logs such a refusal once per peer and reason;
//! - a client certificate cannot call Raft or the storage nodes' internal RPCs; a node
//!   certificate cannot create buckets (on the metadata service or the object API);
//! - SIGHUP reloads a daemon's certificate, key and CA bundle without a restart.

use std::path::Path;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_net::certs::{self, Validity};
use cairn_net::{Role, TlsFiles, Transport, SERVER_NAME};
use cairn_proto::common::ShardId;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::raft_service_client::RaftServiceClient;
use cairn_proto::meta::{ClusterStatusRequest, CreateBucketRequest, RaftPayload};
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::{DeleteShardRequest, RebuildShardRequest, StatShardRequest};
use cairn_proto::object::object_service_client::ObjectServiceClient;
use cairn_tests::{log_lines, TestCluster};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

async fn channel(transport: &Transport, addr: &str) -> Channel {
    transport
        .channel(addr, |e| e.timeout(CALL_TIMEOUT))
        .unwrap()
}

/// The transport of certificate `name` in `dir`.
fn identity(dir: &Path, name: &str) -> Transport {
    Transport::load(&TlsFiles::new(dir, name)).unwrap()
}

/// One call that every role may make: ClusterStatus on a replica, StatShard (a transport
/// failure, or at worst PermissionDenied / NotFound from the handler) on a node.
async fn probe(channel: Channel, is_meta: bool) -> Result<(), tonic::Status> {
    if is_meta {
        MetaServiceClient::new(channel)
            .cluster_status(ClusterStatusRequest {})
            .await
            .map(drop)
    } else {
        NodeServiceClient::new(channel)
            .stat_shard(StatShardRequest {
                id: Some(ShardId {
                    chunk_id: vec![7; 16].into(),
                    index: 0,
                }),
            })
            .await
            .map(drop)
    }
}

fn assert_refused_at_handshake(result: Result<(), tonic::Status>, what: &str, addr: &str) {
    let status = result.expect_err(&format!("{what} at {addr} must be refused"));
    assert!(
        // The failure comes from the connection, never from a handler: TLS 1.3 clients
        // finish their side before the server checks their certificate (the refusal then
        // shows as the connection closing under the call), and a plaintext client reads
        // the server's TLS alert as a broken HTTP/2 frame.
        std::error::Error::source(&status).is_some()
            && matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
            ),
        "{what} at {addr}: expected a transport failure, got {status:?}"
    );
}

fn refusal_lines(log: &Path, reason_part: &str) -> usize {
    log_lines(log, &["refused a connection", reason_part])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_refuses_peers_without_a_valid_cluster_certificate() {
    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    let tls_dir = spec.tls_dir();

    // The real client works (and so does the whole cluster: it became ready over mTLS).
    tc.client
        .create_bucket("fine", Redundancy::Ec { k: 2, m: 1 })
        .await
        .unwrap();

    // Bad identities: another CA's client certificate (trusting our CA, so the server is
    // the one that refuses), an expired certificate from our CA, and no certificate.
    let other = tempfile::tempdir().unwrap();
    certs::init_ca(other.path()).unwrap();
    certs::issue(other.path(), Role::Client, "mallory", Validity::days(30)).unwrap();
    let foreign = tempfile::tempdir().unwrap();
    std::fs::copy(tls_dir.join("ca.pem"), foreign.path().join("ca.pem")).unwrap();
    for ext in ["pem", "key"] {
        std::fs::copy(
            other.path().join(format!("mallory.{ext}")),
            foreign.path().join(format!("mallory.{ext}")),
        )
        .unwrap();
    }
    let now = time::OffsetDateTime::now_utc();
    certs::issue(
        &tls_dir,
        Role::Client,
        "expired",
        Validity {
            not_before: now - time::Duration::days(30),
            not_after: now - time::Duration::days(1),
        },
    )
    .unwrap();
    let ca = std::fs::read(tls_dir.join("ca.pem")).unwrap();
    let no_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name(SERVER_NAME);

    let ports: Vec<(String, String, bool)> = (1..=3)
        .map(|i| (format!("meta-{i}"), spec.meta_addr(i), true))
        .chain((1..=3).map(|j| (format!("node-{j}"), spec.node_addr(j), false)))
        .collect();
    for (name, addr, is_meta) in &ports {
        // Twice each: the second attempt must not be logged again.
        for _ in 0..2 {
            let foreign_ch = channel(&identity(foreign.path(), "mallory"), addr).await;
            assert_refused_at_handshake(probe(foreign_ch, *is_meta).await, "another CA", addr);
            let expired_ch = channel(&identity(&tls_dir, "expired"), addr).await;
            assert_refused_at_handshake(probe(expired_ch, *is_meta).await, "expired", addr);
            let bare = Endpoint::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config(no_cert.clone())
                .unwrap()
                .timeout(CALL_TIMEOUT)
                .connect_lazy();
            assert_refused_at_handshake(probe(bare, *is_meta).await, "no certificate", addr);
            let plain = channel(&Transport::insecure(), addr).await;
            assert_refused_at_handshake(probe(plain, *is_meta).await, "plaintext", addr);
        }
        // The same peer with a good certificate is served.
        let good = channel(&identity(&tls_dir, "client"), addr).await;
        let served = probe(good, *is_meta).await;
        if *is_meta {
            served.unwrap_or_else(|e| panic!("{name}: a client certificate is served: {e:?}"));
        } else {
            // A client may not stat shards: refused by role, after a good handshake.
            assert_eq!(served.unwrap_err().code(), Code::PermissionDenied, "{name}");
        }

        let log = spec.log_path(name);
        for reason in [
            "UnknownIssuer",
            "expired",
            "no certificates",
            "corrupt message",
        ] {
            assert_eq!(
                refusal_lines(&log, reason),
                1,
                "{name} logs a refusal containing {reason:?} exactly once:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_each_certificate_may_call() {
    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    let tls_dir = spec.tls_dir();
    let client = identity(&tls_dir, "client");
    let node = identity(&tls_dir, "node-1");

    // A client certificate cannot speak Raft to any replica...
    for i in 1..=3 {
        let mut raft = RaftServiceClient::new(channel(&client, &spec.meta_addr(i)).await);
        let status = raft
            .vote(RaftPayload {
                data: b"{}".to_vec().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "meta-{i}: {status:?}"
        );
        assert!(status.message().contains("needs role meta"), "{status:?}");
    }
    // ...nor call a storage node's internal RPCs.
    for j in 1..=3 {
        let mut shards = NodeServiceClient::new(channel(&client, &spec.node_addr(j)).await);
        let id = || {
            Some(ShardId {
                chunk_id: vec![1; 16].into(),
                index: 0,
            })
        };
        let delete = shards
            .delete_shard(DeleteShardRequest { id: id(), term: 1 })
            .await
            .unwrap_err();
        assert_eq!(
            delete.code(),
            Code::PermissionDenied,
            "node-{j}: {delete:?}"
        );
        let stat = shards
            .stat_shard(StatShardRequest { id: id() })
            .await
            .unwrap_err();
        assert_eq!(stat.code(), Code::PermissionDenied, "node-{j}: {stat:?}");
        // Rebuilds are ordered by the metadata service only: not by a client, nor by
        // another storage node (which may only read its peers' shards for one).
        for (who, identity) in [("client", &client), ("node", &node)] {
            let mut shards = NodeServiceClient::new(channel(identity, &spec.node_addr(j)).await);
            let rebuild = shards
                .rebuild_shard(RebuildShardRequest {
                    id: id(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(
                rebuild.code(),
                Code::PermissionDenied,
                "node-{j} asked by a {who}: {rebuild:?}"
            );
        }
    }

    // A node certificate cannot create buckets, through the metadata service or the
    // object API; nothing was created.
    let mut meta = MetaServiceClient::new(channel(&node, &spec.meta_addr(1)).await);
    let status = meta
        .create_bucket(CreateBucketRequest {
            name: "by-a-node".into(),
            redundancy: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut objects = ObjectServiceClient::new(channel(&node, &spec.node_addr(1)).await);
    let status = objects
        .create_bucket(cairn_proto::object::CreateBucketRequest {
            name: "by-a-node".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let buckets = tc.client.list_buckets().await.unwrap();
    assert!(buckets.iter().all(|b| b.name != "by-a-node"), "{buckets:?}");

    // The roles' own calls work: a client creates a bucket through the object API (the
    // node's gateway certificate acts for it) and a replica took the node's heartbeats
    // (all nodes are up).
    let mut objects = ObjectServiceClient::new(channel(&client, &spec.node_addr(2)).await);
    objects
        .create_bucket(cairn_proto::object::CreateBucketRequest {
            name: "by-a-client".into(),
            redundancy: Some(Redundancy::Ec { k: 2, m: 1 }.into()),
        })
        .await
        .unwrap();
    let status = tc.client.status().await.unwrap();
    assert!(status.nodes.iter().all(|n| n.state == "up"), "{status:?}");
    // A caller two protocol versions away, with a valid certificate, is refused by every
    // replica and node before anything is done, both versions named (this build's own
    // calls, above and in every other test, name this build's version).
    let far = cairn_net::protocol::PROTOCOL_VERSION + 2;
    let agent = format!("cairn/9.9.9 cairn-protocol/{far}");
    for (addr, is_meta) in (1..=3)
        .map(|i| (spec.meta_addr(i), true))
        .chain((1..=3).map(|j| (spec.node_addr(j), false)))
    {
        let far_channel = client
            .channel(&addr, |e| {
                e.timeout(CALL_TIMEOUT)
                    .user_agent(agent.clone())
                    .expect("a valid user agent")
            })
            .unwrap();
        let status = probe(far_channel, is_meta).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{addr}: {status:?}"
        );
        assert!(
            status
                .message()
                .contains(&format!("speaks Cairn protocol {far}")),
            "{addr}: {status:?}"
        );
    }
}

/// Certificate rotation without downtime: a second CA is appended to the bundle every
/// daemon trusts; until a daemon gets SIGHUP it refuses a certificate from the new CA,
/// afterwards it serves it, and the cluster stays up throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_ca_bundle_without_a_restart() {
    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    let tls_dir = spec.tls_dir();
    let next = tempfile::tempdir().unwrap();
    certs::init_ca(next.path()).unwrap();
    certs::issue(next.path(), Role::Client, "rotated", Validity::days(30)).unwrap();
    let old_ca = std::fs::read_to_string(tls_dir.join("ca.pem")).unwrap();
    let new_ca = std::fs::read_to_string(next.path().join("ca.pem")).unwrap();
    std::fs::write(tls_dir.join("ca.pem"), format!("{old_ca}{new_ca}")).unwrap();
    // The rotated client trusts the servers' (old) CA and presents a new-CA certificate.
    let holder = tempfile::tempdir().unwrap();
    std::fs::write(holder.path().join("ca.pem"), &old_ca).unwrap();
    for ext in ["pem", "key"] {
        std::fs::copy(
            next.path().join(format!("rotated.{ext}")),
            holder.path().join(format!("rotated.{ext}")),
        )
        .unwrap();
    }
    let rotated = identity(holder.path(), "rotated");
    let addr = spec.meta_addr(1);

    let before = probe(channel(&rotated, &addr).await, true).await;
    assert_refused_at_handshake(before, "new CA before SIGHUP", &addr);
    let pid = tc.cluster.pid("meta-1").expect("meta-1 runs");
    // SAFETY: kill(2) with a pid this test's cluster started and a valid signal.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match probe(channel(&rotated, &addr).await, true).await {
            Ok(()) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("meta-1 still refuses the new CA after SIGHUP: {e:?}"),
        }
    }
    assert_eq!(tc.cluster.pid("meta-1"), Some(pid), "no restart");
    // The old certificates keep working, on the reloaded replica and the others.
    let status = tc.client.status().await.unwrap();
    assert!(status.nodes.iter().all(|n| n.state == "up"), "{status:?}");
}
