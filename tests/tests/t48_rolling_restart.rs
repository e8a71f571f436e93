//! Rolling restart under load (issue: self-healing and operations): every storage node and
//! then every metadata replica is restarted, one at a time, while a writer and a reader
//! run; no operation fails and no object is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Keys and contents of acknowledged puts.
type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_every_process_fails_no_operation() {
    let mut tc = TestCluster::start_with(3, 6, Redundancy::Ec { k: 4, m: 2 }, |s| {
        s.chunk_size = 256 * 1024;
    })
    .await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));

    let writer = {
        let (client, acked, stop, failures) = (
            tc.client.clone(),
            acked.clone(),
            stop.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/{i:06}");
                let data = random_bytes(30_000 + (i as usize % 5) * 150_000, i);
                match client.put("default", &key, &data[..]).await {
                    Ok(_) => acked.lock().unwrap().push((key, data)),
                    Err(e) => {
                        eprintln!("put {key} failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        })
    };
    let reader = {
        let (client, acked, stop, failures, reads) = (
            tc.client.clone(),
            acked.clone(),
            stop.clone(),
            failures.clone(),
            reads.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let pick = {
                    let a = acked.lock().unwrap();
                    (!a.is_empty()).then(|| a[n % a.len()].clone())
                };
                n = n.wrapping_mul(31).wrapping_add(7);
                let Some((key, data)) = pick else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let mut out = Vec::new();
                match client.get("default", &key, None, &mut out).await {
                    Ok(_) if out == data => {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => panic!("{key}: wrong bytes read"),
                    Err(e) => {
                        eprintln!("get {key} failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let all_up = |s: &cairn_client::ClusterStatus| {
        s.nodes.len() == 6 && s.nodes.iter().all(|n| n.state == "up")
    };
    let spec = tc.cluster.spec().clone();
    for j in 1..=6 {
        let name = format!("node-{j}");
        tc.cluster.stop(&name);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tc.cluster.start_process(&name).unwrap();
        // As an operator would: the next node goes only once this one serves again.
        let addr = spec.node_addr(j);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} did not come back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tc.wait_status("node back", Duration::from_secs(30), |s| {
            all_up(s)
                && s.nodes
                    .iter()
                    .any(|n| n.node_id == j as u64 && n.last_heartbeat_ms < 1000)
        })
        .await;
    }
    for i in 1..=3 {
        let name = format!("meta-{i}");
        tc.cluster.stop(&name);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tc.cluster.start_process(&name).unwrap();
        tc.wait_status("replicas back", Duration::from_secs(30), |s| {
            s.replicas.len() == 3 && all_up(s)
        })
        .await;
        // Let the restarted replica catch up before the next one goes.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    reader.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} puts and {} verified reads during the rolling restart",
        acked.len(),
        reads.load(Ordering::Relaxed)
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0, "operations failed");
    assert!(acked.len() > 20 && reads.load(Ordering::Relaxed) > 20);
    for (key, data) in &acked {
        tc.must_get_equal("default", key, data).await;
    }

    // `cairn status` names the release of every daemon it heard from (what an operator
    // follows an upgrade by).
    // A node's release is known to the leader from its first heartbeat to it.
    let status_json = || -> serde_json::Value {
        let out = tc.cli(&["status", "--json"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut status = status_json();
    for _ in 0..100 {
        let heard = |kind: &str| {
            status[kind].as_array().is_some_and(|a| {
                a.iter()
                    .all(|d| d["version"].as_str().is_some_and(|v| !v.is_empty()))
            })
        };
        if heard("replicas") && heard("nodes") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        status = status_json();
    }
    let release = serde_json::Value::from(cairn_common::RELEASE);
    for (kind, count) in [("replicas", 3), ("nodes", tc.cluster.spec().nodes)] {
        let daemons = status[kind].as_array().unwrap();
        assert_eq!(daemons.len(), count, "{status}");
        for d in daemons {
            assert_eq!(d["version"], release, "{kind}: {d}");
        }
    }
    let text = String::from_utf8_lossy(&tc.cli(&["status"]).stdout).into_owned();
    assert_eq!(
        text.matches(&format!("release {}", cairn_common::RELEASE))
            .count(),
        3,
        "{text}"
    );
}
