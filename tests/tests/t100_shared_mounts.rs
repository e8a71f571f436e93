//! Several `cairn-mount` processes on one cluster, each like another host: close-to-open
//! between mounts, renames seen everywhere, cluster-wide `flock` and `fcntl` locks that
//! block other mounts until released or until the holder's mount dies and its lease
//! expires, and split brain: a frozen mount whose lease expired can no longer write.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Short leases so that expiry tests finish quickly.
const LEASE_MS: &str = "2000";

fn python(script: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("python")
            .join(script),
    );
    cmd
}

async fn cluster_with_mounts(n: usize) -> (TestCluster, Vec<PathBuf>) {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |spec| {
        spec.env
            .push(("CAIRN_META_SESSION_LEASE_MS".into(), LEASE_MS.into()));
    })
    .await;
    let mut roots = Vec::new();
    for i in 0..n {
        let mountpoint = tc.dir().join(format!("mnt-{i}"));
        tc.cluster
            .add_mount(&mountpoint, &[])
            .await
            .expect("mount the cluster");
        roots.push(mountpoint.canonicalize().unwrap().join("default"));
    }
    (tc, roots)
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// `try_lock.py`'s exit code: 0 taken, 1 busy.
fn try_lock(path: &Path, kind: &str, data: Option<&str>) -> i32 {
    let mut cmd = python("try_lock.py");
    cmd.arg(path).arg(kind);
    if let Some(d) = data {
        cmd.arg(d);
    }
    let out = cmd.output().expect("run try_lock.py");
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "try_lock failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    code
}

/// A `lock_holder.py` process; killed on drop.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    fn start(path: &Path, kind: &str) -> Holder {
        let mut child = python("lock_holder.py")
            .arg(path)
            .arg(kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start lock_holder.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let holder = Holder {
            child,
            stdin,
            lines,
        };
        assert_eq!(holder.next_line(), "locked");
        holder
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from lock_holder.py")
    }

    /// Asks the holder to overwrite its file; its answer ("wrote" or "error ERRNO").
    fn write(&mut self) -> String {
        writeln!(self.stdin, "write").expect("talk to lock_holder.py");
        self.next_line()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_on_one_mount_is_seen_by_an_open_on_another() {
    let (tc, roots) = cluster_with_mounts(2).await;
    let (a, b) = (&roots[0], &roots[1]);

    let data = random_bytes(3 << 20, 1);
    std::fs::write(a.join("f"), &data).expect("write on A");
    assert!(std::fs::read(b.join("f")).expect("read on B") == data);

    // An overwrite in the middle, closed on A: B's next open sees it.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(a.join("f"))
            .expect("open on A");
        f.write_all_at(b"CHANGED", 1_000_000).expect("pwrite");
    }
    let mut expected = data.clone();
    expected[1_000_000..1_000_007].copy_from_slice(b"CHANGED");
    assert!(std::fs::read(b.join("f")).expect("read on B") == expected);
    tc.must_get_equal("default", "f", &expected).await;

    // A rename on A and a new directory on B are seen on the other side (within the
    // kernel's 1 s entry cache).
    std::fs::rename(a.join("f"), a.join("g")).expect("rename on A");
    assert!(eventually(Duration::from_secs(5), || {
        b.join("g").exists() && !b.join("f").exists()
    }));
    std::fs::create_dir(b.join("dir")).expect("mkdir on B");
    std::fs::write(b.join("dir/x"), b"from B").expect("write on B");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read(a.join("dir/x")).ok().as_deref() == Some(&b"from B"[..])
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_block_other_mounts_until_released_or_the_holders_lease_expires() {
    let (mut tc, roots) = cluster_with_mounts(2).await;
    let (a, b) = (&roots[0], &roots[1]);

    for kind in ["flock", "fcntl"] {
        let path_a = a.join(format!("{kind}-released"));
        let holder = Holder::start(&path_a, kind);
        let path_b = b.join(format!("{kind}-released"));
        assert_eq!(
            try_lock(&path_b, kind, None),
            1,
            "{kind}: B must wait for A"
        );
        drop(holder);
        assert!(
            eventually(Duration::from_secs(10), || try_lock(&path_b, kind, None)
                == 0),
            "{kind}: B gets the lock once A's holder exits"
        );
    }

    // A holds a lock and its mount dies: B gets the lock once A's lease expires.
    let _holder = Holder::start(&a.join("held-by-dead-mount"), "fcntl");
    let path_b = b.join("held-by-dead-mount");
    assert_eq!(try_lock(&path_b, "fcntl", None), 1);
    tc.cluster.kill("mount-1");
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || try_lock(&path_b, "fcntl", None)
            == 0),
        "the lock is freed when the dead mount's lease expires"
    );
    assert!(
        killed.elapsed() >= Duration::from_millis(1000),
        "not before the lease could expire"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_mount_whose_lease_expired_cannot_write() {
    let (tc, roots) = cluster_with_mounts(2).await;
    let (a, b) = (&roots[0], &roots[1]);
    let mut holder = Holder::start(&a.join("db"), "flock");
    assert_eq!(
        holder.write(),
        "wrote",
        "A writes while its session is live"
    );

    // Freeze A's mount (a long GC pause or a frozen host) while it holds the lock with the
    // file open for writing.
    tc.cluster.signal("mount-1", libc::SIGSTOP);
    let taken = eventually(Duration::from_secs(30), || {
        try_lock(&b.join("db"), "flock", Some("B owns this now\n")) == 0
    });
    assert!(taken, "B takes the lock after A's lease expired");
    tc.cluster.signal("mount-1", libc::SIGCONT);

    // A wakes up: its further writes fail instead of overwriting B's data.
    let answer = holder.write();
    assert!(
        answer == format!("error {}", libc::ESTALE) || answer == format!("error {}", libc::EIO),
        "A's write after fencing: {answer}"
    );
    drop(holder);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read(b.join("db")).expect("read on B"),
        b"B owns this now\n"
    );
    tc.must_get_equal("default", "db", b"B owns this now\n")
        .await;
    // A stays fenced: it reports errors rather than serving stale data.
    let err = std::fs::read(a.join("db")).expect_err("A is fenced");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ESTALE) | Some(libc::EIO)),
        "{err}"
    );
}

/// POSIX keeps a removed file readable through the descriptors opened before the removal:
/// files written on mount B, open for reading on mount A and removed on B read back whole
/// on A after garbage collection had time to delete what nothing holds. A small file is
/// all inline (its open takes no hold: its whole content came with the open); a large
/// one is in chunks (its open holds it, so its chunks and shards stay). Once A closes
/// it, they are deleted.
#[tokio::test(flavor = "multi_thread")]
async fn files_removed_on_one_mount_stay_readable_where_they_are_open() {
    use std::io::Read;
    let (tc, mounts) = cluster_with_mounts(2).await;
    let (a, b) = (&mounts[0], &mounts[1]);
    let small = random_bytes(3000, 1);
    let big = random_bytes(9 << 20, 2);
    std::fs::write(b.join("small"), &small).unwrap();
    std::fs::write(b.join("big"), &big).unwrap();
    let chunks = tc.client.status().await.unwrap().chunks;
    let shards = tc.shard_files().len();
    assert!(shards > 0, "the large file is stored in chunks");
    let mut open_small = std::fs::File::open(a.join("small")).unwrap();
    let mut open_big = std::fs::File::open(a.join("big")).unwrap();
    std::fs::remove_file(b.join("small")).unwrap();
    std::fs::remove_file(b.join("big")).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            !a.join("small").exists() && !a.join("big").exists()
        }),
        "the removal is seen on mount A"
    );
    assert_eq!(
        tc.client.status().await.unwrap().chunks,
        chunks,
        "the removed file open on mount A keeps its chunks"
    );
    // Garbage collection runs every second: shards nothing held would be deleted by now.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        tc.shard_files().len(),
        shards,
        "the file open on mount A keeps its shards"
    );
    for (name, file, want) in [
        ("small", &mut open_small, &small),
        ("big", &mut open_big, &big),
    ] {
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert!(got == *want, "{name}: read back differs after the removal");
        let attr = file.metadata().unwrap();
        assert_eq!(attr.len(), want.len() as u64, "{name}: fstat size");
    }
    drop(open_small);
    drop(open_big);
    tc.wait_status(
        "the removed file's shards to be collected",
        Duration::from_secs(30),
        |s| s.chunks == 0 && s.pending_gc_shards == 0,
    )
    .await;
    assert_eq!(tc.shard_files(), Vec::<PathBuf>::new());
}
