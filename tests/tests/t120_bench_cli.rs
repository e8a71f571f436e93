//! `cairn bench` against a real cluster: every workload runs, reports its phases with
//! operations, throughput and latency percentiles (`--json`), fails no operation, and
//! cleans up the objects it wrote; the metadata workload (`--workload meta`) also fills
//! the namespace in bulk and reports every metadata replica's resident memory. (The
//! figures themselves belong in BENCHMARKS.md, not in assertions.)

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_reports_its_phases_without_errors() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    for (workload, size, phases) in [
        ("put", "64KiB", vec!["put"]),
        ("get", "64KiB", vec!["get"]),
        ("mixed", "64KiB", vec!["mixed"]),
        ("small", "4KiB", vec!["put", "get", "delete"]),
    ] {
        let out = tc.cli(&[
            "bench",
            "--workload",
            workload,
            "--size",
            size,
            "--duration",
            "1",
            "--concurrency",
            "2",
            "--keys",
            "4",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{workload}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let got: Vec<&str> = report["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .map(|p| p["phase"].as_str().expect("phase name"))
            .collect();
        assert_eq!(got, phases, "{workload}");
        for p in report["phases"].as_array().unwrap() {
            assert!(p["ops"].as_u64().unwrap() > 0, "{workload}: {p}");
            assert_eq!(p["errors"].as_u64(), Some(0), "{workload}: {p}");
            let (p50, p999) = (
                p["p50_ms"].as_f64().unwrap(),
                p["p999_ms"].as_f64().unwrap(),
            );
            assert!(p50 > 0.0 && p50 <= p999, "{workload}: {p}");
        }
    }
    let left = tc.client.list_all("default", "bench/").await.expect("list");
    assert!(left.is_empty(), "bench removed its objects: {left:?}");

    let bad = tc.cli(&["bench", "--size", "4 parsecs"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown unit"));
}

/// `cairn status --json`'s inode count.
fn inodes(tc: &TestCluster) -> u64 {
    let out = tc.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    status["inodes"].as_u64().expect("inodes in cairn status")
}

fn must_bench(tc: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "--workload", "meta", "--json"];
    all.extend_from_slice(args);
    let out = tc.cli(&all);
    assert!(
        out.status.success(),
        "cairn {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// Every replica's resident memory is there and plausible (a replica of an empty or
/// small namespace holds more than 1 MiB and less than 16 GiB).
fn assert_replica_memory(what: &str, view: &serde_json::Value) {
    let replicas = view["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 3, "{what}: {view}");
    for r in replicas {
        let rss = r["resident_bytes"].as_u64().unwrap_or(0);
        assert!(rss > 1 << 20 && rss < 16 << 30, "{what}: {r}");
    }
}

/// `cairn bench --workload meta` against three metadata replicas:
/// - `--files 40 --dirs 4 --fill 25000 --keep`: the bulk fill adds exactly 25,000 inodes
///   as `cairn status` counts them; create, stat and rename each make exactly 40
///   operations and list reads the 4 directories holding the 40 files, all without
///   errors; every replica's resident memory is reported after the fill and each phase;
///   the files are there afterwards (listed through the object API);
/// - for a duration, without `--keep`: all five phases run without errors, delete removes
///   every file created, and the clean-up leaves the inode count where it was;
/// - bulk creation is refused to a user who may write the bucket but is no cluster admin;
/// - bounds are refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_workload_measures_fills_and_cleans_up() {
    use cairn_common::fs::{FsChange, FsErrorKind, FsQuery, FsReply, FsRequest, ROOT_INO};

    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let before = inodes(&tc);
    let report = must_bench(
        &tc,
        &[
            "--files",
            "40",
            "--dirs",
            "4",
            "--concurrency",
            "4",
            "--fill",
            "25000",
            "--keep",
        ],
    );
    let made = report["directories_made"]
        .as_u64()
        .expect("directories_made");
    // bench/, the run's directory, d0..d3, fill-0.
    assert_eq!(made, 7, "{report}");
    let fill = &report["fill"];
    assert_eq!(fill["files"].as_u64(), Some(25_000), "{fill}");
    assert_eq!(fill["batches"].as_u64(), Some(3), "{fill}");
    assert_eq!(
        fill["inodes"].as_u64(),
        Some(before + made + 25_000),
        "the fill made exactly 25,000 inodes: {fill}"
    );
    assert_replica_memory("fill", fill);
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["create", "stat", "list", "rename"],
        "--keep: no delete"
    );
    for p in phases {
        let name = p["phase"].as_str().unwrap();
        assert_eq!(p["errors"].as_u64(), Some(0), "{p}");
        let (ops, items) = (p["ops"].as_u64().unwrap(), p["items"].as_u64().unwrap());
        match name {
            "list" => assert_eq!((ops, items), (4, 40), "{p}"),
            _ => assert_eq!((ops, items), (40, 40), "{p}"),
        }
        let (p50, p999) = (
            p["p50_ms"].as_f64().unwrap(),
            p["p999_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p999, "{p}");
        assert_eq!(
            p["inodes"].as_u64(),
            Some(before + made + 25_000 + 40),
            "{p}"
        );
        assert_replica_memory(name, p);
    }
    assert_eq!(inodes(&tc), before + made + 25_000 + 40);
    let root = report["root"].as_str().expect("root").to_string();
    let files = tc
        .client
        .list_all("default", &format!("{root}/"))
        .await
        .expect("list the kept files");
    assert_eq!(files.len(), 25_040);
    let renamed = files.iter().filter(|f| f.key.contains("/r")).count();
    let filled = files.iter().filter(|f| f.key.contains("/fill-0/f")).count();
    assert_eq!((renamed, filled), (40, 25_000));
    assert!(files.iter().all(|f| f.size == 0));

    // For a duration, cleaning up after itself.
    let before = inodes(&tc);
    let report = must_bench(
        &tc,
        &["--duration", "1", "--dirs", "3", "--concurrency", "3"],
    );
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["create", "stat", "list", "rename", "delete"]);
    for p in phases {
        assert!(p["ops"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(p["errors"].as_u64(), Some(0), "{p}");
        assert_replica_memory(p["phase"].as_str().unwrap(), p);
    }
    assert_eq!(
        phases[4]["ops"], phases[0]["ops"],
        "delete removed every file"
    );
    assert_eq!(inodes(&tc), before, "the clean-up removed everything");
    let root = report["root"].as_str().expect("root");
    let left = tc
        .client
        .list_all("default", &format!("{root}/"))
        .await
        .expect("list");
    assert!(left.is_empty(), "{left:?}");

    // Bulk creation needs a cluster admin, not just a write grant.
    tc.client
        .set_grant("default", "eve", "write")
        .await
        .expect("grant");
    let eve = tc.client_with_new_cert("eve");
    let session = match eve
        .fs_call(&FsRequest::OpenSession { name: "eve".into() })
        .await
    {
        Ok(Ok(FsReply::Session { id, .. })) => id,
        other => panic!("eve opens a session: {other:?}"),
    };
    let bucket = match eve
        .fs_call(&FsRequest::Query {
            session,
            query: FsQuery::Lookup {
                parent: ROOT_INO,
                name: "default".into(),
            },
        })
        .await
    {
        Ok(Ok(FsReply::Attr(attr))) => attr.ino,
        other => panic!("eve looks the bucket up: {other:?}"),
    };
    let refused = eve
        .fs_call(&FsRequest::Change {
            session,
            change: FsChange::CreateMany {
                parent: bucket,
                prefix: "eve".into(),
                first: 0,
                count: 10,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            seq: 1,
        })
        .await
        .expect("an answer");
    assert_eq!(
        refused.map_err(|f| f.kind),
        Err(FsErrorKind::AccessDenied),
        "bulk creation by a user who is no cluster admin"
    );

    for (args, message) in [
        (
            &["--concurrency", "1000"][..],
            "--concurrency must be 1 to 256",
        ),
        (&["--fill", "1000000000"][..], "--fill must be at most"),
        (&["--files", "0"][..], "--files must be 1 to"),
    ] {
        let mut all = vec!["bench", "--workload", "meta"];
        all.extend_from_slice(args);
        let out = tc.cli(&all);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let out = tc.cli(&["bench", "--workload", "put", "--fill", "10"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("belong to --workload meta"));
}
