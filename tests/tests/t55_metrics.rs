//! Every daemon serves Prometheus metrics over HTTP: Raft state, cluster health and
//! request counts on the metadata service; shards, bytes and requests on storage nodes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// GET /metrics over plain HTTP/1.1.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// Scrapes until every wanted line prefix appears (gauges refresh once a second).
fn must_scrape(addr: &str, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(addr);
        if wanted
            .iter()
            .all(|w| text.lines().any(|l| l.starts_with(w)))
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} lacks {wanted:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_serve_prometheus_metrics() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    tc.must_put("default", "m", &random_bytes(100_000, 1)).await;
    let spec = tc.cluster.spec().clone();
    let meta = tokio::task::spawn_blocking(move || {
        must_scrape(
            &spec.meta_metrics_addr(1),
            &[
                "cairn_meta_is_leader 1",
                "cairn_meta_raft_term",
                "cairn_meta_resident_memory_bytes",
                "cairn_meta_state_memory_bytes{kind=\"block_cache\"}",
                "cairn_meta_state_memory_bytes{kind=\"memtables\"}",
                "cairn_meta_log_memory_bytes{kind=\"memtables\"}",
                "cairn_meta_group_commit_commands_total",
                "cairn_cluster_inodes",
                "cairn_cluster_nodes{state=\"up\"} 3",
                "cairn_cluster_chunks 1",
                "cairn_cluster_inline_bytes 0",
                "cairn_cluster_degraded_chunks 0",
                "cairn_meta_requests_total{method=\"commit_object\"}",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        meta.contains("# TYPE cairn_meta_requests_total counter"),
        "{meta}"
    );
    // The put's commit is in the state database's memtables (written, not yet flushed).
    let memtables = meta
        .lines()
        .find_map(|l| l.strip_prefix("cairn_meta_state_memory_bytes{kind=\"memtables\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("memtables gauge");
    assert!(memtables > 0.0, "{meta}");
    let spec = tc.cluster.spec().clone();
    tokio::task::spawn_blocking(move || {
        must_scrape(
            &spec.node_metrics_addr(1),
            &[
                "cairn_node_shards 1",
                "cairn_node_used_bytes",
                "cairn_node_requests_total{method=\"put_shard\"} 1",
                "cairn_node_bytes_in_total",
            ],
        )
    })
    .await
    .unwrap();
}

/// A mount killed with -9 stops renewing its session: once the lease expires the leader
/// ends the session (the mount is fenced) and counts it in
/// `cairn_meta_sessions_fenced_total`, which the `CairnMountSessionFenced` alert of
/// `deploy/monitoring` watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_fenced_by_its_lease_is_counted() {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |spec| {
        spec.env
            .push(("CAIRN_META_SESSION_LEASE_MS".into(), "2000".into()));
    })
    .await;
    let mountpoint = tc.dir().join("mnt");
    let name = tc.cluster.add_mount(&mountpoint, &[]).await.unwrap();
    let spec = tc.cluster.spec().clone();
    let before = tokio::task::spawn_blocking(move || scrape(&spec.meta_metrics_addr(1)))
        .await
        .unwrap();
    assert!(
        !before.contains("cairn_meta_sessions_fenced_total"),
        "no session expired yet:\n{before}"
    );
    tc.cluster.kill(&name);
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&mountpoint)
        .status();
    let spec = tc.cluster.spec().clone();
    tokio::task::spawn_blocking(move || {
        must_scrape(
            &spec.meta_metrics_addr(1),
            &["cairn_meta_sessions_fenced_total 1"],
        )
    })
    .await
    .unwrap();
}
