//! A process blocked on a cluster lock can be interrupted (hardening issue, "found when
//! tried as a new user would"). `flock -w 1` on one mount while another mount holds the
//! lock waited until the holder let go, and a signal did nothing: fuser 0.18 answers the
//! kernel's FUSE_INTERRUPT with ENOSYS, so the mount never heard of it. The mount now
//! sees the waiter's pending signal and answers the wait with EINTR, as a local lock
//! would.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

/// Kills a child process when dropped (the test may fail while it runs).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `flock OPTIONS FILE -c true` (util-linux): takes the lock, runs `true`, lets go.
fn flock(options: &[&str], file: &Path) -> Command {
    let mut cmd = Command::new("flock");
    cmd.args(options)
        .arg(file)
        .args(["-c", "true"])
        .stdin(Stdio::null());
    cmd
}

/// Waits (bounded) for `child` to exit; `None` if it is still running at the deadline.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_ends_on_a_signal_while_another_mount_holds_the_lock() {
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let (a, b) = (tc.dir().join("a"), tc.dir().join("b"));
    tc.cluster.add_mount(&a, &[]).await.expect("mount a");
    tc.cluster.add_mount(&b, &[]).await.expect("mount b");
    std::fs::write(a.join("default/lock"), b"").unwrap();
    let (on_a, on_b) = (a.join("default/lock"), b.join("default/lock"));

    // Mount A holds the lock for up to 60 s (killed at the end of the test, which
    // releases it).
    let hold = "import fcntl, sys, time\n\
                f = open(sys.argv[1], 'r+')\n\
                fcntl.flock(f, fcntl.LOCK_EX)\n\
                time.sleep(60)\n";
    let mut holder = Killed(
        Command::new("python3")
            .args(["-c", hold])
            .arg(&on_a)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while flock(&["-n"], &on_b).status().unwrap().success() {
        assert!(Instant::now() < deadline, "mount A never took the lock");
        std::thread::sleep(Duration::from_millis(100));
    }

    // `flock -w 1`: its alarm interrupts the wait; flock(1) exits 1 on a timeout.
    let mut timed = Killed(flock(&["-w", "1"], &on_b).spawn().unwrap());
    let status = wait_exit(&mut timed.0, Duration::from_secs(30))
        .expect("flock -w 1 gave up while the lock was still held");
    assert_eq!(status.code(), Some(1), "flock -w 1 timed out: {status:?}");
    assert!(
        holder.0.try_wait().unwrap().is_none(),
        "the holder still holds it"
    );

    // A waiter with a handler for SIGINT (Python's KeyboardInterrupt) stops on Ctrl-C.
    let script = "import fcntl, sys\n\
                  f = open(sys.argv[1], 'r+')\n\
                  try:\n    fcntl.lockf(f, fcntl.LOCK_EX)\n    sys.exit(0)\n\
                  except KeyboardInterrupt:\n    sys.exit(7)\n";
    let mut waiter = Killed(
        Command::new("python3")
            .args(["-c", script])
            .arg(&on_b)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiter.0.try_wait().unwrap().is_none(), "the waiter blocks");
    unsafe { libc::kill(waiter.0.id() as i32, libc::SIGINT) };
    let status = wait_exit(&mut waiter.0, Duration::from_secs(30))
        .expect("Ctrl-C ended the wait while the lock was still held");
    assert_eq!(status.code(), Some(7), "interrupted by SIGINT: {status:?}");
    assert!(
        holder.0.try_wait().unwrap().is_none(),
        "the holder still holds it"
    );

    // Once the holder is gone the lock is free again.
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !flock(&["-n"], &on_b).status().unwrap().success() {
        assert!(Instant::now() < deadline, "the lock was never released");
        std::thread::sleep(Duration::from_millis(100));
    }
}
