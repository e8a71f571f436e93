//! Helpers of the fault-injection tests: arming failpoints in one daemon
//! (`cairn_common::failpoint`), restarting daemons that crashed, finding what a crash left
//! on disk.

use std::path::PathBuf;

use cairn_common::failpoint;

use crate::TestCluster;

impl TestCluster {
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
