//! The disaster-recovery drill: a metadata backup taken while the cluster serves, every
//! metadata replica lost (killed, data directories deleted), a new metadata group
//! restored from the backup at the same addresses, two replicas added back. Every
//! object written before the backup reads back (verified); objects written after it are
//! not found, never half-present, and the storage nodes' scrub reports exactly their
//! shards as orphans. The restored cluster takes writes; a damaged backup, and a restore
//! into a data directory that holds a store, are refused with clear errors.

use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{bin_dir, random_bytes, TestCluster};

const BEFORE: usize = 12;
const AFTER: usize = 10;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cairn meta restore FILE -- ARGS` (outside any cluster).
fn restore(file: &std::path::Path, meta_args: &[String]) -> std::process::Output {
    std::process::Command::new(bin_dir().join("cairn"))
        .args(["meta", "restore"])
        .arg(file)
        .arg("--")
        .args(meta_args)
        .output()
        .expect("run cairn meta restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_restored_from_a_backup_serves_what_was_written_before_it() {
    let mut tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    // Objects of 1-200 KiB: each one chunk of three shards.
    let before: Vec<(String, Vec<u8>)> = (0..BEFORE)
        .map(|i| {
            (
                format!("before/{i}"),
                random_bytes(1024 + i * 17_000, i as u64),
            )
        })
        .collect();
    for (key, data) in &before {
        tc.must_put("default", key, data).await;
    }
    tc.must_put("default", "deleted-before", b"gone").await;
    tc.client.delete("default", "deleted-before").await.unwrap();
    // Its shards deleted before the backup (a released chunk's shards still on the nodes
    // would be counted as orphans too).
    tc.wait_status("garbage collected", Duration::from_secs(60), |s| {
        s.pending_gc_shards == 0
    })
    .await;

    let backup = tc.dir().join("meta.backup");
    let out = tc.cli(&["meta", "backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(
        stdout(&out).contains("metadata backup written"),
        "{}",
        stdout(&out)
    );
    assert!(!backup.with_extension("partial").exists());

    for i in 0..AFTER {
        let data = random_bytes(50_000 + i * 1000, 1000 + i as u64);
        tc.must_put("default", &format!("after/{i}"), &data).await;
    }

    // The disaster: every metadata replica and its data directory.
    for i in 1..=3 {
        tc.cluster.kill(&format!("meta-{i}"));
        std::fs::remove_dir_all(tc.dir().join(format!("meta-{i}"))).unwrap();
    }

    // A damaged copy is refused, and leaves nothing behind.
    let damaged = tc.dir().join("damaged.backup");
    let mut bytes = std::fs::read(&backup).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    let meta1 = tc.cluster.args("meta-1").unwrap().to_vec();
    let out = restore(&damaged, &meta1);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("damaged") || stderr(&out).contains("not a Cairn metadata backup"),
        "{}",
        stderr(&out)
    );
    assert!(!tc.dir().join("meta-1").join("raft").exists());

    // Replica 1 restored from the backup, at its old address, as a group of one.
    let out = restore(&backup, &meta1);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    assert!(
        stdout(&out).contains("restored the metadata"),
        "{}",
        stdout(&out)
    );
    // A second restore would overwrite it: refused.
    let out = restore(&backup, &meta1);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already holds"), "{}", stderr(&out));

    tc.cluster.start_process("meta-1").unwrap();
    for i in 2..=3 {
        tc.cluster.start_process(&format!("meta-{i}")).unwrap();
    }
    tc.wait_status("the restored replica leads", Duration::from_secs(60), |s| {
        s.leader_id == 1
    })
    .await;
    for i in 2..=3u64 {
        let addr = tc.cluster.spec().meta_addr(i as usize);
        let out = tc.cli(&["meta", "add", &i.to_string(), &addr]);
        assert!(out.status.success(), "meta add {i}: {}", stderr(&out));
    }
    tc.wait_status(
        "three voters and every storage node up",
        Duration::from_secs(60),
        |s| {
            s.replicas.len() == 3
                && s.replicas.iter().all(|r| r.voter)
                && s.nodes.len() == 3
                && s.nodes.iter().all(|n| n.state == "up")
        },
    )
    .await;

    for (key, data) in &before {
        tc.must_get_equal("default", key, data).await;
    }
    for key in (0..AFTER)
        .map(|i| format!("after/{i}"))
        .chain(["deleted-before".to_string()])
    {
        match tc.get("default", &key).await {
            Err(cairn_client::error::ClientError::NotFound { .. }) => {}
            other => panic!("{key}: {:?}", other.map(|d| d.len())),
        }
    }

    // The writes after the backup are reported: their shards, and only those, are
    // orphans.
    let out = tc.cli(&["scrub"]);
    assert!(out.status.success(), "scrub: {}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains(&format!("{} orphan shards", AFTER * 3)),
        "{report}"
    );

    // The restored cluster takes writes.
    let data = random_bytes(70_000, 99);
    tc.must_put("default", "after-restore", &data).await;
    tc.must_get_equal("default", "after-restore", &data).await;
}
