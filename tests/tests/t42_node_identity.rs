//! A storage node's data directory is part of its identity (issue #16, defect 5): a node
//! that comes back with an empty, wiped or unmounted data directory is never taken for the
//! node that held the data. It is refused (the process exits with a clear error and the
//! node does not come up), or, by the operator's explicit choice (`--replace-empty`),
//! joins as a new, empty node whose shards are rebuilt. And a node whose heartbeats report
//! far fewer shards than the metadata places on it is checked: what it lost is rebuilt.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_devcluster::DevClusterSpec;
use cairn_tests::{log_lines, random_bytes, TestCluster};

/// Down after 1.5 s without heartbeats (so a refused node is seen not up quickly), out
/// only after the default 60 s (so the wiped node returns well within it), repair and
/// the shard-count check of the leader every 300 ms.
fn quick_checks(s: &mut DevClusterSpec) {
    s.chunk_size = 128 * 1024;
    for (k, v) in [
        ("CAIRN_META_NODE_DOWN_AFTER_MS", "1500"),
        ("CAIRN_META_REPAIR_INTERVAL_MS", "300"),
        ("CAIRN_META_NODE_CHECK_INTERVAL_MS", "300"),
    ] {
        s.env.push((k.into(), v.into()));
    }
}

async fn put_objects(tc: &TestCluster, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("{prefix}/{i}"),
                random_bytes(300_000 + i * 1000, 40 + i as u64),
            )
        })
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }
    objects
}

fn node_shard_files(tc: &TestCluster, node: &str) -> Vec<PathBuf> {
    let prefix = tc.dir().join(node).join("shards");
    let mut files: Vec<PathBuf> = tc
        .shard_files()
        .into_iter()
        .filter(|p| p.starts_with(&prefix))
        .collect();
    files.sort();
    files
}

fn node_state(s: &cairn_client::ClusterStatus, id: u64) -> String {
    s.nodes
        .iter()
        .find(|n| n.node_id == id)
        .map(|n| n.state.clone())
        .unwrap_or_default()
}

/// - node 2 is stopped, its data directory deleted, and it is started again at once
///   (well within the 60 s after which its shards would be rebuilt anyway);
/// - the metadata service refuses it: the process exits non-zero, its log says why and
///   names `--replace-empty`, and the node is `down`, not `up`;
/// - started with `--replace-empty` (`CAIRN_NODE_REPLACE_EMPTY`), it joins empty: every
///   chunk that had a shard on it is rebuilt (repair counts them), the cluster is at full
///   redundancy with as many shard files as before, and every object verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_data_directory_is_refused_then_replaced_by_choice() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, quick_checks).await;
    let objects = put_objects(&tc, "wiped").await;
    let shards_before = tc.shard_files().len();
    let on_node_2 = node_shard_files(&tc, "node-2").len();
    assert!(on_node_2 > 0);

    tc.cluster.stop("node-2");
    let data_dir = tc.dir().join("node-2");
    std::fs::remove_dir_all(&data_dir).unwrap();
    let log = tc.log_path("node-2");
    let log_before = std::fs::read_to_string(&log).unwrap_or_default().len();
    tc.cluster.start_process("node-2").unwrap();

    // Refused: the process ends by itself, with a failure status.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some((_, status)) = tc
            .cluster
            .reap_exited()
            .into_iter()
            .find(|(name, _)| name == "node-2")
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 kept running on an empty data directory"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(status, "exit status: 0", "refusal exits non-zero");
    let said = std::fs::read_to_string(&log).unwrap()[log_before..].to_string();
    assert!(
        said.contains("wiped or replaced") && said.contains("--replace-empty"),
        "node 2's log does not say why it stopped:\n{said}"
    );
    tc.wait_status("node 2 down", Duration::from_secs(30), |s| {
        node_state(s, 2) == "down"
    })
    .await;

    // The operator's explicit choice: join as a new, empty node.
    tc.cluster
        .set_env("node-2", "CAIRN_NODE_REPLACE_EMPTY", Some("true"))
        .unwrap();
    tc.cluster.start_process("node-2").unwrap();
    tc.wait_status(
        "node 2 up and its former shards rebuilt",
        Duration::from_secs(60),
        |s| {
            node_state(s, 2) == "up"
                && s.repaired_chunks >= on_node_2 as u64
                && s.degraded_chunks == 0
                && s.repair_queue == 0
        },
    )
    .await;
    assert!(!tc.cluster.has_exited("node-2"));
    assert_eq!(tc.shard_files().len(), shards_before);
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
}

/// - half of node 4's shard files are deleted behind its back (its data directory and
///   identity stay), and it restarts: its heartbeats now report fewer shards than the
///   metadata places on it;
/// - the leader notices the gap, checks the node's shards, records the missing ones lost
///   and repair rebuilds them: as many shard files as before, full redundancy, every
///   object verifies — without any read having tripped over the missing shards first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reporting_too_few_shards_is_checked_and_repaired() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, quick_checks).await;
    let objects = put_objects(&tc, "gap").await;
    let shards_before = tc.shard_files().len();
    let files = node_shard_files(&tc, "node-4");
    let lost = files.len() / 2;
    assert!(lost > 0);

    tc.cluster.stop("node-4");
    for path in &files[..lost] {
        std::fs::remove_file(path).unwrap();
    }
    tc.cluster.start_process("node-4").unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while tc.shard_files().len() < shards_before {
        assert!(
            Instant::now() < deadline,
            "the {lost} shards deleted from node 4 were never rebuilt ({} of {shards_before} shard files)",
            tc.shard_files().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tc.wait_status("full redundancy", Duration::from_secs(60), |s| {
        s.repaired_chunks >= lost as u64 && s.degraded_chunks == 0 && s.repair_queue == 0
    })
    .await;
    assert!(
        log_lines(&tc.log_path("meta-1"), &["node 4", "checking"]) > 0,
        "the leader did not log its check of node 4"
    );
    assert!(!tc.cluster.has_exited("node-4"));
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
}

/// A node process that claims node 1's id under another node's certificate (a copied
/// configuration, a wrong id) is refused before anything is recorded: it exits with an
/// error naming the certificate and the id, and node 1 stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_claiming_an_id_under_another_nodes_certificate_is_refused() {
    let tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, quick_checks).await;
    let spec = tc.cluster.spec().clone();
    // Node 2's certificate under the file name node 1 would load.
    let tls = tc.dir().join("impostor-tls");
    std::fs::create_dir(&tls).unwrap();
    let real = spec.tls_dir();
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("node-2.pem", "node-1.pem"),
        ("node-2.key", "node-1.key"),
        ("gateway-1.pem", "gateway-1.pem"),
        ("gateway-1.key", "gateway-1.key"),
    ] {
        std::fs::copy(real.join(from), tls.join(to)).unwrap();
    }
    let mut impostor = std::process::Command::new(cairn_tests::bin_dir().join("cairn-node"))
        .args(["--id", "1", "--listen", &spec.node_addr(9), "--data-dir"])
        .arg(tc.dir().join("impostor"))
        .args(["--meta", &spec.meta_addr(1), "--tls-dir"])
        .arg(&tls)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = impostor.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = impostor.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(impostor.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let _ = impostor.wait();
    let status = exited.unwrap_or_else(|| panic!("the impostor kept running: {stderr}"));
    assert!(!status.success());
    assert!(
        stderr.contains("certificate \"node-2\" cannot act for storage node 1"),
        "{stderr}"
    );
    let s = tc.client.status().await.unwrap();
    let node1 = s.nodes.iter().find(|n| n.node_id == 1).unwrap();
    assert_eq!(
        node1.addr,
        spec.node_addr(1),
        "node 1's record is unchanged"
    );
    assert_eq!(node1.state, "up");
}
