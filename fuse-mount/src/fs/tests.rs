//! The core's behaviour over the memory backend, without FUSE.

use std::collections::HashSet;

use super::*;
use crate::backend::{MAX_FILE_SIZE, ROOT_INO};
use crate::memory::MemoryBackend;

const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 42,
};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn core_with(opts: FsOptions) -> (Arc<MemoryBackend>, FsCore) {
    let backend = Arc::new(MemoryBackend::default());
    (backend.clone(), FsCore::new(backend, opts))
}

fn core() -> (Arc<MemoryBackend>, FsCore) {
    core_with(FsOptions::default())
}

const RW_CREATE: i32 = libc::O_RDWR | libc::O_CREAT;

#[tokio::test]
async fn create_with_excl_fails_on_existing_name_and_without_opens_it() {
    let (_, fs) = core();
    let (a, fh) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.write(a.ino, fh, 0, b"kept", libc::O_RDWR)
        .await
        .expect("write");
    let excl = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE | libc::O_EXCL, ME)
        .await;
    assert!(matches!(excl, Err(FsError::Exists)));
    let (again, fh2) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("reopen");
    assert_eq!(again.ino, a.ino);
    assert_eq!(fs.read(a.ino, fh2, 0, 10).await.expect("read"), b"kept");
}

#[tokio::test]
async fn create_applies_umask_and_rejects_long_names() {
    let (_, fs) = core();
    let (a, _) = fs
        .create(ROOT_INO, os("f"), 0o666, 0o022, RW_CREATE, ME)
        .await
        .expect("create");
    assert_eq!(a.mode, 0o644);
    let long = "x".repeat(256);
    let r = fs
        .create(ROOT_INO, os(&long), 0o644, 0, RW_CREATE, ME)
        .await;
    assert!(matches!(r, Err(FsError::NameTooLong)));
    let r = fs.mkdir(ROOT_INO, os(&long), 0o755, 0, ME).await;
    assert!(matches!(r, Err(FsError::NameTooLong)));
}

#[tokio::test]
async fn open_with_trunc_empties_the_file() {
    let (_, fs) = core();
    let (a, fh) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.write(a.ino, fh, 0, b"old data", libc::O_RDWR)
        .await
        .expect("write");
    let fh2 = fs
        .open(a.ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .expect("open");
    assert_eq!(fs.getattr(a.ino).await.expect("attr").size, 0);
    fs.release(a.ino, fh2, None).await.expect("release");
}

#[tokio::test]
async fn append_flag_writes_at_the_backend_end_whatever_the_offset() {
    let (_, fs) = core();
    let (a, fh) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.write(a.ino, fh, 0, b"first", libc::O_RDWR)
        .await
        .expect("write");
    // A stale kernel offset (0) must not overwrite: O_APPEND goes to the end.
    fs.write(a.ino, fh, 0, b"+second", libc::O_RDWR | libc::O_APPEND)
        .await
        .expect("append");
    assert_eq!(
        fs.read(a.ino, fh, 0, 100).await.expect("read"),
        b"first+second"
    );
}

#[tokio::test]
async fn handles_are_checked_against_their_inode() {
    let (_, fs) = core();
    let (a, fh) = fs
        .create(ROOT_INO, os("a"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("a");
    let (b, _) = fs
        .create(ROOT_INO, os("b"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("b");
    assert!(matches!(
        fs.read(b.ino, fh, 0, 1).await,
        Err(FsError::BadHandle)
    ));
    fs.release(a.ino, fh, None).await.expect("release");
    assert!(matches!(
        fs.read(a.ino, fh, 0, 1).await,
        Err(FsError::BadHandle)
    ));
}

async fn list_all(fs: &FsCore, dir: Ino, fh: u64) -> Vec<DirItem> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let batch = fs.readdir(dir, fh, offset).await.expect("readdir");
        let Some(last) = batch.last() else { return out };
        offset = last.offset;
        out.extend(batch);
    }
}

#[tokio::test]
async fn readdir_lists_dot_entries_then_names_in_order() {
    let (_, fs) = core();
    for n in ["b", "a"] {
        fs.mkdir(ROOT_INO, os(n), 0o755, 0, ME)
            .await
            .expect("mkdir");
    }
    let fh = fs.opendir(ROOT_INO).await.expect("opendir");
    let names: Vec<_> = list_all(&fs, ROOT_INO, fh)
        .await
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, [".", "..", "a", "b"]);
    fs.releasedir(fh);
    assert!(matches!(
        fs.readdir(ROOT_INO, fh, 0).await,
        Err(FsError::BadHandle)
    ));
}

#[tokio::test]
async fn readdir_cursor_stays_correct_while_the_directory_changes() {
    let (_, fs) = core_with(FsOptions {
        readdir_batch: 7,
        ..FsOptions::default()
    });
    for i in 0..100 {
        fs.mknod(ROOT_INO, os(&format!("keep{i:03}")), 0o644, 0, 0, ME)
            .await
            .expect("mknod");
        fs.mknod(ROOT_INO, os(&format!("gone{i:03}")), 0o644, 0, 0, ME)
            .await
            .expect("mknod");
    }
    let fh = fs.opendir(ROOT_INO).await.expect("opendir");
    let mut seen = Vec::new();
    let mut offset = 0;
    let mut round = 0;
    loop {
        let batch = fs.readdir(ROOT_INO, fh, offset).await.expect("readdir");
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        seen.extend(
            batch
                .into_iter()
                .map(|i| i.name.into_string().expect("utf8")),
        );
        // Between batches: delete some entries, add others before and after the cursor.
        for j in 0..5 {
            let _ = fs
                .unlink(ROOT_INO, os(&format!("gone{:03}", round * 5 + j)))
                .await;
        }
        fs.mknod(ROOT_INO, os(&format!("aaa{round}")), 0o644, 0, 0, ME)
            .await
            .expect("mknod");
        fs.mknod(ROOT_INO, os(&format!("zzz{round}")), 0o644, 0, 0, ME)
            .await
            .expect("mknod");
        round += 1;
    }
    let keeps: Vec<_> = seen.iter().filter(|n| n.starts_with("keep")).collect();
    assert_eq!(keeps.len(), 100, "every name present throughout is listed");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no name is listed twice");
}

#[tokio::test]
async fn xattr_size_probe_and_short_buffer() {
    let (_, fs) = core();
    fs.setxattr(ROOT_INO, os("user.k"), b"value", 0, 0)
        .await
        .expect("set");
    assert_eq!(
        fs.getxattr(ROOT_INO, os("user.k"), 0).await.expect("probe"),
        XattrReply::Size(5)
    );
    assert!(matches!(
        fs.getxattr(ROOT_INO, os("user.k"), 4).await,
        Err(FsError::Range)
    ));
    assert_eq!(
        fs.getxattr(ROOT_INO, os("user.k"), 64).await.expect("get"),
        XattrReply::Data(b"value".to_vec())
    );
    fs.setxattr(ROOT_INO, os("user.j"), b"", 0, 0)
        .await
        .expect("set");
    assert_eq!(
        fs.listxattr(ROOT_INO, 100).await.expect("list"),
        XattrReply::Data(b"user.j\0user.k\0".to_vec())
    );
    let both = libc::XATTR_CREATE | libc::XATTR_REPLACE;
    assert!(matches!(
        fs.setxattr(ROOT_INO, os("user.x"), b"", both, 0).await,
        Err(FsError::InvalidArgument)
    ));
}

#[tokio::test]
async fn mknod_makes_special_files_and_rename_refuses_unknown_flags() {
    let (_, fs) = core();
    let fifo = fs
        .mknod(ROOT_INO, os("fifo"), libc::S_IFIFO | 0o666, 0o022, 77, ME)
        .await
        .expect("fifo");
    assert_eq!(
        (fifo.kind, fifo.mode, fifo.rdev),
        (FileType::Fifo, 0o644, 0)
    );
    let dev = fs
        .mknod(ROOT_INO, os("dev"), libc::S_IFBLK | 0o600, 0, 0x801, ME)
        .await
        .expect("block device");
    assert_eq!((dev.kind, dev.rdev), (FileType::BlockDevice, 0x801));
    let r = fs
        .mknod(ROOT_INO, os("dir"), libc::S_IFDIR | 0o755, 0, 0, ME)
        .await;
    assert!(matches!(r, Err(FsError::NotPermitted)));
    let r = fs.mknod(ROOT_INO, os("odd"), 0o170644, 0, 0, ME).await;
    assert!(matches!(r, Err(FsError::InvalidArgument)));
    fs.mknod(ROOT_INO, os("f"), libc::S_IFREG | 0o644, 0, 0, ME)
        .await
        .expect("regular");
    let r = fs
        .rename(ROOT_INO, os("f"), ROOT_INO, os("g"), libc::RENAME_WHITEOUT)
        .await;
    assert!(matches!(r, Err(FsError::InvalidArgument)));
    fs.rename(ROOT_INO, os("f"), ROOT_INO, os("g"), libc::RENAME_NOREPLACE)
        .await
        .expect("rename");
}

async fn size_of(fs: &FsCore, ino: Ino) -> u64 {
    fs.getattr(ino).await.expect("attr").size
}

#[tokio::test]
async fn fallocate_grows_keeps_or_refuses_by_mode_and_free_space() {
    let backend = Arc::new(MemoryBackend::new(crate::memory::MemoryOptions {
        capacity_bytes: 1 << 20,
        ..Default::default()
    }));
    let fs = FsCore::new(backend, FsOptions::default());
    let (a, fh) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.write(a.ino, fh, 0, b"abc", libc::O_RDWR)
        .await
        .expect("write");
    fs.fallocate(a.ino, fh, 0, 4096, 0).await.expect("mode 0");
    assert_eq!(size_of(&fs, a.ino).await, 4096);
    fs.fallocate(a.ino, fh, 0, 8192, libc::FALLOC_FL_KEEP_SIZE)
        .await
        .expect("keep size");
    assert_eq!(size_of(&fs, a.ino).await, 4096);
    for mode in [
        libc::FALLOC_FL_PUNCH_HOLE,
        libc::FALLOC_FL_ZERO_RANGE,
        libc::FALLOC_FL_COLLAPSE_RANGE,
        libc::FALLOC_FL_INSERT_RANGE,
        libc::FALLOC_FL_UNSHARE_RANGE,
    ] {
        let r = fs.fallocate(a.ino, fh, 0, 4096, mode).await;
        assert!(matches!(r, Err(FsError::Unsupported)), "mode {mode:#x}");
    }
    // More than the free megabyte past the end of file; inside the file it costs nothing.
    let r = fs.fallocate(a.ino, fh, 0, 2 << 20, 0).await;
    assert!(matches!(r, Err(FsError::NoSpace)));
    let r = fs
        .fallocate(a.ino, fh, 4096, 2 << 20, libc::FALLOC_FL_KEEP_SIZE)
        .await;
    assert!(matches!(r, Err(FsError::NoSpace)));
    fs.fallocate(a.ino, fh, 0, 4096, 0).await.expect("inside");
    let r = fs.fallocate(a.ino, fh, MAX_FILE_SIZE, 1, 0).await;
    assert!(matches!(r, Err(FsError::FileTooBig)));
    let r = fs.fallocate(a.ino, fh, 0, 0, 0).await;
    assert!(matches!(r, Err(FsError::InvalidArgument)));
    let r = fs.fallocate(a.ino, fh + 1000, 0, 1, 0).await;
    assert!(matches!(r, Err(FsError::BadHandle)));
    assert_eq!(size_of(&fs, a.ino).await, 4096);
    assert_eq!(
        fs.read(a.ino, fh, 0, 8192).await.expect("read"),
        [b"abc".as_slice(), &[0u8; 4093]].concat()
    );

    // A punched hole reads as zeros, keeps the size and frees its pages.
    fs.write(a.ino, fh, 0, &[9u8; 4 * 4096], libc::O_RDWR)
        .await
        .expect("fill");
    let free = fs.statfs().await.expect("statfs").free_bytes;
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(a.ino, fh, 1, 2 * 4096, punch)
        .await
        .expect("punch");
    assert_eq!(size_of(&fs, a.ino).await, 4 * 4096);
    let bytes = fs.read(a.ino, fh, 0, 4 * 4096).await.expect("read");
    assert_eq!(bytes[0], 9);
    assert!(bytes[1..1 + 2 * 4096].iter().all(|&b| b == 0));
    assert!(bytes[1 + 2 * 4096..].iter().all(|&b| b == 9));
    let freed = fs.statfs().await.expect("statfs").free_bytes - free;
    assert_eq!(freed, 4096, "one page was covered whole");
}

fn whole(kind: LockKind) -> FileLock {
    FileLock {
        start: 0,
        end: MAX_FILE_SIZE,
        kind,
        pid: 7,
    }
}

#[tokio::test]
async fn flush_releases_the_posix_locks_of_its_owner() {
    let (_, fs) = core();
    let (a, fh) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.setlk(a.ino, 1, whole(LockKind::Write), false, &never)
        .await
        .expect("lock");
    let r = fs
        .setlk(a.ino, 2, whole(LockKind::Read), false, &never)
        .await;
    assert!(matches!(r, Err(FsError::WouldBlock)));
    assert_eq!(
        fs.getlk(a.ino, 2, whole(LockKind::Read))
            .await
            .expect("getlk")
            .kind,
        LockKind::Write
    );
    fs.flush(a.ino, fh, 1).await.expect("flush");
    fs.setlk(a.ino, 2, whole(LockKind::Read), false, &never)
        .await
        .expect("free after close");
    assert_eq!(
        fs.getlk(a.ino, 3, whole(LockKind::Read))
            .await
            .expect("getlk")
            .kind,
        LockKind::Unlock
    );
}

#[tokio::test]
async fn release_drops_flock_locks_of_the_open_file() {
    let (_, fs) = core();
    let (a, fh) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.setlk(a.ino, 10, whole(LockKind::Write), false, &never)
        .await
        .expect("flock");
    fs.release(a.ino, fh, Some(10)).await.expect("release");
    fs.setlk(a.ino, 11, whole(LockKind::Write), false, &never)
        .await
        .expect("free after release");
}

#[tokio::test]
async fn blocking_lock_waits_until_the_holder_unlocks() {
    let (_, fs) = core();
    let fs = Arc::new(fs);
    let (a, _) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.setlk(a.ino, 1, whole(LockKind::Write), false, &never)
        .await
        .expect("lock");
    let waiter = {
        let fs = fs.clone();
        tokio::spawn(async move {
            fs.setlk(a.ino, 2, whole(LockKind::Write), true, &never)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter blocks while the lock is held"
    );
    fs.setlk(a.ino, 1, whole(LockKind::Unlock), false, &never)
        .await
        .expect("unlock");
    let granted = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    granted
        .expect("granted soon after unlock")
        .expect("task")
        .expect("lock");
}

/// A lock wait's caller that is never signalled.
fn never() -> bool {
    false
}

#[tokio::test]
async fn a_signalled_waiter_gives_up_with_eintr_while_the_lock_is_held() {
    let (_, fs) = core_with(FsOptions {
        lock_retry: Duration::from_millis(10),
        ..FsOptions::default()
    });
    let fs = Arc::new(fs);
    let (a, _) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.setlk(a.ino, 1, whole(LockKind::Write), false, &never)
        .await
        .expect("lock");
    let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let (fs, signalled) = (fs.clone(), signalled.clone());
        tokio::spawn(async move {
            let interrupted = move || signalled.load(std::sync::atomic::Ordering::Relaxed);
            fs.setlk(a.ino, 2, whole(LockKind::Write), true, &interrupted)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter blocks while the lock is held"
    );
    signalled.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the wait ends")
        .expect("task");
    assert!(matches!(r, Err(FsError::Interrupted)), "{r:?}");
}

#[tokio::test]
async fn blocking_lock_gives_up_after_the_wait_limit() {
    let (_, fs) = core_with(FsOptions {
        lock_wait_limit: Some(Duration::from_millis(50)),
        lock_retry: Duration::from_millis(10),
        ..FsOptions::default()
    });
    let (a, _) = fs
        .create(ROOT_INO, os("f"), 0o644, 0, RW_CREATE, ME)
        .await
        .expect("create");
    fs.setlk(a.ino, 1, whole(LockKind::Read), false, &never)
        .await
        .expect("lock");
    let r = fs
        .setlk(a.ino, 2, whole(LockKind::Write), true, &never)
        .await;
    assert!(matches!(r, Err(FsError::Interrupted)));
}
