//! The README quick start: `cairn dev up` starts a cluster as separate processes, mounts
//! it at DIR/mnt, prints `ready`, writes cluster.toml and pid files, serves put/get through
//! the CLI and files through the mount (one namespace), stops every child and unmounts on
//! SIGTERM, and reuses its data when started again on the same directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cairn_tests::bin_dir;

struct DevUp {
    child: Child,
    lines: mpsc::Receiver<String>,
    mountpoint: Option<std::path::PathBuf>,
}

impl DevUp {
    fn start(dir: &std::path::Path, port_base: u16) -> DevUp {
        let mut child = Command::new(bin_dir().join("cairn"))
            .args(["dev", "up", "--meta", "1", "--nodes", "3", "--ec", "2+1"])
            .arg("--dir")
            .arg(dir)
            .arg("--port-base")
            .arg(port_base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cairn dev up");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        DevUp {
            child,
            lines,
            mountpoint: dir.canonicalize().ok().map(|d| d.join("mnt")),
        }
    }

    /// Waits for the `ready` line; false if dev up exited first (e.g. a port was taken).
    fn wait_ready(&self) -> bool {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(90)) {
                Ok(line) if line.contains("ready") => return true,
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(e) => panic!("no ready line from cairn dev up: {e}"),
            }
        }
    }

    /// Starts dev up on a free port range (another test may hold the first one tried).
    fn start_ready(dir: &std::path::Path) -> (DevUp, u16) {
        for attempt in 0..10 {
            let port_base = cairn_tests::pick_port_base(attempt);
            let dev = DevUp::start(dir, port_base);
            if dev.wait_ready() {
                return (dev, port_base);
            }
        }
        panic!("cairn dev up never became ready");
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "dev up exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("cairn dev up did not stop within 30 s of SIGTERM");
    }
}

impl Drop for DevUp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let _ = self.child.wait();
        }
        if let Some(mnt) = &self.mountpoint {
            if cairn_devcluster::is_mounted(mnt) {
                let _ = Command::new("umount").arg("-l").arg(mnt).status();
            }
        }
    }
}

fn cli(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin_dir().join("cairn"))
        .env("CAIRN_CLUSTER", dir.join("cluster.toml"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn dev_up_serves_put_and_get_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut dev, port_base) = DevUp::start_ready(dir.path());
    assert!(dir.path().join("cluster.toml").exists());
    let pids: Vec<i32> = ["meta-1", "node-1", "node-2", "node-3", "mount-1"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(dir.path().join("pids").join(format!("{n}.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(pids.iter().all(|&p| alive(p)));

    let out = cli(
        dir.path(),
        &["put", "default/hello.txt", "-"],
        b"hello, cairn\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(dir.path(), &["get", "default/hello.txt", "-"], b"");
    assert_eq!(out.stdout, b"hello, cairn\n");
    let out = cli(dir.path(), &["ls", "default"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello.txt"));

    // The mount at DIR/mnt: the object is a file, and a file is an object.
    let mnt = dir.path().canonicalize().unwrap().join("mnt");
    assert!(cairn_devcluster::is_mounted(&mnt), "mounted at DIR/mnt");
    assert_eq!(
        std::fs::read(mnt.join("default/hello.txt")).unwrap(),
        b"hello, cairn\n"
    );
    std::fs::write(mnt.join("default/from-mount.txt"), b"written in the mount").unwrap();
    let out = cli(dir.path(), &["get", "default/from-mount.txt", "-"], b"");
    assert_eq!(out.stdout, b"written in the mount");

    dev.stop();
    assert!(
        !cairn_devcluster::is_mounted(&mnt),
        "dev up unmounted at shutdown"
    );
    for pid in &pids {
        // Reaped children of dev up; a zombie cannot exist since dev up waited for them.
        assert!(!alive(*pid), "process {pid} survived dev up's shutdown");
    }

    // Same directory again: the data is still there.
    let mut dev = DevUp::start(dir.path(), port_base);
    assert!(dev.wait_ready(), "dev up did not restart on its directory");
    let out = cli(dir.path(), &["get", "default/hello.txt", "-"], b"");
    assert_eq!(
        out.stdout,
        b"hello, cairn\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(mnt.join("default/from-mount.txt")).unwrap(),
        b"written in the mount"
    );
    dev.stop();
}
