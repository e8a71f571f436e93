//! Bit rot (DESIGN.md invariant 3): a byte flipped in a shard file on disk is detected on
//! read; the reader still gets the correct bytes (rebuilt from parity), the corrupt shard
//! is quarantined (moved aside, not deleted) and reported: the chunk shows as degraded.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_is_repaired_on_read_and_quarantined() {
    // Repair is slowed down here so the degraded state can be observed; t45 covers the
    // rebuild of a corrupt shard.
    let tc = TestCluster::start_with(1, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.env
            .push(("CAIRN_META_REPAIR_INTERVAL_MS".into(), "600000".into()));
    })
    .await;
    let data = random_bytes(1_000_000, 5);
    tc.must_put("default", "rot", &data).await;
    let files = tc.shard_files();
    assert_eq!(files.len(), 6);

    // Flip one byte near the end of a data shard (index 0), where the data lives.
    let victim = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "0"))
        .expect("shard 0 exists")
        .clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();

    tc.must_get_equal("default", "rot", &data).await;
    assert!(!victim.exists(), "the corrupt shard left its place");
    let quarantined = tc.quarantined_files();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(
        std::fs::read(&quarantined[0]).unwrap(),
        bytes,
        "kept, not deleted"
    );

    tc.wait_status(
        "the chunk reported degraded",
        Duration::from_secs(10),
        |s| s.degraded_chunks == 1,
    )
    .await;
    let stat = tc.client.stat("default", "rot").await.unwrap();
    assert_eq!(stat.degraded_chunks, 1);
    // Reads keep working with the shard gone.
    tc.must_get_equal("default", "rot", &data).await;
}
