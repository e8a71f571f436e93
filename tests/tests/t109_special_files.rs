//! Special files through two `cairn-mount` processes of one cluster, each like another
//! host: FIFOs, unix sockets, character and block devices made with the tools people use
//! (`mkfifo`, `mknod`, Python's `socket.bind` and `os.mknod`), copied with `cp -a` and
//! carried through `tar`, read back through the other mount with their type, permission
//! bits, owner and device number intact.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_common::Redundancy;
use cairn_tests::{lstat_shape, TestCluster};

/// Runs a command; panics with its output if it fails.
fn must_run(mut cmd: Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// One entry of the tree: name, file type bits, permission bits, owner, group, device.
type Shape = (&'static str, u32, u32, u32, u32, u64);

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Mount A makes a directory holding a regular file, a symlink, a FIFO, a character and
/// a block device (a minor number wider than 8 bits) and two sockets (one bound by
/// Python's `socket.bind`, one made by `os.mknod`), each with its own mode and owner.
/// `cp -a` copies the tree on mount A; `tar` packs it from mount A and unpacks it on
/// mount B. Mount B then sees all three trees with every type, mode, owner and device
/// number as made (tar leaves sockets out, as it always does), reads the file's bytes
/// and passes bytes through a FIFO it did not make. A unix socket bound in the tree
/// accepts connections. Before special files were stored, `mkfifo` failed with `EPERM`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_survive_cp_a_and_tar_and_read_back_through_another_mount() {
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mut roots: Vec<PathBuf> = Vec::new();
    for name in ["mnt-a", "mnt-b"] {
        let mountpoint = tc.dir().join(name);
        tc.cluster
            .add_mount(&mountpoint, &[])
            .await
            .expect("mount the cluster");
        roots.push(
            mountpoint
                .canonicalize()
                .expect("mountpoint")
                .join("default"),
        );
    }
    let (a, b) = (&roots[0], &roots[1]);
    let src = a.join("src");
    fs::create_dir(&src).expect("mkdir src");
    fs::write(src.join("data"), b"regular bytes").expect("write");
    let chr = libc::makedev(259, 70_000);
    let blk = libc::makedev(8, 1);
    let expected: [Shape; 7] = [
        ("blk", libc::S_IFBLK, 0o660, 1006, 6, blk),
        ("chr", libc::S_IFCHR, 0o620, 1005, 5, chr),
        ("data", libc::S_IFREG, 0o640, 1001, 1, 0),
        ("fifo", libc::S_IFIFO, 0o604, 1004, 4, 0),
        ("link", libc::S_IFLNK, 0o777, 1002, 2, 0),
        ("mknod.sock", libc::S_IFSOCK, 0o751, 1008, 8, 0),
        ("py.sock", libc::S_IFSOCK, 0o700, 1007, 7, 0),
    ];
    std::os::unix::fs::symlink("data", src.join("link")).expect("symlink");
    let at = |name: &str| src.join(name);
    must_run(sh("mkfifo", &["-m", "0604", path_str(&at("fifo"))]));
    must_run(sh(
        "mknod",
        &["-m", "0620", path_str(&at("chr")), "c", "259", "70000"],
    ));
    must_run(sh(
        "mknod",
        &["-m", "0660", path_str(&at("blk")), "b", "8", "1"],
    ));
    must_run(sh(
        "python3",
        &[
            "-c",
            "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
            path_str(&at("py.sock")),
        ],
    ));
    must_run(sh(
        "python3",
        &[
            "-c",
            "import os, stat, sys; os.mknod(sys.argv[1], stat.S_IFSOCK | 0o751)",
            path_str(&at("mknod.sock")),
        ],
    ));
    for (name, kind, mode, uid, gid, _) in expected {
        let owner = format!("{uid}:{gid}");
        must_run(sh("chown", &["-h", &owner, path_str(&at(name))]));
        if kind != libc::S_IFLNK {
            must_run(sh("chmod", &[&format!("{mode:o}"), path_str(&at(name))]));
        }
    }

    must_run(sh("cp", &["-a", path_str(&src), path_str(&a.join("copy"))]));
    let tarball = tc.dir().join("tree.tar");
    must_run(sh(
        "tar",
        &["-C", path_str(a), "-cf", path_str(&tarball), "src"],
    ));
    fs::create_dir(b.join("untarred")).expect("mkdir on mount B");
    must_run(sh(
        "tar",
        &[
            "-C",
            path_str(&b.join("untarred")),
            "--same-owner",
            "-xpf",
            path_str(&tarball),
        ],
    ));

    for (tree, sockets) in [("src", true), ("copy", true), ("untarred/src", false)] {
        let dir = b.join(tree);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("list {dir:?} on mount B: {e}"))
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        let wanted: Vec<&Shape> = expected
            .iter()
            .filter(|s| sockets || s.1 != libc::S_IFSOCK)
            .collect();
        assert_eq!(
            names,
            wanted.iter().map(|s| s.0).collect::<Vec<_>>(),
            "{tree} on mount B"
        );
        for (name, kind, mode, uid, gid, dev) in wanted {
            assert_eq!(
                lstat_shape(&dir.join(name)),
                (*kind, *mode, *uid, *gid, *dev),
                "{tree}/{name} on mount B: type, mode, owner, group, device"
            );
        }
        assert_eq!(
            fs::read(dir.join("link")).expect("read through the symlink"),
            b"regular bytes",
            "{tree}/data on mount B"
        );
    }

    // A FIFO made on mount A is a FIFO on mount B (its bytes stay on the host).
    let fifo = b.join("copy/fifo");
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the fifo's read end on mount B");
    let mut writer = fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the fifo's write end on mount B");
    writer.write_all(b"piped").expect("write into the fifo");
    let mut got = [0u8; 5];
    reader.read_exact(&mut got).expect("read from the fifo");
    assert_eq!(&got, b"piped");

    // A server's unix socket in a data directory on the mount.
    let socket = a.join("server.sock");
    let listener = UnixListener::bind(&socket).expect("bind a unix socket on mount A");
    let mut client = UnixStream::connect(&socket).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"ping").expect("send");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("receive");
    assert_eq!(&buf, b"ping");
    assert_eq!(
        fs::symlink_metadata(b.join("server.sock"))
            .expect("the socket seen from mount B")
            .mode()
            & libc::S_IFMT,
        libc::S_IFSOCK
    );
}
