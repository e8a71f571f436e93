//! Linearizable metadata (DESIGN.md invariant 4): whichever replica a client talks to, a
//! write acknowledged through any replica is visible to every later read, and a newer
//! version is never followed by an older one.

use cairn_client::Client;
use cairn_common::Redundancy;
use cairn_tests::TestCluster;

/// Three clients, each pinned to one replica (two of them followers, which forward to
/// the leader): every put through one is immediately read back through all three, and the
/// generation a reader sees never goes backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_any_replica_see_the_latest_write() {
    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    let pinned: Vec<Client> = (1..=3)
        .map(|i| Client::new(&tc.cluster.cluster_file_for(vec![spec.meta_addr(i)])).unwrap())
        .collect();
    let mut last_generation = [0u64; 3];
    for round in 0..30usize {
        let writer = &pinned[round % 3];
        let value = format!("value {round}");
        let put = writer
            .put("default", "register", value.as_bytes())
            .await
            .unwrap();
        for (r, reader) in pinned.iter().enumerate() {
            let mut out = Vec::new();
            let stat = reader
                .get("default", "register", None, &mut out)
                .await
                .unwrap();
            assert_eq!(out, value.as_bytes(), "round {round}, reader {}", r + 1);
            assert_eq!(stat.generation, put.generation);
            assert!(
                stat.generation > last_generation[r],
                "generation went backwards"
            );
            last_generation[r] = stat.generation;
        }
        // A fresh key is listed through every replica right after its put.
        let key = format!("keys/{round:02}");
        writer.put("default", &key, &b""[..]).await.unwrap();
        for reader in &pinned {
            let listed = reader.list_all("default", "keys/").await.unwrap();
            assert_eq!(listed.len(), round + 1);
        }
    }
}
