//! A metadata leader cut off from the other replicas only (hardening issue, defect 1).
//! openraft 0.9 keeps such a leader in the leader role, and storage nodes, clients and
//! mounts still reach it: before the fix they kept heartbeating and calling it, so the
//! leader the majority elected heard no heartbeats, marked every node down, and puts and
//! mount fsyncs failed though a healthy majority existed. Now a leader serves (and runs
//! its background work) only while a majority acknowledges it, and callers turn to the
//! other replicas.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_common::config::ClusterFile;
use cairn_common::Redundancy;
use cairn_tests::nemesis::{partitions_supported, Partition};
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_fsyncs_go_on_while_the_leader_is_cut_off_from_the_replicas() {
    assert!(
        partitions_supported(),
        "iptables is needed (scripts/install-deps.sh)"
    );
    let mut tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    // The client and the mount connect from addresses of their own: the cut (by address)
    // must leave them alone, whichever replica leads.
    let file = ClusterFile::load(&tc.cluster.spec().cluster_file()).unwrap();
    let client = Client::new_from(&file, Some("127.0.0.100".parse().unwrap())).unwrap();
    let mnt = tc.dir().join("mnt");
    tc.cluster
        .add_mount(&mnt, &["--source-addr", "127.0.0.101"])
        .await
        .expect("mount");
    tc.must_put("default", "before", b"written before the cut")
        .await;

    let spec = tc.cluster.spec().clone();
    let old = tc.leader().await as usize;
    let addr = |i: usize| -> SocketAddr { spec.meta_addr(i).parse().unwrap() };
    let others: Vec<SocketAddr> = (1..=3).filter(|&i| i != old).map(addr).collect();
    // Only the replicas' links: nodes, the client and the mount still reach the old
    // leader.
    let cut = Partition::isolate(addr(old), &others);

    // For 90 s, a put and a file written and fsynced through the mount every second.
    let (mut acked, mut synced) = (Vec::new(), Vec::new());
    let mut failed = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(90) {
        let key = format!("during/{i:03}");
        let data = random_bytes(50_000, i);
        match client.put("default", &key, &data[..]).await {
            Ok(_) => acked.push((key, data.clone())),
            Err(e) => failed.push(format!("put {key} at {:?}: {e}", started.elapsed())),
        }
        let file = mnt.join(format!("default/file-{i:03}"));
        let written = std::fs::File::create(&file).and_then(|mut f| {
            std::io::Write::write_all(&mut f, &data)?;
            f.sync_all()
        });
        match written {
            Ok(()) => synced.push((file, data)),
            Err(e) => failed.push(format!("fsync {file:?} at {:?}: {e}", started.elapsed())),
        }
        i += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(cut);
    // The election takes a second or two: what failed must be only that.
    assert!(
        failed.len() <= 2,
        "{} of {i} rounds failed while a majority was healthy: {failed:#?}",
        failed.len()
    );
    assert!(!acked.is_empty());
    // Every node stayed up for the leader the majority elected, and nothing acknowledged
    // was lost (no live shard was deleted).
    tc.wait_status("every node up", Duration::from_secs(30), |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    tc.must_get_equal("default", "before", b"written before the cut")
        .await;
    for (key, data) in &acked {
        tc.must_get_equal("default", key, data).await;
    }
    for (file, data) in &synced {
        assert!(std::fs::read(file).unwrap() == *data, "{file:?} reads back");
    }
}
