//! The install kit (`deploy/`): `systemd-analyze verify` accepts the systemd units, the
//! daemons they start as `Type=notify` really report `READY=1` on `$NOTIFY_SOCKET` once
//! they serve (the mount's reports: `fuse-mount/tests/t40_cli.rs`), the example
//! configurations are accepted, and the monitoring rules pass promtool and query only
//! metrics the daemons export.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::{bin_dir, TestCluster};

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("systemd")
}

/// Each unit, copied with its `ExecStart` binary at the one just built (the units name
/// `/usr/local/bin`, where the guide installs them), passes `systemd-analyze verify`;
/// the mount's template as an instance.
#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for (unit, file) in [
        ("cairn-meta.service", "cairn-meta.service"),
        ("cairn-node.service", "cairn-node.service"),
        ("cairn-mount@.service", "cairn-mount@mnt-cairn.service"),
    ] {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        assert!(text.contains("Type=notify"), "{unit} waits for readiness");
        let text = text.replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
        let copy = dir.path().join(file);
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/install-deps.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("cairn-"),
        "systemd-analyze verify complains about a unit: {stderr}"
    );
}

/// Every metadata replica and storage node started with `NOTIFY_SOCKET` reports
/// `READY=1` there, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_daemon_reports_ready_once_it_serves() {
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify");
    let notify = UnixDatagram::bind(&path).unwrap();
    let socket = path.to_str().unwrap().to_owned();
    let tc = TestCluster::start_with(3, 3, Redundancy::Ec { k: 2, m: 1 }, |spec| {
        spec.env.push(("NOTIFY_SOCKET".into(), socket.clone()));
    })
    .await;
    // The cluster serves.
    tc.must_put("default", "ready", b"served").await;
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reports.len() < 6 && Instant::now() < deadline {
        let mut buf = [0u8; 64];
        if let Ok(n) = notify.recv(&mut buf) {
            reports.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    // Anything more than one report per daemon would show up here.
    while let Ok(n) = notify.recv(&mut [0u8; 64]) {
        reports.push(format!("an extra report of {n} bytes"));
    }
    assert_eq!(reports, vec!["READY=1\n".to_owned(); 6]);
}

/// The example configuration files of `deploy/examples/` are what the daemons and
/// clients accept: the cluster files load, and each daemon given its example gets past
/// reading its configuration (it then stops at what this machine lacks: the TLS files
/// under /etc/cairn, the example's addresses).
#[test]
fn the_example_configurations_are_accepted() {
    let examples = units_dir().join("..").join("examples");
    for file in ["cluster.toml", "mount.toml"] {
        cairn_common::config::ClusterFile::load(&examples.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    for (binary, file) in [("cairn-meta", "meta.toml"), ("cairn-node", "node.toml")] {
        let out = Command::new(bin_dir().join(binary))
            .arg("--config")
            .arg(examples.join(file))
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{binary} cannot serve here: {stderr}"
        );
        assert!(
            !stderr.contains("config"),
            "{binary} refused {file}: {stderr}"
        );
        assert!(
            stderr.contains("/etc/cairn/tls") || stderr.contains("listen on"),
            "{binary} stopped past its configuration: {stderr}"
        );
    }
}

fn monitoring_dir() -> PathBuf {
    units_dir().join("..").join("monitoring")
}

/// The alert rules of `deploy/monitoring` load (`promtool check rules`) and fire, or stay
/// quiet, as their unit tests expect (`promtool test rules`: a node down, a disk nearly
/// full, no leader, a former leader's stale gauges that must not fire, a fenced mount...).
#[test]
fn the_alert_rules_pass_promtool() {
    for args in [
        ["check", "rules", "cairn-alerts.yml"],
        ["test", "rules", "cairn-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(monitoring_dir())
            .output()
            .expect("promtool (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric the rules and the dashboard query is one the daemons export (its name
/// appears quoted in their source), and the dashboard is valid JSON.
#[test]
fn the_rules_and_the_dashboard_query_only_exported_metrics() {
    let dashboard = std::fs::read_to_string(monitoring_dir().join("cairn-dashboard.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(monitoring_dir().join("cairn-alerts.yml")).unwrap();
    let root = units_dir().join("..").join("..");
    let mut sources = String::new();
    for dir in ["metadata/src", "storage-node/src", "common/src"] {
        collect_rust(&root.join(dir), &mut sources);
    }
    let mut names: Vec<String> = Vec::new();
    for text in [&dashboard, &rules] {
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("cairn_").map(|a| a + i) {
            let start_ok = at == 0
                || !(bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |e| at + e);
            // `cairn_cluster_*` in a comment names a family, not a metric.
            if start_ok && !text[at..end].ends_with('_') {
                names.push(text[at..end].to_owned());
            }
            i = end;
        }
    }
    names.sort();
    names.dedup();
    assert!(names.len() > 10, "found the queried metrics: {names:?}");
    for name in &names {
        let base = ["_sum", "_count", "_bucket"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            sources.contains(&format!("\"{name}\"")) || sources.contains(&format!("\"{base}\"")),
            "{name} is queried but no daemon exports it"
        );
    }
}

fn collect_rust(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}
