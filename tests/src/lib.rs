//! The cluster test harness: real `cairn-meta` and `cairn-node` processes on 127.0.0.x,
//! each test with its own ports and temp directory. Everything started is stopped when
//! the `TestCluster` is dropped, also when the test fails; the directory (with every
//! daemon's log) is kept only when the test failed, and its path is printed.

pub mod faults;
pub mod history;
pub mod linearizability;
pub mod nemesis;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_common::Redundancy;
use cairn_devcluster::{DevCluster, DevClusterSpec};

/// A lazily connecting gRPC channel to `addr` as certificate `name` of the cluster in
/// `spec` (plaintext when the cluster runs `--insecure`).
pub fn grpc_channel(spec: &DevClusterSpec, addr: &str, name: &str) -> tonic::transport::Channel {
    let transport = if spec.insecure {
        cairn_net::Transport::insecure()
    } else {
        cairn_net::Transport::load(&cairn_net::TlsFiles::new(spec.tls_dir(), name))
            .expect("load a test certificate")
    };
    transport.channel(addr, |e| e).expect("channel")
}

/// The whole object `bucket/key`, read by `client`. Boxed: a read's future is large in
/// debug builds, and a test that awaits many of them inline outgrows its thread's stack.
pub async fn read_object(
    client: &Client,
    bucket: &str,
    key: &str,
) -> cairn_client::Result<Vec<u8>> {
    let mut out = Vec::new();
    Box::pin(client.get(bucket, key, None, &mut out)).await?;
    Ok(out)
}

/// What `ls -l` shows of `path` without following a symlink: the file type bits, the
/// permission bits, owner, group and device number.
pub fn lstat_shape(path: &Path) -> (u32, u32, u32, u32, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {path:?}: {e}"));
    (
        m.mode() & libc::S_IFMT,
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
        m.rdev(),
    )
}

/// How many lines of the log at `path` contain every one of `parts` (0 if it is missing).
pub fn log_lines(path: &Path, parts: &[&str]) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Directory of the workspace's binaries (this test executable lives in its `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("executable has a directory");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Fails naming `what`, the lengths and blake3 hashes (not the bytes) unless equal.
pub fn assert_same_bytes(what: &str, got: &[u8], expected: &[u8]) {
    assert!(
        got == expected,
        "{what}: got {} bytes (blake3 {}), expected {} bytes (blake3 {})",
        got.len(),
        blake3::hash(got),
        expected.len(),
        blake3::hash(expected)
    );
}

/// Random bytes, reproducible from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// Failure detection and repair in seconds rather than minutes: a node is down after
/// 1.5 s without heartbeats, out (rebuilt elsewhere) after 4 s, and the repair worker
/// looks for work every 300 ms.
pub fn fast_repair(spec: &mut DevClusterSpec) {
    for (k, v) in [
        ("CAIRN_META_NODE_DOWN_AFTER_MS", "1500"),
        ("CAIRN_META_NODE_OUT_AFTER_MS", "4000"),
        ("CAIRN_META_REPAIR_INTERVAL_MS", "300"),
    ] {
        spec.env.push((k.into(), v.into()));
    }
}

pub struct TestCluster {
    pub cluster: DevCluster,
    pub client: Client,
    dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `meta` replicas and `nodes` storage nodes; waits until all serve.
    pub async fn start(meta: usize, nodes: usize, redundancy: Redundancy) -> TestCluster {
        Self::start_with(meta, nodes, redundancy, |_| {}).await
    }

    pub async fn start_with(
        meta: usize,
        nodes: usize,
        redundancy: Redundancy,
        adjust: impl Fn(&mut DevClusterSpec),
    ) -> TestCluster {
        nemesis::clear_stale_partitions();
        let mut last_err = None;
        for attempt in 0..20u64 {
            // A fresh directory per attempt: a failed attempt may leave state behind.
            let dir = tempfile::Builder::new()
                .prefix("cairn-test-")
                .tempdir()
                .expect("create temp dir");
            let mut spec = DevClusterSpec::new(dir.path().to_path_buf(), bin_dir());
            spec.meta = meta;
            spec.nodes = nodes;
            spec.redundancy = redundancy;
            spec.port_base = pick_port_base(attempt);
            spec.env.push(("CAIRN_LOG".into(), "info".into()));
            adjust(&mut spec);
            let cluster = match DevCluster::start(spec) {
                Ok(cluster) => cluster,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            // Another test may have taken a port between the check and the bind: a
            // daemon then exits at once, and the next attempt uses other ports.
            match cluster.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => {
                    let client = cluster.client().expect("client for the test cluster");
                    return TestCluster {
                        cluster,
                        client,
                        dir: Some(dir),
                    };
                }
                Err(e) if e.to_string().contains("exited before") => {
                    drop(cluster);
                    last_err = Some(e);
                }
                Err(e) => {
                    // Dropped while panicking: the directory and logs are kept.
                    let _failed = TestCluster {
                        client: cluster.client().expect("client for the test cluster"),
                        cluster,
                        dir: Some(dir),
                    };
                    panic!("cluster becomes ready: {e:#}");
                }
            }
        }
        panic!("could not start a test cluster: {last_err:?}");
    }

    pub fn dir(&self) -> &Path {
        &self.cluster.spec().dir
    }

    pub fn cluster_file(&self) -> PathBuf {
        self.cluster.spec().cluster_file()
    }

    /// A client of this cluster with a new client certificate `name` (so, unless granted,
    /// a user with no access and no admin).
    pub fn client_with_new_cert(&self, name: &str) -> Client {
        use cairn_net::certs::{self, Validity};
        certs::issue(
            &self.cluster.spec().tls_dir(),
            cairn_net::Role::Client,
            name,
            Validity::days(1),
        )
        .unwrap_or_else(|e| panic!("issue certificate {name}: {e}"));
        let mut file = self.cluster.cluster_file_for(self.cluster.meta_addrs());
        file.tls_name = name.into();
        Client::new(&file).unwrap_or_else(|e| panic!("client {name}: {e}"))
    }

    /// Runs the `cairn` CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(bin_dir().join("cairn"))
            .arg("--cluster")
            .arg(self.cluster_file())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cairn");
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().expect("stdin piped");
            pipe.write_all(data).expect("write cairn stdin");
        }
        child.wait_with_output().expect("wait for cairn")
    }

    pub async fn must_put(&self, bucket: &str, key: &str, data: &[u8]) {
        self.client
            .put(bucket, key, data)
            .await
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e}"));
    }

    pub async fn get(&self, bucket: &str, key: &str) -> cairn_client::Result<Vec<u8>> {
        read_object(&self.client, bucket, key).await
    }

    /// The log of process `name` of this cluster.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.cluster.spec().log_path(name)
    }

    pub async fn must_get_equal(&self, bucket: &str, key: &str, expected: &[u8]) {
        let got = self
            .get(bucket, key)
            .await
            .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e}"));
        assert_same_bytes(&format!("{bucket}/{key}"), &got, expected);
    }

    /// Waits (bounded) until `cond` holds on the cluster status.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&cairn_client::ClusterStatus) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        let quick = self.client.clone().with_meta_retry(Duration::from_secs(2));
        loop {
            if let Ok(s) = quick.status().await {
                if cond(&s) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Current metadata leader id (waits for one, bounded).
    pub async fn leader(&self) -> u64 {
        let mut leader = 0;
        self.wait_status("a metadata leader", Duration::from_secs(30), |_| true)
            .await;
        if let Ok(s) = self.client.status().await {
            leader = s.leader_id;
        }
        leader
    }

    /// Every shard file on every node (path, node name).
    pub fn shard_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for j in 1..=self.cluster.spec().nodes {
            collect_files(
                &self.dir().join(format!("node-{j}")).join("shards"),
                &mut out,
            );
        }
        out
    }

    pub fn quarantined_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for j in 1..=self.cluster.spec().nodes {
            collect_files(
                &self.dir().join(format!("node-{j}")).join("quarantine"),
                &mut out,
            );
        }
        out
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(path);
        }
    }
}

/// A random base for one cluster's ports: slots of 100 ports (a cluster uses base+1 ..
/// base+80) between 10000 and 32000, below Linux's ephemeral range so that no outgoing
/// connection holds them.
pub fn pick_port_base(attempt: u64) -> u16 {
    let seed = std::process::id() as u64 * 7919 + attempt * 104_729 + rand::random::<u16>() as u64;
    10_000 + (seed % 220) as u16 * 100
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.cluster.shutdown();
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                let kept = dir.keep();
                eprintln!("test failed: cluster directory and logs kept in {kept:?}");
            }
        }
    }
}
