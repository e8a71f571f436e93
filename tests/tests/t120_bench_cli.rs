//! `cairn bench` against a real cluster: every workload runs, reports its phases with
//! operations, throughput and latency percentiles (`--json`), fails no operation, and
//! cleans up the objects it wrote. (The figures themselves belong in BENCHMARKS.md, not
//! in assertions.)

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
