//! Certificate rotation without downtime (security issue): the whole cluster moves to a
//! new CA with three rounds of SIGHUP and no restart (trust both CAs; swap every
//! certificate; trust only the new CA). Each daemon's *outgoing* connections must then
//! present its new certificate: afterwards every metadata replica and a storage node are
//! restarted (trusting only the new CA), so every connection is made anew by the daemons
//! that were only reloaded, and the cluster must work, with no handshake refused for a
//! certificate along the way. A client presenting an old-CA certificate is refused.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_net::certs::{self, Validity};
use cairn_net::{Role, TlsFiles, Transport};
use cairn_proto::object::object_service_client::ObjectServiceClient;
use cairn_proto::object::GetObjectRequest;
use cairn_tests::{grpc_channel, log_lines, random_bytes, TestCluster};

/// The role of a certificate the development cluster issued, from its name.
fn role_of(name: &str) -> Role {
    match name.split('-').next() {
        Some("meta") => Role::Meta,
        Some("node") => Role::Node,
        Some("gateway") => Role::Gateway,
        _ => Role::Client,
    }
}

/// Handshakes refused for a certificate reason (not, say, a peer hanging up).
fn certificate_refusals(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("refused a connection")
                && [
                    "Unknown",
                    "alert",
                    "BadCertificate",
                    "expired",
                    "no certificates",
                ]
                .iter()
                .any(|r| l.contains(r))
        })
        .count()
}

/// SIGHUPs every daemon and waits until each logged its reload (a node reloads two
/// identities: its own and its object API's gateway certificate).
async fn reload_all(tc: &TestCluster, daemons: &[String]) {
    const RELOADED: &str = "SIGHUP: reloaded the TLS certificate";
    let before: Vec<usize> = daemons
        .iter()
        .map(|d| log_lines(&tc.log_path(d), &[RELOADED]))
        .collect();
    for d in daemons {
        tc.cluster.signal(d, libc::SIGHUP);
    }
    for (d, before) in daemons.iter().zip(before) {
        let want = before + if d.starts_with("node-") { 2 } else { 1 };
        let deadline = Instant::now() + Duration::from_secs(10);
        while log_lines(&tc.log_path(d), &[RELOADED]) < want {
            assert!(Instant::now() < deadline, "{d} did not log its reload");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            log_lines(&tc.log_path(d), &["cannot reload the TLS files"]),
            0,
            "{d} failed a reload"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_moves_every_daemon_to_a_new_ca_without_a_restart() {
    let mut tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    let tls_dir = spec.tls_dir();
    let before = random_bytes(400_000, 11);
    tc.must_put("default", "before", &before).await;
    let daemons: Vec<String> = tc
        .cluster
        .names()
        .into_iter()
        .filter(|n| n.starts_with("meta-") || n.starts_with("node-"))
        .collect();
    assert_eq!(daemons.len(), 6, "{daemons:?}");

    // Every certificate in the cluster's directory, issued again by a new CA.
    let names: Vec<String> = std::fs::read_dir(&tls_dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".pem")
                .filter(|n| *n != "ca")
                .map(str::to_string)
        })
        .collect();
    assert!(names.len() >= 10, "{names:?}"); // 3 meta, 3 node, 3 gateway, client
    let next = tempfile::tempdir().unwrap();
    certs::init_ca(next.path()).unwrap();
    for name in &names {
        certs::issue(next.path(), role_of(name), name, Validity::days(30)).unwrap();
    }
    // Keep the old client identity, to show the old CA is refused at the end.
    let old = tempfile::tempdir().unwrap();
    for file in ["ca.pem", "client.pem", "client.key"] {
        std::fs::copy(tls_dir.join(file), old.path().join(file)).unwrap();
    }
    let refusals_at_start: Vec<usize> = daemons
        .iter()
        .map(|d| certificate_refusals(&tc.log_path(d)))
        .collect();

    // 1. Trust both CAs.
    let old_ca = std::fs::read_to_string(tls_dir.join("ca.pem")).unwrap();
    let new_ca = std::fs::read_to_string(next.path().join("ca.pem")).unwrap();
    std::fs::write(tls_dir.join("ca.pem"), format!("{old_ca}{new_ca}")).unwrap();
    reload_all(&tc, &daemons).await;
    tc.client.transport().reload().unwrap();
    // 2. Every component presents its new certificate.
    for name in &names {
        for ext in ["pem", "key"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(next.path().join(&file), tls_dir.join(&file)).unwrap();
        }
    }
    reload_all(&tc, &daemons).await;
    tc.client.transport().reload().unwrap();
    // 3. Trust only the new CA.
    std::fs::write(tls_dir.join("ca.pem"), &new_ca).unwrap();
    reload_all(&tc, &daemons).await;
    tc.client.transport().reload().unwrap();
    let during = random_bytes(300_000, 12);
    tc.must_put("default", "during", &during).await;

    // Every metadata replica restarts in turn (from the new files): the storage nodes,
    // the replicas not yet restarted and the nodes' object API connect to it anew, with
    // the certificates they were given by SIGHUP alone.
    let all_up = |s: &cairn_client::ClusterStatus| {
        s.replicas.len() == 3
            && s.nodes.len() == 3
            && s.nodes
                .iter()
                .all(|n| n.state == "up" && n.last_heartbeat_ms < 1000)
    };
    // meta-1, the first leader, goes last: it makes connections to the others with the
    // certificate SIGHUP gave it.
    for i in [3, 2, 1] {
        let name = format!("meta-{i}");
        tc.cluster.stop(&name);
        tc.cluster.start_process(&name).unwrap();
        tc.wait_status("replica back", Duration::from_secs(45), all_up)
            .await;
        // Let the restarted replica catch up before the next one goes.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A storage node restarts too: the replicas and the other nodes' gateways connect
    // to it anew.
    tc.cluster.stop("node-1");
    tc.cluster.start_process("node-1").unwrap();
    tc.wait_status("node back", Duration::from_secs(45), all_up)
        .await;

    // The cluster serves: old and new objects, through the library and every node's
    // object API (whose gateway identity calls the metadata service and other nodes).
    tc.must_get_equal("default", "before", &before).await;
    tc.must_get_equal("default", "during", &during).await;
    let after = random_bytes(500_000, 13);
    tc.must_put("default", "after", &after).await;
    for (j, key) in [(1, "before"), (2, "after"), (3, "before")] {
        let mut api = ObjectServiceClient::new(grpc_channel(&spec, &spec.node_addr(j), "client"));
        let mut stream = api
            .get_object(GetObjectRequest {
                bucket: "default".into(),
                key: key.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("object API get {key}: {e}"))
            .into_inner();
        while stream.message().await.unwrap().is_some() {}
    }
    // No daemon refused a handshake for a certificate reason along the way: every
    // connection after the rotation presented a new-CA certificate.
    for (d, at_start) in daemons.iter().zip(refusals_at_start) {
        assert_eq!(
            certificate_refusals(&tc.log_path(d)),
            at_start,
            "{d} refused a certificate during the rotation (see {:?})",
            tc.log_path(d)
        );
    }

    // An old-CA certificate is refused by the servers (the client trusts the new CA, so
    // the refusal is theirs).
    std::fs::write(old.path().join("ca.pem"), &new_ca).unwrap();
    let stale = Transport::load(&TlsFiles::new(old.path(), "client")).unwrap();
    for (daemon, addr) in [("meta-2", spec.meta_addr(2)), ("node-3", spec.node_addr(3))] {
        let refusals = certificate_refusals(&tc.log_path(daemon));
        let channel = stale
            .channel(&addr, |e| e.timeout(Duration::from_secs(5)))
            .unwrap();
        let status = cairn_proto::meta::meta_service_client::MetaServiceClient::new(channel)
            .cluster_status(cairn_proto::meta::ClusterStatusRequest {})
            .await
            .expect_err("an old-CA client must be refused");
        assert!(
            std::error::Error::source(&status).is_some(),
            "{addr}: a connection failure, not an answer: {status:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while certificate_refusals(&tc.log_path(daemon)) == refusals {
            assert!(
                Instant::now() < deadline,
                "{daemon} did not log the refusal"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
