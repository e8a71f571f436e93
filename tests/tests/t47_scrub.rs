//! Scrub (DESIGN.md invariant 3 without waiting for a reader): shard files corrupted on
//! two nodes, or unreadable (EIO), are found by `cairn scrub`, quarantined and rebuilt by
//! repair; afterwards every object verifies and the cluster is at full redundancy again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_common::{failpoint, ChunkId, Redundancy};
use cairn_proto::common::ShardId;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::StatShardRequest;
use cairn_tests::{grpc_channel, log_lines, random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_scrub_finds_and_repairs_corruption_on_two_nodes() {
    let tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.chunk_size = 256 * 1024;
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("scrub/{i}"), random_bytes(600_000, 50 + i as u64)))
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }
    let shards_before = tc.shard_files().len();

    // Flip a byte in one shard file on node 2 and one on node 5.
    for node in ["node-2", "node-5"] {
        let dir = tc.dir().join(node).join("shards");
        let victim = std::fs::read_dir(&dir)
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .next()
            .expect("the node holds a shard");
        let mut bytes = std::fs::read(&victim).unwrap();
        let at = bytes.len() - 1;
        bytes[at] ^= 0x80;
        std::fs::write(&victim, &bytes).unwrap();
    }

    let out = tc.cli(&["scrub"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 corrupt shards found"), "{stdout}");
    assert_eq!(tc.quarantined_files().len(), 2);

    tc.wait_status(
        "repair of the scrubbed chunks",
        Duration::from_secs(30),
        |s| s.repaired_chunks >= 1 && s.degraded_chunks == 0 && s.repair_queue == 0,
    )
    .await;
    assert_eq!(tc.shard_files().len(), shards_before);
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
    // A second scrub finds nothing.
    let out = tc.cli(&["scrub", "--node", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 corrupt shards found"));
}

/// Restarts storage node `name` with `CAIRN_FAILPOINTS` set to `failpoints` (or none) and
/// waits (bounded) until the new process serves and every node is up.
async fn restart_node(tc: &mut TestCluster, name: &str, failpoints: Option<&str>) {
    let log = tc.log_path(name);
    let started = log_lines(&log, &["cairn-node started"]);
    tc.cluster.stop(name);
    tc.cluster
        .set_env(name, failpoint::ENV, failpoints)
        .expect("the node exists");
    tc.cluster.start_process(name).expect("restart the node");
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_lines(&log, &["cairn-node started"]) <= started {
        assert!(Instant::now() < deadline, "{name} did not start again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tc.wait_status("every node up", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
}

/// Shard files of one node, by file name (the order a scrub pass checks them in).
fn node_shards(tc: &TestCluster, node: &str) -> Vec<PathBuf> {
    let dir = tc.dir().join(node).join("shards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort_by_key(|p| p.file_name().unwrap().to_owned());
    files
}

/// An unreadable shard (issue #16, defect 4):
/// - node 3's first shard in scrub order fails every read with EIO (the `shard-read`
///   failpoint, a bad sector under that one file) and its last shard has a flipped bit;
/// - `cairn scrub --node 3` completes: it reports both (one of them unreadable), so the
///   EIO did not end the pass before the flipped bit was reached;
/// - both files are quarantined (kept, not deleted), and the node answers StatShard for
///   the unreadable shard with NOT_FOUND (what a leader verifying a loss report asks);
/// - both chunks are rebuilt by repair (the node is restarted without the failpoint,
///   since the bad sector stays with the quarantined file): full redundancy, every object
///   verifies, and a second scrub finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_shard_is_quarantined_and_repaired_and_scrub_goes_on() {
    let mut tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.chunk_size = 256 * 1024;
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "300".into()));
    })
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("eio/{i}"), random_bytes(600_000, 70 + i as u64)))
        .collect();
    for (key, data) in &objects {
        tc.must_put("default", key, data).await;
    }
    let shards_before = tc.shard_files().len();
    let shards = node_shards(&tc, "node-3");
    assert!(shards.len() >= 2, "node 3 holds {} shards", shards.len());
    let (unreadable, flipped) = (shards[0].clone(), shards[shards.len() - 1].clone());
    let unreadable_name = unreadable
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let flipped_name = flipped.file_name().unwrap().to_string_lossy().to_string();
    // Repair may rebuild a shard at its old path on node 3 (the only node without a shard
    // of its chunk) as soon as scrub reports it: a file there is then a new one.
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let (unreadable_ino, flipped_ino) = (inode(&unreadable), inode(&flipped));
    let rebuilt = |p: &std::path::Path, old: u64| {
        std::fs::metadata(p).is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) != old)
    };

    let spec = format!("{}=return({unreadable_name})", failpoint::SHARD_READ);
    restart_node(&mut tc, "node-3", Some(&spec)).await;
    let mut bytes = std::fs::read(&flipped).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0x80;
    std::fs::write(&flipped, &bytes).unwrap();

    let out = tc.cli(&["scrub", "--node", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scrub failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 corrupt shards found (1 unreadable)"),
        "{stdout}"
    );
    let mut quarantined: Vec<String> = tc
        .quarantined_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    quarantined.sort();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert!(
        quarantined[0].starts_with(&format!("{unreadable_name}."))
            && quarantined[1].starts_with(&format!("{flipped_name}.")),
        "{quarantined:?}"
    );
    // Moved, not copied: the quarantined files are the original ones.
    let in_quarantine: Vec<u64> = tc.quarantined_files().iter().map(|p| inode(p)).collect();
    assert!(
        in_quarantine.contains(&unreadable_ino) && in_quarantine.contains(&flipped_ino),
        "{in_quarantine:?}"
    );
    assert!(!unreadable.exists() || rebuilt(&unreadable, unreadable_ino));
    assert!(!flipped.exists() || rebuilt(&flipped, flipped_ino));

    restart_node(&mut tc, "node-3", None).await;
    // The node says the unreadable shard is gone (a leader verifying a report asks so).
    // Asked after the restart without the failpoint: the failpoint matches the file name,
    // so a copy repair wrote at the old path meanwhile would be unreadable too while it is
    // on (a real bad sector stays with the quarantined file).
    let (chunk, index) = unreadable_name.split_once('.').unwrap();
    let chunk: ChunkId = chunk.parse().unwrap();
    let channel = grpc_channel(tc.cluster.spec(), &tc.cluster.spec().node_addr(3), "meta-1");
    let answer = NodeServiceClient::new(channel)
        .stat_shard(StatShardRequest {
            id: Some(ShardId {
                chunk_id: chunk.as_bytes().to_vec().into(),
                index: index.parse().unwrap(),
            }),
        })
        .await;
    match answer {
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
        // Only a copy repair wrote since may be served, never the quarantined file.
        Ok(_) => assert!(
            rebuilt(&unreadable, unreadable_ino),
            "a quarantined shard is served"
        ),
    }

    tc.wait_status(
        "repair of the unreadable and the corrupt shard",
        Duration::from_secs(60),
        |s| s.repaired_chunks >= 2 && s.degraded_chunks == 0 && s.repair_queue == 0,
    )
    .await;
    assert_eq!(tc.shard_files().len(), shards_before);
    for (key, data) in &objects {
        tc.must_get_equal("default", key, data).await;
    }
    let out = tc.cli(&["scrub", "--node", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("0 corrupt shards found"),
        "{stdout}"
    );
}
