//! A local cluster of real processes on 127.0.0.x: what `cairn dev up` runs and what the
//! integration tests drive (kill, restart, stop). Metadata replica `i` listens on
//! `127.0.0.i:(port_base+i)`, storage node `j` on `127.0.0.(10+j):(port_base+10+j)`;
//! their Prometheus endpoints are 60 ports higher.
//! Layout under the directory: `cluster.toml` (the cluster admin's), `mount.toml` (the
//! mounts': certificate `mount`, role `mount`), `pids/NAME.pid`, `logs/NAME.log`,
//! `meta-i/`, `node-j/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_common::config::ClusterFile;
use cairn_common::Redundancy;

use cairn_client::{Client, ClientError};
use cairn_net::certs;
use cairn_net::{Role, TlsFiles};

/// The user mounts run as: a certificate with role `mount`, which may use the filesystem
/// protocol on the buckets it is granted and nothing else.
pub const MOUNT_USER: &str = "mount";

/// What to start.
#[derive(Clone, Debug)]
pub struct DevClusterSpec {
    pub dir: PathBuf,
    pub meta: usize,
    pub nodes: usize,
    pub redundancy: Redundancy,
    pub port_base: u16,
    /// Where `cairn-meta` and `cairn-node` are.
    pub bin_dir: PathBuf,
    /// Chunk size written into cluster.toml.
    pub chunk_size: usize,
    /// Extra environment for every daemon (e.g. CAIRN_LOG).
    pub env: Vec<(String, String)>,
    /// Plaintext gRPC (`--insecure` everywhere) instead of mutual TLS with certificates
    /// made in DIR/tls.
    pub insecure: bool,
}

impl DevClusterSpec {
    pub fn new(dir: PathBuf, bin_dir: PathBuf) -> Self {
        DevClusterSpec {
            dir,
            meta: 3,
            nodes: 6,
            redundancy: Redundancy::DEFAULT,
            port_base: 7100,
            bin_dir,
            chunk_size: cairn_common::DEFAULT_CHUNK_SIZE,
            env: Vec::new(),
            insecure: false,
        }
    }

    /// A node's flags: its own certificate, and a client one for its object API gateway.
    fn node_transport_args(&self, j: usize) -> anyhow::Result<Vec<String>> {
        if !self.insecure {
            self.ensure_cert(Role::Gateway, &format!("gateway-{j}"))?;
        }
        self.transport_args(Role::Node, &format!("node-{j}"))
    }

    /// The cluster's CA and every component's certificate and key.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// The transport flags for a daemon whose certificate is `name` (with `role`), making
    /// the CA and the certificate first when missing.
    fn transport_args(&self, role: Role, name: &str) -> anyhow::Result<Vec<String>> {
        if self.insecure {
            return Ok(vec!["--insecure".into()]);
        }
        self.ensure_cert(role, name)?;
        let mut args = vec!["--tls-dir".into(), self.tls_dir().display().to_string()];
        if role == Role::Meta {
            // The cluster file's `client` certificate administers the cluster.
            args.extend(["--admin".into(), "client".into()]);
        }
        Ok(args)
    }

    /// Makes the CA (once) and certificate `name` unless they exist.
    pub fn ensure_cert(&self, role: Role, name: &str) -> anyhow::Result<()> {
        let dir = self.tls_dir();
        if !dir.join("ca.pem").exists() {
            certs::init_ca(&dir).context("create the cluster CA")?;
        }
        if !TlsFiles::new(&dir, name).cert().exists() {
            certs::issue(&dir, role, name, certs::Validity::days(certs::DEFAULT_DAYS))
                .with_context(|| format!("issue the certificate of {name}"))?;
        }
        Ok(())
    }

    pub fn meta_addr(&self, i: usize) -> String {
        format!("127.0.0.{i}:{}", self.port_base as usize + i)
    }

    pub fn node_addr(&self, j: usize) -> String {
        format!("127.0.0.{}:{}", 10 + j, self.port_base as usize + 10 + j)
    }

    /// Prometheus endpoint of metadata replica `i`.
    pub fn meta_metrics_addr(&self, i: usize) -> String {
        format!("127.0.0.{i}:{}", self.port_base as usize + 60 + i)
    }

    /// Prometheus endpoint of storage node `j`.
    pub fn node_metrics_addr(&self, j: usize) -> String {
        format!(
            "127.0.0.{}:{}",
            10 + j,
            self.port_base as usize + 60 + 10 + j
        )
    }

    pub fn cluster_file(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// The cluster file mounts use: like `cluster.toml`, with the certificate of
    /// [`MOUNT_USER`].
    pub fn mount_cluster_file(&self) -> PathBuf {
        self.dir.join("mount.toml")
    }

    /// The log of process `name` (`meta-1`, `node-2`, `mount-1`...).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=9).contains(&self.meta) {
            bail!("--meta must be between 1 and 9");
        }
        if !(1..=40).contains(&self.nodes) {
            bail!("--nodes must be between 1 and 40");
        }
        if self.port_base as usize + 70 + self.nodes > u16::MAX as usize {
            bail!("--port-base is too high");
        }
        Ok(())
    }
}

struct Daemon {
    args: Vec<String>,
    binary: PathBuf,
    child: Option<Child>,
    /// Variables for this daemon only, on top of the spec's (`set_env`).
    env: Vec<(String, String)>,
}

pub struct DevCluster {
    spec: DevClusterSpec,
    daemons: BTreeMap<String, Daemon>,
}

fn is_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child we started; an error (already gone) is harmless.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

impl DevCluster {
    /// Starts every daemon (nothing is waited for: see `wait_ready`).
    pub fn start(spec: DevClusterSpec) -> anyhow::Result<Self> {
        spec.validate()?;
        for dir in ["pids", "logs"] {
            std::fs::create_dir_all(spec.dir.join(dir))
                .with_context(|| format!("create {:?}", spec.dir.join(dir)))?;
        }
        // A previous `dev up` on this directory that is still running would fight us.
        for entry in std::fs::read_dir(spec.dir.join("pids"))? {
            let path = entry?.path();
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                if is_alive(pid) {
                    bail!(
                        "{:?} says process {pid} is running: another cluster uses {:?}; stop it first",
                        path,
                        spec.dir
                    );
                }
            }
        }
        for i in 1..=spec.meta {
            check_free(&spec.meta_addr(i))?;
            check_free(&spec.meta_metrics_addr(i))?;
        }
        for j in 1..=spec.nodes {
            check_free(&spec.node_addr(j))?;
            check_free(&spec.node_metrics_addr(j))?;
        }
        let meta_addrs: Vec<String> = (1..=spec.meta).map(|i| spec.meta_addr(i)).collect();

        let mut daemons = BTreeMap::new();
        let peers: Vec<String> = (1..=spec.meta)
            .map(|i| format!("{i}={}", spec.meta_addr(i)))
            .collect();
        for i in 1..=spec.meta {
            let mut args = vec![
                "--id".to_string(),
                i.to_string(),
                "--listen".into(),
                spec.meta_addr(i),
                "--data-dir".into(),
                spec.dir.join(format!("meta-{i}")).display().to_string(),
                "--metrics-listen".into(),
                spec.meta_metrics_addr(i),
            ];
            args.extend(spec.transport_args(Role::Meta, &format!("meta-{i}"))?);
            if i == 1 {
                args.push("--bootstrap".into());
                args.push("--peer".into());
                args.push(peers.join(","));
            }
            daemons.insert(
                format!("meta-{i}"),
                Daemon {
                    args,
                    binary: spec.bin_dir.join("cairn-meta"),
                    child: None,
                    env: Vec::new(),
                },
            );
        }
        for j in 1..=spec.nodes {
            let mut args = vec![
                "--id".to_string(),
                j.to_string(),
                "--listen".into(),
                spec.node_addr(j),
                "--data-dir".into(),
                spec.dir.join(format!("node-{j}")).display().to_string(),
                "--zone".into(),
                format!("zone-{}", (j - 1) % 3 + 1),
                "--meta".into(),
                meta_addrs.join(","),
                "--metrics-listen".into(),
                spec.node_metrics_addr(j),
            ];
            args.extend(spec.node_transport_args(j)?);
            daemons.insert(
                format!("node-{j}"),
                Daemon {
                    args,
                    binary: spec.bin_dir.join("cairn-node"),
                    child: None,
                    env: Vec::new(),
                },
            );
        }
        for d in daemons.values() {
            if !d.binary.exists() {
                bail!(
                    "{:?} not found: build the workspace first (cargo build --workspace)",
                    d.binary
                );
            }
        }
        let mut cluster = DevCluster { spec, daemons };
        cluster.write_cluster_file()?;
        let names: Vec<String> = cluster.daemons.keys().cloned().collect();
        for name in names {
            cluster.start_process(&name)?;
        }
        Ok(cluster)
    }

    /// Starts one more metadata replica (the next id, the next 127.0.0.x address) that
    /// joins the running cluster by itself. Returns its name and address.
    pub fn add_meta(&mut self, extra_args: &[&str]) -> anyhow::Result<(String, String)> {
        let id = (1..)
            .find(|i| !self.daemons.contains_key(&format!("meta-{i}")))
            .expect("some id is free");
        if id > 9 {
            bail!("at most 9 metadata replicas");
        }
        let addr = self.spec.meta_addr(id);
        check_free(&addr)?;
        let existing: Vec<String> = (1..id).map(|i| self.spec.meta_addr(i)).collect();
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--listen".into(),
            addr.clone(),
            "--data-dir".into(),
            self.spec
                .dir
                .join(format!("meta-{id}"))
                .display()
                .to_string(),
            "--join".into(),
            existing.join(","),
            "--metrics-listen".into(),
            self.spec.meta_metrics_addr(id),
        ];
        args.extend(
            self.spec
                .transport_args(Role::Meta, &format!("meta-{id}"))?,
        );
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let name = format!("meta-{id}");
        self.daemons.insert(
            name.clone(),
            Daemon {
                args,
                binary: self.spec.bin_dir.join("cairn-meta"),
                child: None,
                env: Vec::new(),
            },
        );
        self.start_process(&name)?;
        self.write_cluster_file()?;
        Ok((name, addr))
    }

    /// Starts one more storage node (the next id and 127.0.0.x address) registered with
    /// this cluster's metadata replicas. Returns its name.
    pub fn add_node(&mut self) -> anyhow::Result<String> {
        let j = (1..)
            .find(|j| !self.daemons.contains_key(&format!("node-{j}")))
            .expect("some id is free");
        if j > 40 {
            bail!("at most 40 storage nodes");
        }
        check_free(&self.spec.node_addr(j))?;
        check_free(&self.spec.node_metrics_addr(j))?;
        let mut args = vec![
            "--id".to_string(),
            j.to_string(),
            "--listen".into(),
            self.spec.node_addr(j),
            "--data-dir".into(),
            self.spec
                .dir
                .join(format!("node-{j}"))
                .display()
                .to_string(),
            "--zone".into(),
            format!("zone-{}", (j - 1) % 3 + 1),
            "--meta".into(),
            self.meta_addrs().join(","),
            "--metrics-listen".into(),
            self.spec.node_metrics_addr(j),
        ];
        args.extend(self.spec.node_transport_args(j)?);
        let name = format!("node-{j}");
        self.daemons.insert(
            name.clone(),
            Daemon {
                args,
                binary: self.spec.bin_dir.join("cairn-node"),
                child: None,
                env: Vec::new(),
            },
        );
        self.start_process(&name)?;
        Ok(name)
    }

    /// A cluster file naming `meta` (some or all replicas) with this cluster's transport
    /// and the `client` certificate.
    pub fn cluster_file_for(&self, meta: Vec<String>) -> ClusterFile {
        ClusterFile {
            meta,
            chunk_size: self.spec.chunk_size,
            tls_dir: (!self.spec.insecure).then(|| self.spec.tls_dir()),
            tls_name: "client".into(),
            insecure: self.spec.insecure,
            token_file: None,
        }
    }

    /// Addresses of every metadata replica this cluster started.
    pub fn meta_addrs(&self) -> Vec<String> {
        (1..=9)
            .filter(|i| self.daemons.contains_key(&format!("meta-{i}")))
            .map(|i| self.spec.meta_addr(i))
            .collect()
    }

    /// Rewrites cluster.toml and mount.toml to list every metadata replica.
    fn write_cluster_file(&self) -> anyhow::Result<()> {
        if !self.spec.insecure {
            self.spec.ensure_cert(Role::Client, "client")?;
            self.spec.ensure_cert(Role::Mount, MOUNT_USER)?;
        }
        let cluster = self.cluster_file_for(self.meta_addrs());
        let mount = ClusterFile {
            tls_name: MOUNT_USER.into(),
            ..cluster.clone()
        };
        for (path, file) in [
            (self.spec.cluster_file(), cluster),
            (self.spec.mount_cluster_file(), mount),
        ] {
            let text = toml::to_string(&file).context("encode a cluster file")?;
            std::fs::write(&path, text).with_context(|| format!("write {path:?}"))?;
        }
        Ok(())
    }

    /// Gives [`MOUNT_USER`] write access to every bucket there is now: a development
    /// cluster's convenience (an operator grants a compute node's mount the buckets it
    /// needs, `cairn grant`).
    pub async fn grant_mount_user(&self) -> anyhow::Result<()> {
        if self.spec.insecure {
            return Ok(());
        }
        let admin = self.client()?;
        for bucket in admin.list_buckets().await? {
            admin
                .set_grant(&bucket.name, MOUNT_USER, "write")
                .await
                .with_context(|| format!("grant {MOUNT_USER} write on {}", bucket.name))?;
        }
        Ok(())
    }

    /// A client with the mounts' certificate (see [`MOUNT_USER`]), for in-process mounts.
    pub fn mount_client(&self) -> Result<Client, ClientError> {
        Client::from_file(&self.spec.mount_cluster_file())
    }

    /// Changes the metadata addresses storage nodes are started with (takes effect when
    /// each node is next started, as a config change would).
    pub fn set_node_meta_addrs(&mut self, addrs: &[String]) {
        for (name, d) in self.daemons.iter_mut() {
            if !name.starts_with("node-") {
                continue;
            }
            if let Some(pos) = d.args.iter().position(|a| a == "--meta") {
                d.args[pos + 1] = addrs.join(",");
            }
        }
    }

    /// Mounts the cluster's filesystem at `mountpoint` with a `cairn-mount` process named
    /// `mount-N` (the next free N) and waits until the mount serves. Returns its name.
    /// The mount runs as [`MOUNT_USER`], granted write on every bucket there is now.
    pub async fn add_mount(
        &mut self,
        mountpoint: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<String> {
        let n = (1..)
            .find(|n| !self.daemons.contains_key(&format!("mount-{n}")))
            .expect("a free mount number");
        let name = format!("mount-{n}");
        std::fs::create_dir_all(mountpoint).with_context(|| format!("create {mountpoint:?}"))?;
        let mountpoint = mountpoint
            .canonicalize()
            .with_context(|| format!("resolve {mountpoint:?}"))?;
        if is_mounted(&mountpoint) {
            bail!("{mountpoint:?} is already mounted; unmount it first (fusermount3 -u)");
        }
        self.grant_mount_user().await?;
        let mut args = vec![
            "--foreground".to_string(),
            "--cluster".into(),
            self.spec.mount_cluster_file().display().to_string(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        args.push(mountpoint.display().to_string());
        let binary = self.spec.bin_dir.join("cairn-mount");
        if !binary.exists() {
            bail!("{binary:?} not found: build the workspace first (cargo build --workspace)");
        }
        self.daemons.insert(
            name.clone(),
            Daemon {
                args,
                binary,
                child: None,
                env: Vec::new(),
            },
        );
        self.start_process(&name)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&mountpoint) {
            if self.reap_exited().iter().any(|(n, _)| *n == name) || Instant::now() > deadline {
                bail!(
                    "{name} did not mount {mountpoint:?}; see {:?}",
                    self.spec.log_path(&name)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(name)
    }

    /// Where mount `name` is mounted (its last argument).
    pub fn mountpoint(&self, name: &str) -> Option<PathBuf> {
        self.daemons.get(name)?.args.last().map(PathBuf::from)
    }

    pub fn spec(&self) -> &DevClusterSpec {
        &self.spec
    }

    pub fn names(&self) -> Vec<String> {
        self.daemons.keys().cloned().collect()
    }

    pub fn client(&self) -> Result<Client, ClientError> {
        Client::from_file(&self.spec.cluster_file())
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.daemons.get(name)?.child.as_ref().map(|c| c.id())
    }

    /// (Re)starts a daemon that is not running, with the arguments it first had.
    pub fn start_process(&mut self, name: &str) -> anyhow::Result<()> {
        let (dir, log_path) = (self.spec.dir.clone(), self.spec.log_path(name));
        let mut env = self.spec.env.clone();
        let d = self
            .daemons
            .get_mut(name)
            .with_context(|| format!("no process named {name}"))?;
        if let Some(child) = d.child.as_mut() {
            if child.try_wait()?.is_none() {
                bail!("{name} is already running");
            }
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {log_path:?}"))?;
        env.extend(d.env.iter().cloned());
        let child = Command::new(&d.binary)
            .args(&d.args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {:?}", d.binary))?;
        std::fs::write(
            dir.join("pids").join(format!("{name}.pid")),
            child.id().to_string(),
        )?;
        d.child = Some(child);
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) an environment variable of one daemon, from its
    /// next start on (e.g. `CAIRN_FAILPOINTS` for one node).
    pub fn set_env(&mut self, name: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let d = self
            .daemons
            .get_mut(name)
            .with_context(|| format!("no process named {name}"))?;
        d.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            d.env.push((key.to_owned(), value.to_owned()));
        }
        Ok(())
    }

    /// The flags daemon `name` is started with (e.g. to run `cairn-meta --restore` with
    /// a replica's own settings).
    pub fn args(&self, name: &str) -> Option<&[String]> {
        self.daemons.get(name).map(|d| d.args.as_slice())
    }

    /// SIGKILLs a daemon and reaps it.
    pub fn kill(&mut self, name: &str) {
        self.stop_with(name, libc::SIGKILL, Duration::from_secs(10));
    }

    /// SIGTERMs a daemon and waits for it (SIGKILL after `grace`).
    pub fn stop(&mut self, name: &str) {
        self.stop_with(name, libc::SIGTERM, Duration::from_secs(10));
    }

    /// Sends a signal without waiting (e.g. SIGSTOP / SIGCONT).
    pub fn signal(&self, name: &str, sig: i32) {
        if let Some(pid) = self.pid(name) {
            signal(pid, sig);
        }
    }

    fn stop_with(&mut self, name: &str, sig: i32, grace: Duration) {
        let Some(d) = self.daemons.get_mut(name) else {
            return;
        };
        let Some(mut child) = d.child.take() else {
            return;
        };
        // A stopped process would never handle SIGTERM.
        signal(child.id(), libc::SIGCONT);
        signal(child.id(), sig);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = std::fs::remove_file(self.spec.dir.join("pids").join(format!("{name}.pid")));
    }

    /// Whether `name` was started and has exited (it stays listed for `reap_exited`).
    pub fn has_exited(&mut self, name: &str) -> bool {
        self.daemons
            .get_mut(name)
            .and_then(|d| d.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Names of daemons that exited on their own since the last call, with their status.
    pub fn reap_exited(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, d) in self.daemons.iter_mut() {
            if let Some(child) = d.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((name.clone(), status.to_string()));
                    d.child = None;
                }
            }
        }
        out
    }

    /// Stops everything: mounts first (each unmounts and ends its session), then storage
    /// nodes, then metadata replicas. A mount that died is unmounted lazily.
    pub fn shutdown(&mut self) {
        let names: Vec<String> = self.daemons.keys().cloned().collect();
        for name in names.iter().filter(|n| n.starts_with("mount-")) {
            self.stop(name);
            if let Some(mountpoint) = self.mountpoint(name) {
                if is_mounted(&mountpoint) {
                    let _ = Command::new("umount").arg("-l").arg(&mountpoint).status();
                }
            }
        }
        for name in names.iter().filter(|n| n.starts_with("node-")) {
            if let Some(pid) = self.pid(name) {
                signal(pid, libc::SIGCONT);
                signal(pid, libc::SIGTERM);
            }
        }
        for name in names.iter().filter(|n| n.starts_with("node-")) {
            self.stop(name);
        }
        for name in names.iter().filter(|n| n.starts_with("meta-")) {
            self.stop(name);
        }
    }

    /// Waits until a metadata leader serves and every storage node is registered and up,
    /// then makes sure the `default` bucket exists.
    /// A started daemon that has exited (a zombie not yet reaped, or gone), if any: e.g.
    /// one that could not bind its port.
    fn exited_daemon(&self) -> Option<String> {
        self.daemons.iter().find_map(|(name, d)| {
            let pid = d.child.as_ref()?.id();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, None | Some(Some('Z') | Some('X'))).then(|| name.clone())
        })
    }

    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = self.client()?;
        let quick = client.clone().with_meta_retry(Duration::from_secs(1));
        let deadline = Instant::now() + timeout;
        loop {
            let last = match quick.status().await {
                Ok(s) => {
                    let up = s.nodes.iter().filter(|n| n.state == "up").count();
                    if s.nodes.len() == self.spec.nodes && up == self.spec.nodes {
                        break;
                    }
                    format!("{up} of {} storage nodes up", self.spec.nodes)
                }
                Err(e) => e.to_string(),
            };
            if let Some(name) = self.exited_daemon() {
                bail!(
                    "{name} exited before the cluster became ready (see {:?})",
                    self.spec.log_path(&name)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "cluster not ready after {timeout:?}: {last} (logs in {:?})",
                    self.spec.dir.join("logs")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match client.create_bucket("default", self.spec.redundancy).await {
            Ok(()) | Err(ClientError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e).context("create the default bucket"),
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether `path` is a mount point (per `/proc/self/mounts`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let needle = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&needle))
}

fn check_free(addr: &str) -> anyhow::Result<()> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("address {addr} is not free (choose another --port-base)"))
}

/// The directory holding this executable (where the sibling binaries are).
pub fn own_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("find the cairn executable")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}
