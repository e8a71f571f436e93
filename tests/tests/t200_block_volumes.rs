//! Block volumes through NBD, with Debian's real clients (`qemu-img`, `qemu-io`,
//! `nbdcopy` from libnbd-bin; `scripts/install-deps.sh` installs them) against
//! `cairn volume serve` on a real cluster:
//! - a 1 GiB random image converted into a volume and back out compares identical
//!   (`qemu-img compare`);
//!   random writes of 512 B - 1 MiB at unaligned offsets, TRIM and WRITE_ZEROES read back
//!   as a model of the volume says, each read right after its write and all of it at the
//!   end; discarding everything leaves nothing stored;
//! - one server per volume: a second is refused while the first lives; after kill -9 of
//!   the server (and of a storage node: its host died) another server serves every
//!   flushed write once the lease expired; a server frozen (SIGSTOP) past its lease and
//!   resumed has its writes refused and ends, and the new server's data stands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{assert_same_bytes, bin_dir, random_bytes, TestCluster};
use rand::{Rng, SeedableRng};

const GIB: u64 = 1 << 30;

/// A `cairn volume serve` process; killed (SIGKILL) on drop.
struct NbdServer {
    child: Child,
    addr: String,
    name: String,
}

impl NbdServer {
    /// Starts a server for `volume` on `port`; `Err` with its output if it ends first.
    fn start(tc: &TestCluster, volume: &str, port: u16, tag: &str) -> Result<NbdServer, String> {
        let addr = format!("127.0.0.1:{port}");
        let log = tc.dir().join(format!("nbd-{tag}.log"));
        let mut child = Command::new(bin_dir().join("cairn"))
            .arg("--cluster")
            .arg(tc.cluster_file())
            .args(["volume", "serve", volume, "--listen", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("server log"))
            .spawn()
            .expect("run cairn volume serve");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(60))
            .is_ok_and(|line| line.starts_with("serving volume"));
        if ready {
            return Ok(NbdServer {
                child,
                addr,
                name: volume.to_owned(),
            });
        }
        let _ = child.kill();
        let status = child.wait().expect("wait for the server");
        Err(format!(
            "{status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }

    fn uri(&self) -> String {
        format!("nbd://{}/{}", self.addr, self.name)
    }

    /// SIGTERM, and the exit status (the server flushes and detaches first).
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().expect("wait for the server")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (scripts/install-deps.sh installs it): {e}"))
}

fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `qemu-io` on `uri` with `commands` (one connection); qemu-io exits non-zero if
/// any command failed, a pattern check included.
fn qemu_io(uri: &str, commands: &[String]) -> Output {
    qemu_io_with(&[], uri, commands)
}

fn qemu_io_with(options: &[&str], uri: &str, commands: &[String]) -> Output {
    let mut args: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    args.extend(["-f".to_owned(), "raw".to_owned(), uri.to_owned()]);
    for c in commands {
        args.push("-c".into());
        args.push(c.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &args)
}

fn volume_list(tc: &TestCluster) -> serde_json::Value {
    let out = must(tc.cli(&["volume", "ls", "--json"]), "volume ls");
    serde_json::from_str(&out).expect("volume ls --json")
}

fn copy_out(server: &NbdServer, path: &Path) -> Vec<u8> {
    must(
        run("nbdcopy", &[&server.uri(), path.to_str().unwrap()]),
        "nbdcopy out of the volume",
    );
    std::fs::read(path).expect("read the copy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_images_and_random_io_round_trip_through_nbd() {
    let tc = TestCluster::start(3, 6, Redundancy::Ec { k: 4, m: 2 }).await;
    let port = tc.cluster.spec().port_base + 90;
    let work = tempfile::tempdir().expect("work dir");
    must(
        tc.cli(&["volume", "create", "disk", "--size", "1GiB"]),
        "volume create",
    );
    let list = volume_list(&tc);
    assert_eq!(list[0]["name"], "disk");
    assert_eq!(list[0]["size"], GIB);
    assert_eq!(list[0]["allocated"], 0, "a new volume is thin");
    assert_eq!(list[0]["attached"], false);
    let server = NbdServer::start(&tc, "disk", port, "disk").expect("serve");
    assert_eq!(volume_list(&tc)[0]["attached"], true);
    let refused = tc.cli(&["volume", "rm", "disk"]);
    assert!(
        !refused.status.success(),
        "an attached volume is not removed"
    );

    // A 1 GiB random image in, compared, and out again.
    let image_path = work.path().join("image.raw");
    let mut model = random_bytes(GIB as usize, 200);
    std::fs::write(&image_path, &model).expect("write the image");
    let image = image_path.to_str().unwrap();
    must(
        run(
            "qemu-img",
            &[
                "convert",
                "-n",
                "-f",
                "raw",
                "-O",
                "raw",
                image,
                &server.uri(),
            ],
        ),
        "qemu-img convert into the volume",
    );
    let out_path = work.path().join("out.raw");
    let out = out_path.to_str().unwrap();
    must(
        run(
            "qemu-img",
            &["convert", "-f", "raw", "-O", "raw", &server.uri(), out],
        ),
        "qemu-img convert out of the volume",
    );
    let compared = must(
        run(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "raw", image, out],
        ),
        "qemu-img compare",
    );
    assert!(compared.contains("Images are identical"), "{compared}");
    assert_eq!(std::fs::metadata(&out_path).unwrap().len(), GIB);
    std::fs::remove_file(&out_path).unwrap();
    std::fs::remove_file(&image_path).unwrap();

    // Random writes (512 B - 1 MiB, unaligned), TRIM and WRITE_ZEROES (hole or not),
    // each write read back at once; the model follows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(2000);
    let mut commands = Vec::new();
    for _ in 0..150 {
        let len = 1u64 << rng.gen_range(9..=20);
        let len = rng.gen_range(len / 2..=len).max(512);
        let offset = rng.gen_range(0..GIB - len);
        let range = offset as usize..(offset + len) as usize;
        match rng.gen_range(0..10) {
            0 => {
                commands.push(format!("discard {offset} {len}"));
                model[range].fill(0);
            }
            1 => {
                commands.push(format!("write -z {offset} {len}"));
                model[range].fill(0);
            }
            2 => {
                commands.push(format!("write -z -u {offset} {len}"));
                model[range].fill(0);
            }
            _ => {
                let pattern: u8 = rng.gen();
                commands.push(format!("write -P {pattern} {offset} {len}"));
                commands.push(format!("read -P {pattern} {offset} {len}"));
                model[range].fill(pattern);
            }
        }
    }
    commands.push("flush".into());
    must(qemu_io(&server.uri(), &commands), "qemu-io random writes");
    assert_same_bytes(
        "the volume after the random writes",
        &copy_out(&server, &out_path),
        &model,
    );
    drop(model);
    std::fs::remove_file(&out_path).unwrap();

    // Reads past the end fail; discarding everything leaves nothing stored.
    let past = qemu_io(&server.uri(), &[format!("read {} 1024", GIB - 512)]);
    assert!(!past.status.success(), "a read past the end is refused");
    must(
        qemu_io(&server.uri(), &[format!("discard 0 {GIB}"), "flush".into()]),
        "discard everything",
    );
    assert_eq!(volume_list(&tc)[0]["allocated"], 0);
    let zeros = qemu_io(
        &server.uri(),
        &[
            "read -P 0 0 1M".into(),
            format!("read -P 0 {} 1M", GIB - (1 << 20)),
        ],
    );
    must(zeros, "read the discarded volume");

    // SIGTERM: the server detaches and exits 0; then the volume can go.
    let status = server.stop();
    assert!(status.success(), "server exit: {status}");
    assert_eq!(volume_list(&tc)[0]["attached"], false);
    must(
        tc.cli(&["volume", "resize", "disk", "--size", "2GiB"]),
        "resize",
    );
    assert_eq!(volume_list(&tc)[0]["size"], 2 * GIB);
    must(tc.cli(&["volume", "rm", "disk"]), "volume rm");
    assert_eq!(volume_list(&tc), serde_json::json!([]));
}

/// Starts a server for `volume` on `port`, retrying while another one still holds it
/// (its lease has not expired yet); at most `limit`.
fn start_when_free(
    tc: &TestCluster,
    volume: &str,
    port: u16,
    tag: &str,
    limit: Duration,
) -> NbdServer {
    let start = std::time::Instant::now();
    loop {
        match NbdServer::start(tc, volume, port, tag) {
            Ok(server) => return server,
            Err(e) if e.contains("attached to another server") && start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("serve {volume} after {:?}: {e}", start.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_per_volume_and_a_server_frozen_past_its_lease_is_fenced() {
    let tc = TestCluster::start_with(3, 6, Redundancy::Ec { k: 4, m: 2 }, |spec| {
        spec.env
            .push(("CAIRN_META_SESSION_LEASE_MS".into(), "2000".into()));
    })
    .await;
    let port = tc.cluster.spec().port_base + 90;
    must(
        tc.cli(&["volume", "create", "db", "--size", "64MiB"]),
        "volume create",
    );
    let first = NbdServer::start(&tc, "db", port, "first").expect("first server");
    must(
        qemu_io(
            &first.uri(),
            &[
                "write -P 17 0 1M".into(),
                "write -P 18 5000 3000".into(),
                "flush".into(),
            ],
        ),
        "flushed writes",
    );
    let second = NbdServer::start(&tc, "db", port + 1, "second-refused");
    let refused = second.err().expect("a second server is refused");
    assert!(refused.contains("attached to another server"), "{refused}");

    // The first server's host dies: the server and a storage node, kill -9.
    drop(first);
    tc.cluster.signal("node-1", libc::SIGKILL);
    let taken_over = start_when_free(&tc, "db", port + 1, "second", Duration::from_secs(60));
    must(
        qemu_io(
            &taken_over.uri(),
            &[
                "read -P 17 0 5000".into(),
                "read -P 18 5000 3000".into(),
                "read -P 17 8000 1040576".into(),
            ],
        ),
        "every flushed write is there",
    );

    // Frozen past its lease, with a client connected: a third server takes the volume
    // and writes.
    let mut connected = InteractiveQemuIo::start(&taken_over.uri());
    connected.command("read -P 17 0 4096", "read 4096/4096");
    taken_over.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(6));
    let third = start_when_free(&tc, "db", port + 2, "third", Duration::from_secs(60));
    must(
        qemu_io(&third.uri(), &["write -P 51 0 1M".into(), "flush".into()]),
        "the third server's writes",
    );

    // Resumed: its writes are refused (from the client connected all along, and from a
    // new one), and it ends by itself.
    taken_over.signal(libc::SIGCONT);
    connected.command_fails("write -P 68 0 1M");
    drop(connected);
    // Write-back: a plain write, which a live server acknowledges when it is queued.
    let late = qemu_io_with(
        &["-t", "writeback"],
        &taken_over.uri(),
        &["write -P 68 0 1M".into()],
    );
    assert!(
        !late.status.success(),
        "a write through the fenced server succeeded: {}",
        String::from_utf8_lossy(&late.stdout)
    );
    let mut taken_over = taken_over;
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = taken_over.child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("the fenced server ends by itself");
    assert!(!status.success(), "a fenced server exits with an error");
    let log = std::fs::read_to_string(tc.dir().join("nbd-second.log")).unwrap();
    assert!(log.contains("fenced"), "{log}");
    must(
        qemu_io(
            &third.uri(),
            &["read -P 51 0 1M".into(), "read -P 0 1M 1M".into()],
        ),
        "the new server's data stands",
    );
}

/// `qemu-io` driven line by line on its standard input (one connection for the whole
/// session); killed on drop.
struct InteractiveQemuIo {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl InteractiveQemuIo {
    fn start(uri: &str) -> InteractiveQemuIo {
        // Write-back caching: qemu-io's default, write-through, makes every write FUA.
        let mut child = Command::new("qemu-io")
            .args(["-t", "writeback", "-f", "raw", uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run qemu-io");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        InteractiveQemuIo { child, lines }
    }

    fn send(&mut self, command: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{command}").expect("send to qemu-io");
        stdin.flush().expect("send to qemu-io");
    }

    /// Sends `command` and waits (at most 60 s) for an output line containing `expect`.
    fn command(&mut self, command: &str, expect: &str) {
        self.send(command);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("failed") => panic!("qemu-io {command}: {line}"),
                Ok(line) if line.contains(expect) => return,
                Ok(_) => {}
                Err(e) => panic!("qemu-io {command}: no {expect:?} in its output: {e}"),
            }
        }
    }

    /// Sends `command` and waits (at most 60 s) for it to fail.
    fn command_fails(&mut self, command: &str) {
        self.send(command);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("failed") => return,
                Ok(line) if line.contains("wrote") => panic!("qemu-io {command} succeeded"),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(e) => panic!("qemu-io {command}: no answer: {e}"),
            }
        }
    }

    fn quit(mut self) {
        self.send("quit");
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for qemu-io");
        assert!(status.success(), "qemu-io: {status}");
    }
}

impl Drop for InteractiveQemuIo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes of every shard file on every node.
fn shard_bytes(tc: &TestCluster) -> u64 {
    tc.shard_files()
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_hold_the_flushed_state_clones_diverge_and_deleting_them_frees_space() {
    const MIB: u64 = 1 << 20;
    let tc = TestCluster::start(3, 6, Redundancy::Ec { k: 4, m: 2 }).await;
    let port = tc.cluster.spec().port_base + 90;
    must(
        tc.cli(&["volume", "create", "src", "--size", "64MiB"]),
        "volume create",
    );
    let src = NbdServer::start(&tc, "src", port, "src").expect("serve src");
    must(
        qemu_io(&src.uri(), &["write -P 1 0 8M".into(), "flush".into()]),
        "flushed write",
    );
    // A writer still connected has written without flushing when the snapshot is taken
    // (qemu flushes when it closes, so the writer stays open until after it).
    let mut writer = InteractiveQemuIo::start(&src.uri());
    writer.command("write -P 2 0 1M", "wrote");
    must(
        tc.cli(&["volume", "snapshot", "src", "s1"]),
        "snapshot while attached",
    );
    // Closing, qemu flushes.
    writer.quit();
    let list = volume_list(&tc);
    assert_eq!(list[0]["snapshots"], serde_json::json!(["s1"]));
    let refused = tc.cli(&["volume", "rm", "src"]);
    assert!(!refused.status.success(), "a volume with snapshots stays");

    // The snapshot is exactly the flushed state; exported read-only.
    let s1 = NbdServer::start(&tc, "src@s1", port + 1, "s1").expect("serve the snapshot");
    must(
        qemu_io_with(
            &["-r"],
            &s1.uri(),
            &[
                "read -P 1 0 8M".into(),
                format!("read -P 0 {} {}", 8 * MIB, 56 * MIB),
            ],
        ),
        "the snapshot holds the flushed writes only",
    );
    let write = qemu_io(&s1.uri(), &["write -P 7 0 4096".into()]);
    assert!(!write.status.success(), "a snapshot is exported read-only");
    must(
        qemu_io(
            &src.uri(),
            &["read -P 2 0 1M".into(), "read -P 1 1M 7M".into()],
        ),
        "the volume has both writes",
    );

    // The volume is overwritten: the snapshot's chunks are now its own. A clone of it
    // diverges without changing it.
    must(
        qemu_io(&src.uri(), &["write -P 3 0 8M".into(), "flush".into()]),
        "overwrite the volume",
    );
    must(
        tc.cli(&["volume", "clone", "src@s1", "c1"]),
        "clone the snapshot",
    );
    let c1 = NbdServer::start(&tc, "c1", port + 2, "c1").expect("serve the clone");
    must(
        qemu_io(
            &c1.uri(),
            &[
                "read -P 1 0 8M".into(),
                "write -P 9 0 1M".into(),
                "flush".into(),
                "read -P 9 0 1M".into(),
                "read -P 1 1M 7M".into(),
            ],
        ),
        "the clone starts as the snapshot and takes writes",
    );
    must(
        qemu_io_with(&["-r"], &s1.uri(), &["read -P 1 0 8M".into()]),
        "the snapshot did not change",
    );

    // Deleting the clone and the snapshot frees the chunks only they used: the clone's
    // 1 MiB and the snapshot's 8 MiB (x 6/4 in shards); the volume's data stays.
    for server in [s1, c1] {
        let status = server.stop();
        assert!(status.success(), "server exit: {status}");
    }
    let before = shard_bytes(&tc);
    must(tc.cli(&["volume", "rm", "c1"]), "remove the clone");
    must(
        tc.cli(&["volume", "snapshot-rm", "src@s1"]),
        "remove the snapshot",
    );
    let freed_at_least = 9 * MIB * 6 / 4;
    let mut after = before;
    for _ in 0..240 {
        after = shard_bytes(&tc);
        if before - after.min(before) >= freed_at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        before - after.min(before) >= freed_at_least,
        "shard bytes {before} -> {after}: less than {freed_at_least} freed"
    );
    must(
        qemu_io(&src.uri(), &["read -P 3 0 8M".into()]),
        "the volume's data stays",
    );
    assert_eq!(volume_list(&tc)[0]["snapshots"], serde_json::json!([]));
}

/// The number of extents (runs pointing into chunks) of volume `name`'s file, and of the
/// distinct chunks they point into, asked of the metadata service directly.
async fn extents_of(tc: &TestCluster, name: &str) -> (usize, usize) {
    use cairn_common::fs::{FsQuery, FsReply, FsRequest, ROOT_INO};
    let call = |request: FsRequest| async move {
        tc.client
            .fs_call(&request)
            .await
            .expect("metadata reachable")
            .expect("request answered")
    };
    let FsReply::Session { id, .. } = call(FsRequest::OpenSession {
        name: "t200-extents".into(),
    })
    .await
    else {
        panic!("no session")
    };
    let lookup = |parent, name: String| FsRequest::Query {
        session: id,
        query: FsQuery::Lookup { parent, name },
    };
    let FsReply::Attr(bucket) = call(lookup(ROOT_INO, format!("vol-{name}"))).await else {
        panic!("no bucket")
    };
    let FsReply::Attr(file) = call(lookup(bucket.ino, "volume".into())).await else {
        panic!("no file")
    };
    let FsReply::Extents(map) = call(FsRequest::Query {
        session: id,
        query: FsQuery::Extents {
            ino: file.ino,
            offset: 0,
            len: u64::MAX,
        },
    })
    .await
    else {
        panic!("no extents")
    };
    call(FsRequest::CloseSession { session: id }).await;
    let chunks: std::collections::BTreeSet<_> = map.extents.iter().map(|e| e.chunk).collect();
    (map.extents.len(), chunks.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_small_writes_are_compacted_and_verify() {
    const SIZE: u64 = 32 << 20;
    const REGIONS: usize = (SIZE / cairn_block::fragmentation::REGION) as usize;
    let bound = REGIONS * (cairn_block::fragmentation::THRESHOLD as usize + 1);
    let tc = TestCluster::start(3, 6, Redundancy::Ec { k: 4, m: 2 }).await;
    let port = tc.cluster.spec().port_base + 90;
    must(
        tc.cli(&["volume", "create", "frag", "--size", "32MiB"]),
        "volume create",
    );
    let server = NbdServer::start(&tc, "frag", port, "frag").expect("serve");
    let work = tempfile::tempdir().expect("work dir");

    // 4,000 random 4 KiB writes (write-back, a flush every 32): without compaction the
    // file would end with about 3,000 extents.
    let mut model = vec![0u8; SIZE as usize];
    let mut rng = rand::rngs::StdRng::seed_from_u64(4000);
    let mut commands = Vec::new();
    for i in 0..4000 {
        let block = rng.gen_range(0..SIZE / 4096);
        let pattern: u8 = rng.gen_range(1..=255);
        commands.push(format!("write -P {pattern} {} 4096", block * 4096));
        model[(block * 4096) as usize..((block + 1) * 4096) as usize].fill(pattern);
        if i % 32 == 31 {
            commands.push("flush".into());
        }
    }
    commands.push("flush".into());
    must(
        qemu_io_with(&["-t", "writeback"], &server.uri(), &commands),
        "random writes",
    );

    // Compaction catches up: the extents stay within regions x (threshold + 1).
    let mut seen = extents_of(&tc, "frag").await;
    for _ in 0..120 {
        if seen.0 <= bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = extents_of(&tc, "frag").await;
    }
    assert!(
        seen.0 <= bound,
        "{} extents in {} chunks after compaction; the bound is {bound}",
        seen.0,
        seen.1
    );
    eprintln!(
        "after compaction: {} extents in {} chunks (bound {bound})",
        seen.0, seen.1
    );
    let out = work.path().join("frag.raw");
    assert_same_bytes(
        "the volume after random writes and compaction",
        &copy_out(&server, &out),
        &model,
    );
}
