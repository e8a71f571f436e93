//! The fault-injection harness: workloads of object operations and of file operations
//! through mounts, recorded in a [`History`], and a nemesis that, from a seed, applies one fault at a time to a running
//! [`TestCluster`] and heals it: kill -9 and restart of a storage node, a metadata
//! follower or the leader; SIGSTOP / SIGCONT of any of them; a network partition between
//! one process and the processes it talks to, or between the workload and one node
//! (iptables on 127.0.0.x, see [`Partition`]);
//! a flipped bit or a truncation in a shard file; a jump of the storage nodes' wall clocks
//! (two hours forward, and back at the next jump, so it overlaps other faults). The same seed gives the same schedule of
//! faults (the workload's timing, and so the exact interleaving, still varies).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, ClientError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{payload, payload_id, Entry, History};
use crate::linearizability::RegisterOp;
use crate::TestCluster;

/// The object workload: `workers` tasks, each doing random puts (unique values), gets and
/// deletes on `keys` shared keys of one bucket until told to stop.
#[derive(Clone, Debug)]
pub struct Workload {
    pub bucket: String,
    pub keys: usize,
    pub workers: usize,
    /// Sizes of put values (bytes), chosen uniformly: small values are one chunk, large
    /// ones several.
    pub value_sizes: (usize, usize),
    /// An operation not finished after this long is given up (a write's outcome is then
    /// unknown).
    pub op_timeout: Duration,
}

impl Workload {
    pub fn key(&self, i: usize) -> String {
        format!("reg/{i:02}")
    }

    /// Starts the workers; they run until `stop` is set.
    pub fn spawn(
        &self,
        client: &Client,
        history: &Arc<History>,
        stop: &Arc<AtomicBool>,
        seed: u64,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.workers)
            .map(|w| {
                let (me, client, history, stop) =
                    (self.clone(), client.clone(), history.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(seed * 1000 + w as u64);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = me.key(rng.gen_range(0..me.keys));
                        let roll = rng.gen_range(0..100);
                        // Ids are unique across workers and runs of the same seed.
                        let id = (seed << 40) | ((w as u64) << 32) | n;
                        n += 1;
                        let len = rng.gen_range(me.value_sizes.0..=me.value_sizes.1);
                        me.one_op(&client, &history, w, &key, roll, id, len).await;
                    }
                })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn one_op(
        &self,
        client: &Client,
        history: &History,
        worker: usize,
        key: &str,
        roll: u32,
        id: u64,
        len: usize,
    ) {
        let call = history.now();
        let done = |op, ret| {
            history.record(Entry {
                worker,
                key: key.to_owned(),
                op,
                call,
                ret,
            })
        };
        if roll < 45 {
            let mut out = Vec::new();
            let got = tokio::time::timeout(
                self.op_timeout,
                client.get(&self.bucket, key, None, &mut out),
            )
            .await;
            match got {
                Ok(Ok(_)) => match payload_id(&out) {
                    Ok(seen) => done(RegisterOp::Get(Some(seen)), Some(history.now())),
                    Err(why) => history.violation(format!("{key}: worker {worker} read {why}")),
                },
                Ok(Err(ClientError::NotFound { .. })) => {
                    done(RegisterOp::Get(None), Some(history.now()))
                }
                // A failed read changed nothing and saw nothing.
                Ok(Err(_)) | Err(_) => {}
            }
        } else if roll < 88 {
            let data = payload(id, len);
            let put =
                tokio::time::timeout(self.op_timeout, client.put(&self.bucket, key, &data[..]))
                    .await;
            let ret = matches!(put, Ok(Ok(_))).then(|| history.now());
            done(RegisterOp::Put(id), ret);
        } else {
            let deleted =
                tokio::time::timeout(self.op_timeout, client.delete(&self.bucket, key)).await;
            match deleted {
                // Either way the key is absent afterwards, which is what a delete does
                // (the client reports a retried delete that finds the key gone as done).
                Ok(Ok(())) | Ok(Err(ClientError::NotFound { .. })) => {
                    done(RegisterOp::Delete, Some(history.now()))
                }
                Ok(Err(_)) | Err(_) => done(RegisterOp::Delete, None),
            }
        }
    }

    /// After the faults: one read of every key by `client` (retried until the cluster
    /// answers), recorded like any other read, so lost writes show up in the check.
    pub async fn final_reads(&self, client: &Client, history: &History) {
        for i in 0..self.keys {
            let key = self.key(i);
            for attempt in 0..30 {
                let call = history.now();
                let mut out = Vec::new();
                let seen = match client.get(&self.bucket, &key, None, &mut out).await {
                    Ok(_) => match payload_id(&out) {
                        Ok(id) => Some(Some(id)),
                        Err(why) => {
                            history.violation(format!("{key}: final read {why}"));
                            break;
                        }
                    },
                    Err(ClientError::NotFound { .. }) => Some(None),
                    Err(e) => {
                        eprintln!("final read of {key} (attempt {attempt}): {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        None
                    }
                };
                if let Some(seen) = seen {
                    history.record_final_read(&key, call, seen);
                    break;
                }
                assert!(attempt < 29, "{key} unreadable after the cluster healed");
            }
        }
    }
}

/// The file workload: `workers` threads replace, read and delete `files` files of one
/// bucket through several mounts (worker `w` uses mount `w % mounts.len()`, so each
/// file is written through one mount and read through the others). A write is atomic:
/// the payload goes to a temporary name, is fsynced, and is renamed over the file; so a
/// read must see exactly one write's payload (a torn or mixed file is a violation). The
/// mounts run with `--attr-ttl-ms 0` (no kernel caching of names or attributes), which
/// makes each file a linearizable register: a read opened after a replacement returned
/// sees it (close-to-open) or something newer.
#[derive(Clone, Debug)]
pub struct FileWorkload {
    /// Each mount's directory of the bucket (`MOUNTPOINT/BUCKET`).
    pub dirs: Vec<PathBuf>,
    pub files: usize,
    pub workers: usize,
    pub value_sizes: (usize, usize),
    pub op_timeout: Duration,
}

impl FileWorkload {
    pub fn key(&self, i: usize) -> String {
        format!("file-{i:02}")
    }

    /// Starts the workers; they run until `stop` is set. A file operation the mount does
    /// not finish within `op_timeout` is given up (its thread stays blocked in the kernel
    /// until the mount answers).
    pub fn spawn(
        &self,
        history: &Arc<History>,
        stop: &Arc<AtomicBool>,
        seed: u64,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.workers)
            .map(|w| {
                let (me, history, stop) = (self.clone(), history.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(seed * 1000 + 500 + w as u64);
                    let dir = me.dirs[w % me.dirs.len()].clone();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let file = rng.gen_range(0..me.files);
                        let roll = rng.gen_range(0..100u32);
                        let id = (seed << 40) | (1 << 39) | ((w as u64) << 32) | n;
                        n += 1;
                        let len = rng.gen_range(me.value_sizes.0..=me.value_sizes.1);
                        me.one_op(&history, &dir, w, file, roll, id, len).await;
                    }
                })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn one_op(
        &self,
        history: &History,
        dir: &Path,
        worker: usize,
        file: usize,
        roll: u32,
        id: u64,
        len: usize,
    ) {
        let key = self.key(file);
        let path = dir.join(&key);
        let call = history.now();
        let done = |op, ret| {
            history.record(Entry {
                worker: 1000 + worker,
                key: key.clone(),
                op,
                call,
                ret,
            })
        };
        let blocking = |f: Box<dyn FnOnce() -> std::io::Result<Vec<u8>> + Send>| {
            tokio::time::timeout(self.op_timeout, tokio::task::spawn_blocking(f))
        };
        if roll < 45 {
            let p = path.clone();
            match blocking(Box::new(move || std::fs::read(p))).await {
                Ok(Ok(Ok(bytes))) => match payload_id(&bytes) {
                    Ok(seen) => done(RegisterOp::Get(Some(seen)), Some(history.now())),
                    Err(why) => history.violation(format!("{key}: worker {worker} read {why}")),
                },
                Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::NotFound => {
                    done(RegisterOp::Get(None), Some(history.now()))
                }
                _ => {}
            }
        } else if roll < 90 {
            let data = payload(id, len);
            let temp = dir.join(format!(".tmp-{worker}-{id:x}"));
            let (p, t) = (path.clone(), temp.clone());
            let replaced = blocking(Box::new(move || {
                use std::io::Write;
                let mut f = std::fs::File::create(&t)?;
                f.write_all(&data)?;
                f.sync_all()?;
                drop(f);
                std::fs::rename(&t, &p)?;
                Ok(Vec::new())
            }))
            .await;
            let ok = matches!(replaced, Ok(Ok(Ok(_))));
            done(RegisterOp::Put(id), ok.then(|| history.now()));
            if !ok {
                let remove = tokio::task::spawn_blocking(move || std::fs::remove_file(temp));
                let _ = tokio::time::timeout(self.op_timeout, remove).await;
            }
        } else {
            let p = path.clone();
            match blocking(Box::new(move || {
                std::fs::remove_file(p).map(|()| Vec::new())
            }))
            .await
            {
                // As for objects: ENOENT may follow a retried unlink that did the work.
                Ok(Ok(Ok(_))) => done(RegisterOp::Delete, Some(history.now())),
                Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::NotFound => {
                    done(RegisterOp::Delete, Some(history.now()))
                }
                _ => done(RegisterOp::Delete, None),
            }
        }
    }

    /// After the faults: one read of every file through the first mount (retried while
    /// the mount reports an error), recorded.
    pub async fn final_reads(&self, history: &History) {
        for i in 0..self.files {
            let key = self.key(i);
            for attempt in 0..30 {
                let path = self.dirs[0].join(&key);
                let call = history.now();
                let read = tokio::time::timeout(
                    self.op_timeout,
                    tokio::task::spawn_blocking(move || std::fs::read(path)),
                )
                .await;
                let seen = match read {
                    Ok(Ok(Ok(bytes))) => match payload_id(&bytes) {
                        Ok(id) => Some(id),
                        Err(why) => {
                            history.violation(format!("{key}: final read {why}"));
                            break;
                        }
                    },
                    Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::NotFound => None,
                    other => {
                        assert!(attempt < 29, "{key} unreadable after healing: {other:?}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                history.record_final_read(&key, call, seen);
                break;
            }
        }
    }
}

/// iptables rules dropping the traffic between one process and others, removed on drop
/// (also when the test panics). Daemons make their outgoing connections from the address
/// they listen on (`cairn_net::Transport::from_source`), so a rule on (source address,
/// destination address and port) cuts exactly one direction between two processes and
/// leaves other clusters on the same addresses (other ports) alone.
pub struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    /// Cuts `isolated` off from each of `others` in both directions.
    pub fn isolate(isolated: SocketAddr, others: &[SocketAddr]) -> Partition {
        let pairs = others
            .iter()
            .flat_map(|other| [(isolated.ip(), *other), (other.ip(), isolated)]);
        Self::drop_connections(pairs)
    }

    /// Drops every packet from each `(address, to server)`: no connection from that
    /// address reaches that server any more, and established ones stall.
    pub fn drop_connections(pairs: impl IntoIterator<Item = (IpAddr, SocketAddr)>) -> Partition {
        let rules: Vec<Vec<String>> = pairs
            .into_iter()
            .map(|(from, to)| {
                vec![
                    "-p".into(),
                    "tcp".into(),
                    "-s".into(),
                    from.to_string(),
                    "-d".into(),
                    to.ip().to_string(),
                    "--dport".into(),
                    to.port().to_string(),
                    "-m".into(),
                    "comment".into(),
                    "--comment".into(),
                    rule_tag(std::process::id()),
                    "-j".into(),
                    "DROP".into(),
                ]
            })
            .collect();
        // Each rule is recorded before it goes in, so a failure half-way removes the
        // ones already in when the partial partition is dropped.
        let mut partition = Partition { rules: Vec::new() };
        for rule in rules {
            partition.rules.push(rule.clone());
            iptables("-I", &rule);
        }
        partition
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in &self.rules {
            iptables("-D", rule);
        }
    }
}

/// The tag of the rules a test process adds (its pid), so that rules left by a process
/// that was killed (no destructor ran) can be found and removed.
fn rule_tag(pid: u32) -> String {
    format!("cairn-nemesis-{pid}")
}

/// Removes partition rules left by test processes that no longer exist (killed before
/// they could remove them: a later cluster on those ports would find its traffic cut).
/// Cheap, and a no-op without iptables; the test harness calls it before every cluster.
pub fn clear_stale_partitions() {
    for chain in ["INPUT", "OUTPUT"] {
        let Ok(out) = Command::new("iptables").args(["-w", "-S", chain]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            let owner_gone = args.iter().any(|a| {
                a.strip_prefix("cairn-nemesis-")
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            });
            if owner_gone && args.first().is_some_and(|a| a == "-A") {
                let _ = Command::new("iptables")
                    .arg("-w")
                    .arg("-D")
                    .args(&args[1..])
                    .status();
            }
        }
    }
}

fn iptables(action: &str, rule: &[String]) {
    for chain in ["INPUT", "OUTPUT"] {
        let status = Command::new("iptables")
            .arg("-w")
            .arg(action)
            .arg(chain)
            .args(rule)
            .status();
        let ok = status.as_ref().is_ok_and(|s| s.success());
        if !ok && action == "-I" {
            panic!("iptables {action} {chain} {rule:?}: {status:?} (is iptables installed?)");
        }
    }
}

/// Whether partitions can be made here (iptables present and usable).
pub fn partitions_supported() -> bool {
    Command::new("iptables")
        .args(["-w", "-L", "OUTPUT", "-n"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Chooses and applies faults from a seed, one at a time, and counts what it applied.
pub struct Nemesis {
    rng: StdRng,
    /// Faults applied, by kind.
    pub applied: BTreeMap<&'static str, u64>,
    partitions: bool,
    /// The nodes' clock offset file (`TestCluster::nodes_on_a_movable_clock`), if they
    /// run on one, and whether their clocks are jumped now.
    clock: Option<PathBuf>,
    jumped: bool,
    /// The local address the workload's client connects from, if it has one of its own:
    /// then the workload can be partitioned from a node.
    client_source: Option<IpAddr>,
}

impl Nemesis {
    pub fn new(seed: u64, partitions: bool, clock: Option<PathBuf>) -> Nemesis {
        Nemesis {
            rng: StdRng::seed_from_u64(seed),
            applied: BTreeMap::new(),
            partitions,
            clock,
            jumped: false,
            client_source: None,
        }
    }

    /// Tells the nemesis that the workload connects from `source` (see
    /// [`cairn_client::Client::new_from`]), so it may partition the workload from a node.
    pub fn with_client_source(mut self, source: IpAddr) -> Nemesis {
        self.client_source = Some(source);
        self
    }

    /// Puts the nodes' clocks back (call when the faults stop).
    pub fn reset_clock(&mut self) {
        if let Some(clock) = &self.clock {
            std::fs::write(clock, "+0\n").expect("write the clock file");
            self.jumped = false;
        }
    }

    fn count(&mut self, kind: &'static str, target: &str) {
        *self.applied.entry(kind).or_default() += 1;
        let now = time::OffsetDateTime::now_utc();
        eprintln!("{now} nemesis: {kind} {target}");
    }

    /// Applies one fault, holds it for a moment, heals it, and lets the cluster settle
    /// briefly. Never takes down more than one process at a time, so ec k+1 over k+2 or
    /// more nodes and 3 metadata replicas always have what they need once healed.
    pub async fn step(&mut self, tc: &mut TestCluster) {
        let metas = tc.cluster.spec().meta;
        let nodes = tc.cluster.spec().nodes;
        let hold = Duration::from_millis(self.rng.gen_range(500..3000));
        let mut kinds = vec![
            "kill node",
            "kill meta",
            "kill leader",
            "pause node",
            "pause meta",
            "flip bit",
            "truncate shard",
        ];
        if self.partitions {
            kinds.extend(["partition node", "partition meta"]);
            if self.client_source.is_some() {
                kinds.push("partition client");
            }
        }
        if self.clock.is_some() {
            kinds.push("jump clock");
        }
        // Every draw is made up front, so a seed gives the same faults whatever happens.
        let kind = kinds[self.rng.gen_range(0..kinds.len())];
        let node = self.rng.gen_range(1..=nodes);
        let meta = self.rng.gen_range(1..=metas);
        let (file_pick, byte_pick, bit) = (
            self.rng.gen::<f64>(),
            self.rng.gen::<f64>(),
            self.rng.gen_range(0..8u32),
        );
        let settle = Duration::from_millis(self.rng.gen_range(300..1500));
        match kind {
            "kill node" | "kill meta" | "kill leader" => {
                let name = match kind {
                    "kill node" => format!("node-{node}"),
                    "kill meta" => format!("meta-{meta}"),
                    _ => format!("meta-{}", leader_or(tc, meta).await),
                };
                tc.cluster.kill(&name);
                self.count(kind, &name);
                tokio::time::sleep(hold).await;
                tc.cluster
                    .start_process(&name)
                    .unwrap_or_else(|e| panic!("restart {name}: {e:#}"));
                // One fault at a time: the next one waits until this process serves.
                wait_serving(tc, &name).await;
            }
            "pause node" | "pause meta" => {
                let name = if kind == "pause node" {
                    format!("node-{node}")
                } else {
                    format!("meta-{meta}")
                };
                tc.cluster.signal(&name, libc::SIGSTOP);
                self.count(kind, &name);
                tokio::time::sleep(hold).await;
                tc.cluster.signal(&name, libc::SIGCONT);
                wait_serving(tc, &name).await;
            }
            "partition node" | "partition meta" => {
                let spec = tc.cluster.spec();
                let addr = |a: String| a.parse::<SocketAddr>().expect("daemon address");
                let metas_addrs: Vec<SocketAddr> =
                    (1..=metas).map(|i| addr(spec.meta_addr(i))).collect();
                let (isolated, others) = if kind == "partition node" {
                    (addr(spec.node_addr(node)), metas_addrs)
                } else {
                    let me = addr(spec.meta_addr(meta));
                    let mut others: Vec<SocketAddr> =
                        metas_addrs.into_iter().filter(|a| *a != me).collect();
                    others.extend((1..=nodes).map(|j| addr(spec.node_addr(j))));
                    (me, others)
                };
                let cut = Partition::isolate(isolated, &others);
                self.count(kind, &isolated.to_string());
                tokio::time::sleep(hold).await;
                drop(cut);
                wait_serving(tc, kind).await;
            }
            "flip bit" | "truncate shard" => {
                let mut files = tc.shard_files();
                files.sort();
                let pick = |len: usize, f: f64| ((len as f64 * f) as usize).min(len - 1);
                let bytes = (!files.is_empty())
                    .then(|| &files[pick(files.len(), file_pick)])
                    .and_then(|path| Some((path, std::fs::read(path).ok()?)))
                    .filter(|(_, bytes)| !bytes.is_empty());
                // No shard yet, or deleted meanwhile (garbage collection): nothing to do.
                let Some((path, mut bytes)) = bytes else {
                    tokio::time::sleep(settle).await;
                    return;
                };
                let at = pick(bytes.len(), byte_pick);
                if kind == "flip bit" {
                    bytes[at] ^= 1 << bit;
                } else {
                    bytes.truncate(at);
                }
                // Written in place, as the disk would have it; a shard deleted meanwhile
                // is not recreated.
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                {
                    use std::io::Write;
                    let _ = f.write_all(&bytes);
                    self.count(kind, &path.display().to_string());
                }
            }
            "partition client" => {
                // The workload (this process, from its own address) loses one node.
                let client = self.client_source.expect("only chosen when set");
                let to: SocketAddr = tc.cluster.spec().node_addr(node).parse().unwrap();
                let cut = Partition::drop_connections([(client, to)]);
                self.count(kind, &to.to_string());
                tokio::time::sleep(hold).await;
                drop(cut);
                wait_serving(tc, kind).await;
            }
            "jump clock" => {
                let clock = self.clock.clone().expect("only chosen with a clock");
                self.jumped = !self.jumped;
                let offset = if self.jumped { "+2h\n" } else { "+0\n" };
                std::fs::write(clock, offset).expect("write the clock file");
                self.count(kind, offset.trim());
            }
            _ => unreachable!("every kind is handled"),
        }
        tokio::time::sleep(settle).await;
    }
}

/// Waits (at most a minute for each replica and for the nodes) until the cluster is
/// whole again after `name` (a daemon or a fault) was hit: every metadata replica answers a status call (a follower by forwarding it, so a
/// leader is elected and known to all) and every storage node is reported up. Faults
/// never stack: two leader losses in a row before the first election finished would
/// leave the metadata service without a leader for longer than a mount's lease (10 s),
/// and the mounts fence themselves by design.
async fn wait_serving(tc: &TestCluster, name: &str) {
    let started = std::time::Instant::now();
    let limit = Duration::from_secs(60);
    let spec = tc.cluster.spec();
    for i in 1..=spec.meta {
        let pinned = Client::new(&tc.cluster.cluster_file_for(vec![spec.meta_addr(i)]))
            .expect("client for one replica")
            .with_meta_retry(Duration::from_millis(500))
            .with_meta_attempt_timeout(Duration::from_secs(1));
        while pinned.status().await.is_err() {
            assert!(
                started.elapsed() < limit,
                "meta-{i} not serving {limit:?} after {name} was hit"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tc.wait_status("every storage node up", limit, |s| {
        s.nodes.iter().all(|n| n.state == "up")
    })
    .await;
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!(
            "nemesis: the cluster took {:?} to heal after {name}",
            started.elapsed()
        );
    }
}

/// The current leader's id, or `fallback` when none is known quickly.
async fn leader_or(tc: &TestCluster, fallback: usize) -> usize {
    let quick = tc
        .client
        .clone()
        .with_meta_retry(Duration::from_secs(2))
        .with_meta_attempt_timeout(Duration::from_secs(1));
    match quick.status().await {
        Ok(s) if s.leader_id > 0 => s.leader_id as usize,
        _ => fallback,
    }
}
