//! The fault-injection run (issue: fault injection; DESIGN.md invariants 1, 3 and 4): a
//! workload of puts, gets and deletes on a few shared keys, and one of atomic file
//! replacements, reads and deletes through two mounts, run against 3 metadata
//! replicas and 4 storage nodes (ec 2+1) while a seeded nemesis kills, pauses and
//! partitions processes, corrupts shard files and jumps the nodes' wall clocks. Afterwards the faults stop, every node
//! is scrubbed, the cluster heals, every key is read once more, and the history is
//! checked: no read returned bytes that no write produced, every read names a write of its
//! key issued before it, and each key's history is linearizable (so no acknowledged write
//! was lost). The cluster must be back to full redundancy.
//!
//! In `.ci/run`: seeds 1 and 2 for 40 s each. A longer run:
//! `CAIRN_NEMESIS_SEED=7 CAIRN_NEMESIS_SECONDS=1800 cargo nextest run --workspace
//! --run-ignored only -E 'test(nemesis_long_run)'` (TESTING.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::history::History;
use cairn_tests::nemesis::{partitions_supported, FileWorkload, Nemesis, Workload};
use cairn_tests::{fast_repair, TestCluster};

/// Search budget of the linearizability check, per key.
const CHECK_STEPS: u64 = 5_000_000;

async fn run(seed: u64, duration: Duration) {
    let partitions = partitions_supported();
    if !partitions {
        eprintln!("iptables unavailable: running without partitions");
    }
    let mut tc = TestCluster::start_with(3, 4, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 64 * 1024;
        fast_repair(s);
        // The orphan sweep (which ages shards by the wall clock) runs often.
        s.env
            .push(("CAIRN_NODE_ORPHAN_SWEEP_INTERVAL_MS".into(), "500".into()));
    })
    .await;
    // The workload's client connects from an address of its own, so partitions between
    // daemons (which cut by address) do not also cut the workload off.
    let source: std::net::IpAddr = "127.0.0.100".parse().unwrap();
    let cluster_file =
        cairn_common::config::ClusterFile::load(&tc.cluster.spec().cluster_file()).unwrap();
    let client = cairn_client::Client::new_from(&cluster_file, Some(source)).unwrap();
    let workload = Workload {
        bucket: "default".into(),
        keys: 5,
        workers: 3,
        value_sizes: (100, 150_000),
        op_timeout: Duration::from_secs(20),
    };
    // Two mounts without kernel caching of names and attributes (see FileWorkload).
    let mut dirs = Vec::new();
    // Each mount connects from an address of its own, which partitions leave alone.
    for (m, source) in [("mnt-a", "127.0.0.101"), ("mnt-b", "127.0.0.102")] {
        let mountpoint = tc.dir().join(m);
        tc.cluster
            .add_mount(
                &mountpoint,
                &["--attr-ttl-ms", "0", "--source-addr", source],
            )
            .await
            .expect("mount");
        dirs.push(mountpoint.join("default"));
    }
    let files = FileWorkload {
        dirs,
        files: 4,
        workers: 2,
        value_sizes: (100, 100_000),
        op_timeout: Duration::from_secs(20),
    };
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = workload.spawn(&client, &history, &stop, seed);
    workers.extend(files.spawn(&history, &stop, seed));

    let clock = tc.nodes_on_a_movable_clock();
    let mut nemesis = Nemesis::new(seed, partitions, Some(clock)).with_client_source(source);
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        nemesis.step(&mut tc).await;
    }
    nemesis.reset_clock();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("workload worker");
    }
    let phase = Instant::now();

    // Heal: every daemon runs (the nemesis restarts what it kills), scrub finds the shards
    // it corrupted, repair rebuilds them.
    assert!(
        tc.cluster.reap_exited().is_empty(),
        "a daemon died on its own"
    );
    let out = tc.cli(&["scrub"]);
    assert!(
        out.status.success(),
        "scrub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tc.wait_status(
        "full redundancy after the faults",
        Duration::from_secs(120),
        |s| {
            s.nodes.iter().all(|n| n.state == "up") && s.degraded_chunks == 0 && s.repair_queue == 0
        },
    )
    .await;
    workload.final_reads(&client, &history).await;
    files.final_reads(&history).await;
    eprintln!("seed {seed}: healed in {:?}", phase.elapsed());

    let phase = Instant::now();
    let report = history.check(CHECK_STEPS);
    eprintln!("seed {seed}: history checked in {:?}", phase.elapsed());
    eprintln!(
        "seed {seed}: {} operations ({} with unknown outcome) on {} keys; faults {:?}",
        report.operations, report.unknown_outcomes, report.keys, nemesis.applied
    );
    if !report.violations.is_empty() {
        // Kept with the cluster's logs (the directory survives a failed test).
        let path = tc.dir().join("history.txt");
        history.write_to(&path).expect("write the history");
        eprintln!("seed {seed}: history written to {path:?}");
    }
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {} violations:\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
    let faults: u64 = nemesis.applied.values().sum();
    assert!(faults >= 5, "seed {seed}: only {faults} faults applied");
    assert!(
        report.operations >= 50,
        "seed {seed}: only {} operations completed: the workload did not run",
        report.operations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_seed_1() {
    run(1, Duration::from_secs(40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_seed_2() {
    run(2, Duration::from_secs(40)).await;
}

/// The long run: `CAIRN_NEMESIS_SEED` (default 7) for `CAIRN_NEMESIS_SECONDS` (default
/// 600).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long; run on purpose (TESTING.md)"]
async fn nemesis_long_run() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
            })
            .unwrap_or(default)
    };
    let seed = env("CAIRN_NEMESIS_SEED", 7);
    let seconds = env("CAIRN_NEMESIS_SECONDS", 600);
    run(seed, Duration::from_secs(seconds)).await;
}
