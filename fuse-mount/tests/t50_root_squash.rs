//! Root squash through real FUSE mounts: one memory filesystem mounted twice, plainly (root
//! is root, to set up owners and modes) and with `root_squash` (root is `nobody`). The
//! test process runs as root; every call on the squashed mount is root's.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use cairn_fuse_mount::fs::RootSquash;
use cairn_fuse_mount::memory::MemoryBackend;
use cairn_fuse_mount::MountOptions;
use common::{must_errno, Mounted, TestMount};

const USER: u32 = 1000;
const ANON: RootSquash = RootSquash {
    uid: 65534,
    gid: 65534,
};

fn chown(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
}

fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[test]
fn a_squashed_root_has_only_the_anonymous_users_rights() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "root squash is tested as root"
    );
    let backend = Arc::new(MemoryBackend::default());
    let options = || MountOptions {
        auto_unmount: false,
        ..MountOptions::default()
    };
    let plain = TestMount::must_mount_backend(backend.clone(), options());
    let mut squashed_options = options();
    squashed_options.fs.root_squash = Some(ANON);
    let squashed = TestMount::must_mount_backend(backend, squashed_options);
    let (p, s) = (|r: &str| plain.p(r), |r: &str| squashed.p(r));

    // Set-up as root on the plain mount: a user's private and public file, a private
    // directory, a world-writable directory and a sticky one holding the user's file.
    fs::write(p("private"), b"secret").expect("write private");
    chown(&p("private"), USER).expect("chown private");
    chmod(&p("private"), 0o600).expect("chmod private");
    fs::write(p("public"), b"hello").expect("write public");
    chown(&p("public"), USER).expect("chown public");
    chmod(&p("public"), 0o644).expect("chmod public");
    fs::create_dir(p("locked")).expect("mkdir locked");
    fs::write(p("locked/inside"), b"x").expect("write inside");
    chown(&p("locked"), USER).expect("chown locked");
    chmod(&p("locked"), 0o700).expect("chmod locked");
    fs::create_dir(p("shared")).expect("mkdir shared");
    chmod(&p("shared"), 0o777).expect("chmod shared");
    fs::create_dir(p("sticky")).expect("mkdir sticky");
    chmod(&p("sticky"), 0o1777).expect("chmod sticky");
    fs::write(p("sticky/theirs"), b"t").expect("write theirs");
    chown(&p("sticky/theirs"), USER).expect("chown theirs");
    chmod(&p("sticky/theirs"), 0o666).expect("chmod theirs");

    // Reads: only what others may read.
    assert_eq!(must_errno(fs::read(s("private"))), libc::EACCES);
    assert_eq!(fs::read(s("public")).expect("read public"), b"hello");
    assert_eq!(must_errno(fs::read(s("locked/inside"))), libc::EACCES);
    assert_eq!(must_errno(fs::read_dir(s("locked"))), libc::EACCES);
    // Writes: not to others' files, not into directories it may not write.
    let open_rw = |path| OpenOptions::new().write(true).open(path);
    assert_eq!(must_errno(open_rw(s("public"))), libc::EACCES);
    assert_eq!(must_errno(fs::write(s("new"), b"n")), libc::EACCES);
    assert_eq!(must_errno(fs::create_dir(s("newdir"))), libc::EACCES);
    assert_eq!(must_errno(fs::remove_file(s("public"))), libc::EACCES);
    assert_eq!(
        must_errno(fs::rename(s("public"), s("shared/moved"))),
        libc::EACCES
    );
    let truncate = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(s("public"));
    assert_eq!(must_errno(truncate), libc::EACCES);
    // No privileged attribute changes.
    assert_eq!(must_errno(chmod(&s("public"), 0o666)), libc::EPERM);
    assert_eq!(must_errno(chown(&s("public"), 0)), libc::EPERM);
    // The sticky bit protects the user's file even in a world-writable directory.
    assert_eq!(must_errno(fs::remove_file(s("sticky/theirs"))), libc::EPERM);

    // Where the anonymous user may write, root's new files belong to it and it owns them.
    fs::write(s("shared/mine"), b"squashed").expect("create in shared");
    let meta = fs::metadata(p("shared/mine")).expect("stat mine");
    assert_eq!((meta.uid(), meta.gid()), (ANON.uid, ANON.gid));
    chmod(&s("shared/mine"), 0o600).expect("chmod own file");
    assert_eq!(must_errno(chown(&s("shared/mine"), 0)), libc::EPERM);
    fs::rename(s("shared/mine"), s("sticky/mine")).expect("rename own file");
    fs::remove_file(s("sticky/mine")).expect("remove own file from sticky dir");
    // FIFOs yes (its own), device nodes no: the anonymous user has no CAP_MKNOD.
    let mknod = |path: &Path, mode: u32, dev: u64| {
        let c = common::cstr(path);
        // SAFETY: a valid NUL-terminated path; plain syscall.
        common::check(unsafe { libc::mknod(c.as_ptr(), mode, dev) })
    };
    mknod(&s("shared/fifo"), libc::S_IFIFO | 0o600, 0).expect("mkfifo");
    let meta = fs::symlink_metadata(p("shared/fifo")).expect("stat fifo");
    assert_eq!((meta.uid(), meta.gid()), (ANON.uid, ANON.gid));
    let dev = libc::makedev(1, 3);
    assert_eq!(
        must_errno(mknod(&s("shared/null"), libc::S_IFCHR | 0o666, dev)),
        libc::EPERM
    );
    assert_eq!(
        must_errno(mknod(&s("shared/disk"), libc::S_IFBLK | 0o600, dev)),
        libc::EPERM
    );

    // Nothing the squashed root tried changed the user's files; the plain mount's root
    // still reads them (the checks belong to the squashed mount only).
    assert_eq!(fs::read(p("private")).expect("root reads"), b"secret");
    assert_eq!(fs::read(p("public")).expect("root reads"), b"hello");
    assert_eq!(
        fs::metadata(p("public")).expect("stat").mode() & 0o7777,
        0o644
    );
    assert!(p("sticky/theirs").exists());
}
