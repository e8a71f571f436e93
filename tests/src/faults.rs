//! Helpers of the fault-injection tests: arming failpoints in one daemon
//! (`cairn_common::failpoint`), restarting daemons that crashed, finding what a crash left
//! on disk.

use std::path::{Path, PathBuf};

use cairn_common::failpoint;

use crate::TestCluster;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

impl TestCluster {
    /// Restarts every storage node under libfaketime, which reads the wall clock's offset
    /// (`+0`, `+2h`...) from the returned file at every call: writing the file jumps the
    /// nodes' wall clocks. Their monotonic clocks are left alone, as an NTP step would.
    pub fn nodes_on_a_movable_clock(&mut self) -> PathBuf {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} missing: scripts/install-deps.sh installs faketime"
        );
        let clock = self.dir().join("node-clock");
        std::fs::write(&clock, "+0\n").unwrap();
        for j in 1..=self.cluster.spec().nodes {
            let name = format!("node-{j}");
            for (k, v) in [
                ("LD_PRELOAD", LIBFAKETIME),
                (
                    "FAKETIME_TIMESTAMP_FILE",
                    clock.to_str().expect("UTF-8 test path"),
                ),
                ("FAKETIME_NO_CACHE", "1"),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ] {
                self.cluster
                    .set_env(&name, k, Some(v))
                    .expect("known daemon");
            }
            self.cluster.kill(&name);
            self.cluster
                .start_process(&name)
                .unwrap_or_else(|e| panic!("restart {name}: {e:#}"));
        }
        // The cluster status still shows the old processes up for a heartbeat timeout:
        // wait until each new one listens, so that the next write finds every node.
        for j in 1..=self.cluster.spec().nodes {
            let addr = self.cluster.spec().node_addr(j);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::net::TcpStream::connect(&addr).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "node-{j} does not listen on {addr} 30 s after its restart"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        clock
    }

    /// Restarts every metadata replica with `CAIRN_FAILPOINTS=spec`, one at a time, each
    /// once a leader is elected again: whichever replica leads has the failpoint.
    pub async fn arm_every_replica(&mut self, spec: &str) {
        for i in 1..=self.cluster.spec().meta {
            self.arm(&format!("meta-{i}"), spec);
            self.leader().await;
        }
    }

    /// Starts a put of `data` as `bucket/key` that stores its shards, then stalls for
    /// `stall_ms` before committing (the client's `put-before-commit` failpoint blocks its
    /// thread, so it runs on a thread of its own, with a runtime of its own).
    pub fn put_stalled_before_commit(
        &self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        stall_ms: u64,
    ) -> std::thread::JoinHandle<cairn_client::Result<cairn_client::PutOutcome>> {
        let (client, bucket, key) = (self.client.clone(), bucket.to_owned(), key.to_owned());
        std::thread::spawn(move || {
            failpoint::configure(
                failpoint::PUT_BEFORE_COMMIT,
                &format!("1*sleep({stall_ms})"),
            )
            .unwrap();
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(client.put(&bucket, &key, &data[..]))
        })
    }

    /// Restarts `daemon` (kill -9, then start) with `CAIRN_FAILPOINTS=spec`.
    pub fn arm(&mut self, daemon: &str, spec: &str) {
        self.cluster
            .set_env(daemon, failpoint::ENV, Some(spec))
            .expect("known daemon");
        self.cluster.kill(daemon);
        self.cluster
            .start_process(daemon)
            .unwrap_or_else(|e| panic!("restart {daemon}: {e:#}"));
    }

    /// Restarts, without failpoints, every daemon that exited on its own (a failpoint's
    /// crash); returns their names. Daemons the test stopped or killed are not restarted.
    pub fn restart_crashed(&mut self) -> Vec<String> {
        let exited: Vec<String> = self
            .cluster
            .reap_exited()
            .into_iter()
            .map(|(name, status)| {
                eprintln!("{name} exited ({status}); restarting it without failpoints");
                name
            })
            .collect();
        for name in &exited {
            self.cluster
                .set_env(name, failpoint::ENV, None)
                .expect("known daemon");
            self.cluster
                .start_process(name)
                .unwrap_or_else(|e| panic!("restart {name}: {e:#}"));
        }
        exited
    }

    /// Temporary files of interrupted shard writes in node `j`'s shard directory.
    pub fn temp_shard_files(&self, j: usize) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let Ok(prefixes) = std::fs::read_dir(self.dir().join(format!("node-{j}/shards"))) else {
            return files;
        };
        for prefix in prefixes.flatten() {
            for entry in std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if entry.file_name().to_string_lossy().contains(".tmp.") {
                    files.push(entry.path());
                }
            }
        }
        files
    }
}
