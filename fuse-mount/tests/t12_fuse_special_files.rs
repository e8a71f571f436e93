//! Special files through real FUSE mounts of the memory backend and of a real cluster:
//! FIFOs, unix sockets, character and block devices are inodes like any other (type,
//! permission bits, owner, device number, links, renames), made with the calls tools
//! use (`mkfifo`, `mknod`, `bind` of an AF_UNIX socket). The mount is `nodev`, so a
//! device node is stored and listed but cannot be opened through it.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;

use cairn_tests::lstat_shape;
use common::{check, cstr, must_errno, Mounted};

on_both_backends!(
    special_files_keep_type_mode_owner_and_device_number,
    special_files_link_rename_and_unlink_like_files,
    a_fifo_and_a_socket_on_the_mount_work,
    cp_a_copies_every_kind_with_its_mode_and_owner,
);

/// A device number as `stat(2)` reports it.
fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

fn mknod(path: &Path, mode: u32, dev: u64) -> std::io::Result<()> {
    let c = cstr(path);
    // SAFETY: a valid NUL-terminated path; plain syscall.
    check(unsafe { libc::mknod(c.as_ptr(), mode, dev) }).map(drop)
}

fn mkfifo(path: &Path, mode: u32) -> std::io::Result<()> {
    let c = cstr(path);
    // SAFETY: as above.
    check(unsafe { libc::mkfifo(c.as_ptr(), mode) }).map(drop)
}

/// Each kind of special file is created (before: `EPERM`), then shows its type, its mode
/// (set with `chmod` to values the umask could not produce), its owner (`chown`) and, for
/// devices, its major and minor numbers, also numbers wider than 8 bits; a directory
/// listing gives each its type.
fn special_files_keep_type_mode_owner_and_device_number(m: &impl Mounted) {
    let (chr, blk) = (makedev(259, 70_000), makedev(8, 1));
    mkfifo(&m.p("fifo"), 0o644).expect("mkfifo");
    mknod(&m.p("chr"), libc::S_IFCHR | 0o600, chr).expect("mknod char device");
    mknod(&m.p("blk"), libc::S_IFBLK | 0o660, blk).expect("mknod block device");
    mknod(&m.p("sock"), libc::S_IFSOCK | 0o755, 0).expect("mknod socket");
    let bound = UnixListener::bind(m.p("bound")).expect("bind an AF_UNIX socket");
    let expected = [
        ("fifo", libc::S_IFIFO, 0o4751, 0),
        ("chr", libc::S_IFCHR, 0o640, chr),
        ("blk", libc::S_IFBLK, 0o1600, blk),
        ("sock", libc::S_IFSOCK, 0o777, 0),
        ("bound", libc::S_IFSOCK, 0o700, 0),
    ];
    for (i, (name, _, mode, _)) in expected.iter().enumerate() {
        let path = m.p(name);
        let uid = 1000 + i as u32;
        std::os::unix::fs::chown(&path, Some(uid), Some(100)).expect("chown");
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    for (i, (name, kind, mode, dev)) in expected.iter().enumerate() {
        assert_eq!(
            lstat_shape(&m.p(name)),
            (*kind, *mode, 1000 + i as u32, 100, *dev),
            "{name}: type, mode, owner, group, rdev"
        );
    }
    let mut listed: Vec<(String, fs::FileType)> = fs::read_dir(m.p(""))
        .expect("readdir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().into_string().expect("utf-8"),
                e.file_type().expect("d_type"),
            )
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let kinds: Vec<(&str, bool, bool, bool, bool)> = listed
        .iter()
        .map(|(n, t)| {
            (
                n.as_str(),
                t.is_fifo(),
                t.is_char_device(),
                t.is_block_device(),
                t.is_socket(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("blk", false, false, true, false),
            ("bound", false, false, false, true),
            ("chr", false, true, false, false),
            ("fifo", true, false, false, false),
            ("sock", false, false, false, true),
        ]
    );
    drop(bound);
    // The mount is `nodev`: device nodes are not opened through it.
    assert_eq!(must_errno(fs::File::open(m.p("chr"))), libc::EACCES);
    // Only device and FIFO/socket types are special: a directory type is refused as
    // mknod(2) refuses it, and an existing name is EEXIST.
    assert_eq!(
        must_errno(mknod(&m.p("dir"), libc::S_IFDIR | 0o755, 0)),
        libc::EPERM
    );
    assert_eq!(must_errno(mkfifo(&m.p("chr"), 0o644)), libc::EEXIST);
}

/// Special files are inodes like regular ones: hard links share them and count links,
/// renames (also replacing a regular file) keep them, unlink removes them; a size change
/// is refused.
fn special_files_link_rename_and_unlink_like_files(m: &impl Mounted) {
    fs::create_dir(m.p("d")).expect("mkdir");
    mknod(&m.p("chr"), libc::S_IFCHR | 0o600, makedev(1, 3)).expect("mknod");
    fs::hard_link(m.p("chr"), m.p("d/chr2")).expect("link a device node");
    let (a, b) = (
        fs::symlink_metadata(m.p("chr")).expect("lstat"),
        fs::symlink_metadata(m.p("d/chr2")).expect("lstat"),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    fs::write(m.p("d/file"), b"replaced").expect("write");
    fs::rename(m.p("chr"), m.p("d/file")).expect("rename over a file");
    assert!(fs::symlink_metadata(m.p("d/file"))
        .expect("lstat")
        .file_type()
        .is_char_device());
    assert_eq!(
        fs::symlink_metadata(m.p("d/file")).expect("lstat").rdev(),
        makedev(1, 3)
    );
    fs::remove_file(m.p("d/chr2")).expect("unlink one name");
    assert_eq!(
        fs::symlink_metadata(m.p("d/file")).expect("lstat").nlink(),
        1
    );
    mkfifo(&m.p("fifo"), 0o600).expect("mkfifo");
    let c = cstr(&m.p("fifo"));
    // SAFETY: valid path; plain syscall. The kernel refuses a FIFO's truncate itself.
    let truncated = check(unsafe { libc::truncate(c.as_ptr(), 0) });
    assert_eq!(must_errno(truncated), libc::EINVAL);
    fs::remove_file(m.p("fifo")).expect("unlink a fifo");
    fs::remove_file(m.p("d/file")).expect("unlink a device node");
    fs::remove_dir(m.p("d")).expect("the directory is empty again");
}

/// A FIFO on the mount carries bytes between two descriptors, and a unix socket bound on
/// the mount accepts a connection (both are the kernel's own, with the inode from the
/// mount).
fn a_fifo_and_a_socket_on_the_mount_work(m: &impl Mounted) {
    mkfifo(&m.p("pipe"), 0o600).expect("mkfifo");
    let mut reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(m.p("pipe"))
        .expect("open the fifo's read end");
    let mut writer = OpenOptions::new()
        .write(true)
        .open(m.p("pipe"))
        .expect("open the fifo's write end");
    writer.write_all(b"through the fifo").expect("write");
    let mut got = [0u8; 16];
    reader.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"through the fifo");

    let listener = UnixListener::bind(m.p("server.sock")).expect("bind");
    let mut client = UnixStream::connect(m.p("server.sock")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"ping").expect("send");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("receive");
    assert_eq!(&buf, b"ping");
}

/// `cp -a` copies a tree holding every kind of inode with its type, mode (group and other
/// bits included), owner and device number. Before, every copy was left at mode 0600:
/// `cp` creates with owner bits only, then sets the mode through a POSIX ACL attribute,
/// which the mount stored without applying. Setting a POSIX ACL is now `EOPNOTSUPP`
/// (the mount has none), and `cp` uses `chmod`.
fn cp_a_copies_every_kind_with_its_mode_and_owner(m: &impl Mounted) {
    let src = m.p("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("file"), b"bytes").expect("write");
    mkfifo(&src.join("fifo"), 0o600).expect("mkfifo");
    mknod(&src.join("chr"), libc::S_IFCHR | 0o600, makedev(4, 64)).expect("mknod");
    mknod(&src.join("blk"), libc::S_IFBLK | 0o600, makedev(8, 16)).expect("mknod");
    mknod(&src.join("sock"), libc::S_IFSOCK | 0o600, 0).expect("mknod");
    let modes = [
        ("blk", 0o660),
        ("chr", 0o666),
        ("fifo", 0o644),
        ("file", 0o664),
        ("sock", 0o775),
    ];
    for (name, mode) in modes {
        std::os::unix::fs::chown(src.join(name), Some(1000), Some(100)).expect("chown");
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let out = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(m.p("copy"))
        .output()
        .expect("run cp -a");
    assert!(out.status.success(), "cp -a: {out:?}");
    for (name, mode) in modes {
        let (from, to) = (
            lstat_shape(&src.join(name)),
            lstat_shape(&m.p("copy").join(name)),
        );
        assert_eq!(from.1, mode, "{name}: the source's mode");
        assert_eq!(to, from, "copy/{name}: type, mode, owner, group, rdev");
    }
    assert_eq!(fs::read(m.p("copy/file")).expect("read the copy"), b"bytes");
    // A minimal access ACL (user::rw-, group::r--, other::r--) in the kernel's format.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 6u16), (0x04, 4), (0x20, 4)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    let (c, name) = (cstr(&src.join("file")), c"system.posix_acl_access");
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = check(unsafe {
        libc::setxattr(c.as_ptr(), name.as_ptr(), acl.as_ptr().cast(), acl.len(), 0)
    });
    assert_eq!(must_errno(r), libc::EOPNOTSUPP, "POSIX ACLs are refused");
}
