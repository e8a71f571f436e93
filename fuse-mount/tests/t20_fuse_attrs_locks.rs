//! Attributes, permissions and locks through real FUSE mounts of the memory backend and
//! of a real cluster:
//! xattrs, chmod/chown/utimens, EACCES for a non-root user (`default_permissions` +
//! `allow_other`), and flock / fcntl locks between processes.

mod common;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{check, check_size, cstr, must_errno, wait_until, Mounted, TestMount};

on_both_backends!(
    xattrs_set_get_list_remove,
    a_write_removes_a_capability_set_on_a_file_open_since_its_creation,
    chmod_chown_and_utimens,
    attribute_changes_on_an_open_file_keep_its_written_size,
    non_root_user_gets_eacces,
    flock_between_processes,
    fcntl_locks_between_processes,
);

const NOBODY: u32 = 65534;

/// What `tar x` and `cp -a` do: write a file, then set its times, owner and mode through
/// the open descriptor, close it, and read it back at once. The size stays what was
/// written all along and the mtime what was set. Before, on a cluster, the answer to
/// each `setattr` carried the committed size, 0 while the bytes were still buffered, and
/// the kernel believed it (the file read back empty until its attributes expired); and
/// the commit of the buffered bytes at `close` stamped the file with its own time.
fn attribute_changes_on_an_open_file_keep_its_written_size(m: &impl Mounted) {
    let path = m.p("f");
    let f = File::create(&path).expect("create");
    (&f).write_all(b"written, not yet closed").expect("write");
    let times = [libc::timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    }; 2];
    // SAFETY: a valid descriptor and two timespecs.
    check(unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) }).expect("futimens");
    assert_eq!(f.metadata().expect("fstat").len(), 23, "after futimens");
    std::os::unix::fs::fchown(&f, Some(1000), Some(100)).expect("fchown");
    f.set_permissions(fs::Permissions::from_mode(0o640))
        .expect("fchmod");
    assert_eq!(
        f.metadata().expect("fstat").len(),
        23,
        "after fchown, fchmod"
    );
    drop(f);
    assert_eq!(fs::read(&path).expect("read"), b"written, not yet closed");
    let meta = fs::metadata(&path).expect("stat");
    assert_eq!(
        (meta.len(), meta.mode() & 0o7777, meta.uid(), meta.mtime()),
        (23, 0o640, 1000, 1_000_000)
    );
}

/// The kernel asks for `security.capability` before each write and removes it if there
/// is one (a write drops a file's capabilities, as it drops setuid). A cluster mount
/// answers "none" without a round trip for a file it created and still has open; a
/// capability set after the create must still be seen, and removed by the next write.
fn a_write_removes_a_capability_set_on_a_file_open_since_its_creation(m: &impl Mounted) {
    let path = m.p("capable");
    let f = File::create(&path).expect("create");
    (&f).write_all(b"first")
        .expect("write without a capability");
    let c_path = cstr(&path);
    let name = CString::new("security.capability").expect("name");
    // VFS_CAP_REVISION_2 with the effective bit, CAP_NET_BIND_SERVICE permitted.
    let mut cap = Vec::new();
    cap.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    cap.extend_from_slice(&(1u32 << 10).to_le_bytes());
    cap.extend_from_slice(&[0u8; 12]);
    // SAFETY: valid C strings and a buffer of the given length.
    check(unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            cap.as_ptr().cast(),
            cap.len(),
            0,
        )
    })
    .expect("set a capability");
    let get = || {
        let mut buf = [0u8; 64];
        // SAFETY: valid C strings and buffer.
        check_size(unsafe {
            libc::getxattr(
                c_path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })
    };
    assert_eq!(get().expect("the capability is set"), cap.len());
    (&f).write_all(b", second")
        .expect("write with a capability");
    assert_eq!(
        must_errno(get()),
        libc::ENODATA,
        "the write removed the capability"
    );
    drop(f);
    assert_eq!(fs::read(&path).expect("read"), b"first, second");
}

/// getxattr/setxattr/listxattr/removexattr with their errors (ENODATA, EEXIST, ERANGE).
fn xattrs_set_get_list_remove(m: &impl Mounted) {
    fs::write(m.p("f"), b"x").expect("write");
    let path = cstr(&m.p("f"));
    let name = CString::new("user.color").expect("name");
    let set = |value: &[u8], flags: i32| {
        // SAFETY: valid C strings and a buffer of the given length.
        check(unsafe {
            libc::setxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
    };
    let get = |buf: &mut [u8]| {
        // SAFETY: as above; a zero-length buffer asks for the size.
        check_size(unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })
    };
    assert_eq!(must_errno(get(&mut [0u8; 16])), libc::ENODATA);
    assert_eq!(must_errno(set(b"red", libc::XATTR_REPLACE)), libc::ENODATA);
    set(b"red", libc::XATTR_CREATE).expect("create");
    assert_eq!(must_errno(set(b"blue", libc::XATTR_CREATE)), libc::EEXIST);
    set(b"green", 0).expect("replace");
    assert_eq!(get(&mut []).expect("size probe"), 5);
    assert_eq!(must_errno(get(&mut [0u8; 2])), libc::ERANGE);
    let mut buf = [0u8; 16];
    let n = get(&mut buf).expect("get");
    assert_eq!(&buf[..n], b"green");
    let mut list = [0u8; 64];
    // SAFETY: valid path and buffer.
    let n =
        check_size(unsafe { libc::listxattr(path.as_ptr(), list.as_mut_ptr().cast(), list.len()) })
            .expect("list");
    assert_eq!(&list[..n], b"user.color\0");
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).expect("remove");
    assert_eq!(must_errno(get(&mut buf)), libc::ENODATA);
}

/// chmod, chown and utimensat change what stat shows (nanoseconds included).
fn chmod_chown_and_utimens(m: &impl Mounted) {
    let path = m.p("f");
    fs::write(&path, b"x").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o4751)).expect("chmod");
    std::os::unix::fs::chown(&path, Some(1234), Some(5678)).expect("chown");
    let meta = fs::metadata(&path).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o751, "chown by root clears setuid");
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    let atime = UNIX_EPOCH + Duration::new(1_000_000_000, 123);
    let mtime = UNIX_EPOCH + Duration::new(1_500_000_000, 456_789);
    let f = File::options().write(true).open(&path).expect("open");
    f.set_times(fs::FileTimes::new().set_accessed(atime).set_modified(mtime))
        .expect("utimensat");
    let meta = f.metadata().expect("fstat");
    assert_eq!((meta.atime(), meta.atime_nsec()), (1_000_000_000, 123));
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_500_000_000, 456_789));
    assert!(
        meta.ctime() as u64
            >= SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("now")
                .as_secs()
                - 60
    );
    fs::create_dir(m.p("d")).expect("mkdir");
    fs::set_permissions(m.p("d"), fs::Permissions::from_mode(0o1777)).expect("chmod dir");
    assert_eq!(
        fs::metadata(m.p("d")).expect("stat").mode() & 0o7777,
        0o1777
    );
}

/// A non-root user may read a 0644 file (allow_other works) but gets EACCES for a 0600
/// file and for creating in a 0755 root-owned directory (default_permissions works).
fn non_root_user_gets_eacces(m: &impl Mounted) {
    fs::write(m.p("public"), b"everyone").expect("write");
    fs::write(m.p("secret"), b"root only").expect("write");
    fs::set_permissions(m.p("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let as_nobody = |program: &str, arg: &std::path::Path| {
        Command::new(program)
            .arg(arg)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run as nobody")
    };
    let public = as_nobody("cat", &m.p("public"));
    assert!(public.status.success(), "{public:?}");
    assert_eq!(public.stdout, b"everyone");
    let secret = as_nobody("cat", &m.p("secret"));
    assert!(!secret.status.success());
    assert!(
        String::from_utf8_lossy(&secret.stderr).contains("Permission denied"),
        "{secret:?}"
    );
    let touch = as_nobody("touch", &m.p("new"));
    assert!(!touch.status.success());
    assert!(
        String::from_utf8_lossy(&touch.stderr).contains("Permission denied"),
        "{touch:?}"
    );
}

fn flock_cli(args: &[&str], path: &std::path::Path) -> std::process::Child {
    Command::new("flock")
        .args(args)
        .arg(path)
        .arg("true")
        .spawn()
        .expect("run flock(1)")
}

fn must_exit_within(mut child: std::process::Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().expect("exit code");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// flock between this process and flock(1): exclusive blocks others (-n fails, a waiting
/// locker gets it on unlock), shared locks share, and close releases.
fn flock_between_processes(m: &impl Mounted) {
    let path = m.p("lockfile");
    fs::write(&path, b"").expect("create");
    let f = File::open(&path).expect("open");
    let flock = |op| {
        // SAFETY: flock(2) on a descriptor we own.
        check(unsafe { libc::flock(f.as_raw_fd(), op) })
    };
    flock(libc::LOCK_EX).expect("lock");
    assert_eq!(
        must_exit_within(flock_cli(&["-n"], &path), Duration::from_secs(10)),
        1
    );
    let waiter = flock_cli(&["-w", "20"], &path);
    std::thread::sleep(Duration::from_millis(300));
    flock(libc::LOCK_UN).expect("unlock");
    assert_eq!(
        must_exit_within(waiter, Duration::from_secs(10)),
        0,
        "waiter got the lock"
    );

    flock(libc::LOCK_SH).expect("shared");
    assert_eq!(
        must_exit_within(flock_cli(&["-s", "-n"], &path), Duration::from_secs(10)),
        0
    );
    assert_eq!(
        must_exit_within(flock_cli(&["-x", "-n"], &path), Duration::from_secs(10)),
        1
    );
    flock(libc::LOCK_EX).expect("upgrade");
    drop(f);
    let freed = wait_until(Duration::from_secs(5), || {
        must_exit_within(flock_cli(&["-n"], &path), Duration::from_secs(10)) == 0
    });
    assert!(freed, "closing the file releases its flock");
}

/// Runs `body` in a forked child and returns the child's pid. The child only makes
/// async-signal-safe syscalls (open, fcntl, _exit): this process has other threads.
fn fork_child(body: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child runs `body` (syscalls only, no allocation) and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = body();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn must_wait_child(pid: libc::pid_t, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            assert!(libc::WIFEXITED(status), "child exited normally");
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn child_is_running(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: polling our own child without reaping anything else.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 }
}

fn lock_struct(typ: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// In a child: open `path` and run fcntl `cmd` with `fl`. Exit 0 on success, 1 on
/// EAGAIN/EACCES, 2 on other errors; for F_GETLK 3 if unlocked, 4 if a write lock is held
/// by `expect_pid` (by anyone when it is -1).
fn child_fcntl(path: &CString, cmd: i32, mut fl: libc::flock, expect_pid: i32) -> libc::pid_t {
    let path = path.as_ptr();
    fork_child(move || {
        // SAFETY: syscalls on a valid path and a struct owned by this frame.
        unsafe {
            let fd = libc::open(path, libc::O_RDWR);
            if fd < 0 {
                return 2;
            }
            if libc::fcntl(fd, cmd, &mut fl) != 0 {
                let e = *libc::__errno_location();
                return if e == libc::EAGAIN || e == libc::EACCES {
                    1
                } else {
                    2
                };
            }
            if cmd == libc::F_GETLK {
                if fl.l_type == libc::F_UNLCK as libc::c_short {
                    return 3;
                }
                return if fl.l_type == libc::F_WRLCK as libc::c_short
                    && (expect_pid == -1 || fl.l_pid == expect_pid)
                {
                    4
                } else {
                    5
                };
            }
            0
        }
    })
}

/// fcntl byte-range locks between processes: conflicts only on overlapping ranges,
/// F_GETLK names the holder, F_SETLKW waits for the unlock, and closing any descriptor
/// of the file releases the process's locks (POSIX).
fn fcntl_locks_between_processes(m: &impl Mounted) {
    let path = m.p("db");
    fs::write(&path, vec![0u8; 4096]).expect("create");
    let c = cstr(&path);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let setlk = |fl: libc::flock| {
        // SAFETY: fcntl on our descriptor with a valid flock struct.
        check(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) })
    };
    setlk(lock_struct(libc::F_WRLCK, 0, 100)).expect("lock bytes 0..100");
    let me = std::process::id() as i32;
    let wait = Duration::from_secs(10);
    let probe = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_WRLCK, 50, 10), 0);
    assert_eq!(
        must_wait_child(probe, wait),
        1,
        "overlapping lock conflicts"
    );
    let disjoint = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_WRLCK, 100, 10), 0);
    assert_eq!(must_wait_child(disjoint, wait), 0, "disjoint range is free");
    let getlk = child_fcntl(&c, libc::F_GETLK, lock_struct(libc::F_RDLCK, 0, 1), me);
    assert_eq!(
        must_wait_child(getlk, wait),
        4,
        "F_GETLK reports our write lock and pid"
    );

    let waiter = child_fcntl(&c, libc::F_SETLKW, lock_struct(libc::F_WRLCK, 0, 10), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child_is_running(waiter),
        "F_SETLKW blocks while the range is locked"
    );
    setlk(lock_struct(libc::F_UNLCK, 0, 100)).expect("unlock");
    assert_eq!(
        must_wait_child(waiter, wait),
        0,
        "waiter got the lock after unlock"
    );

    setlk(lock_struct(libc::F_RDLCK, 0, 0)).expect("read-lock the whole file");
    let reader = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_RDLCK, 0, 0), 0);
    assert_eq!(must_wait_child(reader, wait), 0, "read locks share");
    let writer = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_WRLCK, 0, 0), 0);
    assert_eq!(must_wait_child(writer, wait), 1);
    drop(File::open(&path).expect("second descriptor"));
    let writer = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_WRLCK, 0, 0), 0);
    assert_eq!(
        must_wait_child(writer, wait),
        0,
        "closing any descriptor released our lock"
    );
}

/// Locks reach the backend (not the kernel's local lock table): a lock another session
/// holds in the backend (as another mount would) blocks flock(1) and fcntl here, and
/// F_GETLK reports it; once that session unlocks, both succeed.
#[test]
fn locks_held_in_the_backend_block_local_processes() {
    use cairn_fuse_mount::backend::{FileLock, FsBackend, LockKind, LockOwner, MAX_FILE_SIZE};
    let m = TestMount::must_mount();
    let path = m.p("shared");
    fs::write(&path, b"").expect("create");
    let ino = fs::metadata(&path).expect("stat").ino();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let other_mount = LockOwner(u64::MAX);
    let lock = FileLock {
        start: 0,
        end: MAX_FILE_SIZE,
        kind: LockKind::Write,
        pid: 4242,
    };
    rt.block_on(m.backend.setlk(ino, other_mount, lock))
        .expect("lock in the backend");
    let wait = Duration::from_secs(10);
    assert_eq!(
        must_exit_within(flock_cli(&["-n"], &path), wait),
        1,
        "flock sees it"
    );
    let c = cstr(&path);
    let probe = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_RDLCK, 10, 1), 0);
    assert_eq!(must_wait_child(probe, wait), 1, "fcntl sees it");
    let getlk = child_fcntl(&c, libc::F_GETLK, lock_struct(libc::F_RDLCK, 0, 1), -1);
    // (The holder's pid is another host's; the kernel cannot map it into this namespace.)
    assert_eq!(
        must_wait_child(getlk, wait),
        4,
        "F_GETLK reports the other holder's lock"
    );
    rt.block_on(m.backend.unlock_all(ino, other_mount))
        .expect("unlock in the backend");
    assert_eq!(must_exit_within(flock_cli(&["-n"], &path), wait), 0);
    let probe = child_fcntl(&c, libc::F_SETLK, lock_struct(libc::F_WRLCK, 0, 0), 0);
    assert_eq!(must_wait_child(probe, wait), 0);
}
