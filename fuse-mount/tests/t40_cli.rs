//! The `cairn-mount` binary: `--memory` mounts in the foreground and unmounts cleanly on
//! SIGTERM and SIGINT (exit 0); an unusable `--cluster` file is one clear error (exit 1);
//! no backend is a usage error (exit 2).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::is_mounted;

const BIN: &str = env!("CARGO_BIN_EXE_cairn-mount");

/// Kills the child on drop (test failure) and lazily unmounts what it may have left.
struct Running {
    child: Child,
    mountpoint: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

fn must_exit_within(child: &mut Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().expect("exit code");
        }
        assert!(Instant::now() < deadline, "cairn-mount did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The next report on systemd's notification socket (`NOTIFY_SOCKET`).
fn next_report(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("a report to systemd");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Mounts, reports `READY=1` to systemd's socket, serves, and on `signal` reports
/// `STOPPING=1`, unmounts and exits 0.
fn mount_then_signal(signal: libc::c_int) {
    let dir = tempfile::tempdir().expect("mount point");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sockets = tempfile::tempdir().expect("socket dir");
    let notify = UnixDatagram::bind(sockets.path().join("notify")).expect("notify socket");
    let child = Command::new(BIN)
        .args(["--memory", "--foreground", "--attr-ttl-ms", "200"])
        .arg(dir.path())
        .env("NOTIFY_SOCKET", sockets.path().join("notify"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start cairn-mount");
    let mut run = Running {
        child,
        mountpoint: dir.path().to_owned(),
    };
    assert_eq!(next_report(&notify), "READY=1\n");
    assert!(is_mounted(dir.path()), "mounted when it reported ready");
    std::fs::write(dir.path().join("f"), b"served by the binary").expect("write");
    assert_eq!(
        std::fs::read(dir.path().join("f")).expect("read"),
        b"served by the binary"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.child.id() as libc::pid_t, signal) };
    assert_eq!(next_report(&notify), "STOPPING=1\n");
    assert_eq!(must_exit_within(&mut run.child, Duration::from_secs(15)), 0);
    assert!(!is_mounted(dir.path()), "unmounted on exit");
}

#[test]
fn memory_mount_unmounts_on_sigterm() {
    mount_then_signal(libc::SIGTERM);
}

#[test]
fn memory_mount_unmounts_on_sigint() {
    mount_then_signal(libc::SIGINT);
}

#[test]
fn a_missing_cluster_file_is_one_clear_error() {
    let out = Command::new(BIN)
        .args([
            "--foreground",
            "--cluster",
            "/nonexistent/cluster.toml",
            "/tmp",
        ])
        .output()
        .expect("run cairn-mount");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("cairn-mount: ") && l.contains("/nonexistent/cluster.toml")),
        "{stderr}"
    );
}

#[test]
fn a_backend_must_be_chosen() {
    let out = Command::new(BIN)
        .arg("/tmp")
        .output()
        .expect("run cairn-mount");
    assert_eq!(out.status.code(), Some(2), "usage error");
}
