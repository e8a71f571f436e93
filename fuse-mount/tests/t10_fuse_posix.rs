//! POSIX file and namespace behaviour through real FUSE mounts of the memory backend and
//! of a real cluster, using only std::fs / libc as an application would. Each test mounts
//! its own filesystem (and, on the cluster, starts its own cluster).

mod common;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use common::{cstr, must_errno, wait_until, Mounted, TestMount};

on_both_backends!(
    create_write_read_and_append,
    exclusive_create_and_missing_files,
    directory_errors,
    names_longer_than_255_bytes_are_enametoolong,
    rename_across_directories,
    hard_links_share_data_and_count_links,
    symlinks_read_and_follow,
    unlinked_open_file_lives_until_close,
    truncate_grows_and_shrinks,
    sparse_file_holes_read_as_zeros,
    offsets_beyond_4_gib,
    readdir_while_the_directory_changes,
);

const GIB: u64 = 1 << 30;

/// Write, read back, and O_APPEND: appends land at the end even after seeking to 0.
fn create_write_read_and_append(m: &impl Mounted) {
    let path = m.p("f");
    fs::write(&path, b"hello").expect("write");
    assert_eq!(fs::read(&path).expect("read"), b"hello");
    let mut f = OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open append");
    f.seek(SeekFrom::Start(0)).expect("seek");
    f.write_all(b" world").expect("append");
    let mut g = OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("second appender");
    g.write_all(b"!").expect("append");
    drop((f, g));
    assert_eq!(fs::read_to_string(&path).expect("read"), "hello world!");
    // Overwrite in the middle keeps the rest.
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.write_all_at(b"J", 0).expect("pwrite");
    assert_eq!(fs::read_to_string(&path).expect("read"), "Jello world!");
}

/// O_EXCL on an existing name is EEXIST; plain O_CREAT opens it; missing is ENOENT.
fn exclusive_create_and_missing_files(m: &impl Mounted) {
    let path = m.p("f");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create_new");
    let r = OpenOptions::new().write(true).create_new(true).open(&path);
    assert_eq!(must_errno(r), libc::EEXIST);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("O_CREAT reopens");
    assert_eq!(must_errno(File::open(m.p("missing"))), libc::ENOENT);
    assert_eq!(must_errno(fs::remove_file(m.p("missing"))), libc::ENOENT);
}

/// EISDIR, ENOTDIR, ENOTEMPTY and EEXIST for directories.
fn directory_errors(m: &impl Mounted) {
    fs::create_dir(m.p("d")).expect("mkdir");
    fs::write(m.p("d/inner"), b"x").expect("write");
    fs::write(m.p("file"), b"x").expect("write");
    assert_eq!(
        must_errno(OpenOptions::new().write(true).open(m.p("d"))),
        libc::EISDIR
    );
    assert_eq!(must_errno(fs::remove_file(m.p("d"))), libc::EISDIR);
    assert_eq!(must_errno(File::open(m.p("file/x"))), libc::ENOTDIR);
    assert_eq!(must_errno(fs::create_dir(m.p("file/x"))), libc::ENOTDIR);
    assert_eq!(must_errno(fs::remove_dir(m.p("file"))), libc::ENOTDIR);
    assert_eq!(must_errno(fs::remove_dir(m.p("d"))), libc::ENOTEMPTY);
    assert_eq!(must_errno(fs::create_dir(m.p("d"))), libc::EEXIST);
    fs::remove_file(m.p("d/inner")).expect("unlink");
    fs::remove_dir(m.p("d")).expect("rmdir empty");
}

/// A 255-byte name works; 256 bytes is ENAMETOOLONG (for create, mkdir and lookup).
fn names_longer_than_255_bytes_are_enametoolong(m: &impl Mounted) {
    fs::write(m.p(&"a".repeat(255)), b"ok").expect("255-byte name");
    let long = "b".repeat(256);
    assert_eq!(must_errno(fs::write(m.p(&long), b"x")), libc::ENAMETOOLONG);
    assert_eq!(must_errno(fs::create_dir(m.p(&long))), libc::ENAMETOOLONG);
    assert_eq!(must_errno(fs::metadata(m.p(&long))), libc::ENAMETOOLONG);
}

/// rename across directories replaces the target file atomically; onto a non-empty
/// directory it fails; onto an empty one it succeeds.
fn rename_across_directories(m: &impl Mounted) {
    fs::create_dir(m.p("a")).expect("mkdir");
    fs::create_dir(m.p("b")).expect("mkdir");
    fs::write(m.p("a/x"), b"new").expect("write");
    fs::write(m.p("b/x"), b"old").expect("write");
    fs::rename(m.p("a/x"), m.p("b/x")).expect("rename replacing a file");
    assert_eq!(fs::read(m.p("b/x")).expect("read"), b"new");
    assert_eq!(must_errno(fs::metadata(m.p("a/x"))), libc::ENOENT);

    fs::create_dir(m.p("src")).expect("mkdir");
    fs::write(m.p("src/f"), b"1").expect("write");
    let r = fs::rename(m.p("src"), m.p("b"));
    assert!(matches!(must_errno(r), libc::ENOTEMPTY | libc::EEXIST));
    fs::create_dir(m.p("empty")).expect("mkdir");
    fs::rename(m.p("src"), m.p("empty")).expect("rename onto an empty dir");
    assert_eq!(fs::read(m.p("empty/f")).expect("read"), b"1");
    assert_eq!(fs::metadata(m.p("")).expect("root").nlink(), 5);
}

/// Hard links share data and count links.
fn hard_links_share_data_and_count_links(m: &impl Mounted) {
    fs::write(m.p("a"), b"one").expect("write");
    fs::create_dir(m.p("d")).expect("mkdir");
    fs::hard_link(m.p("a"), m.p("d/b")).expect("link");
    let (a, b) = (
        fs::metadata(m.p("a")).expect("a"),
        fs::metadata(m.p("d/b")).expect("b"),
    );
    assert_eq!((a.ino(), a.nlink(), b.nlink()), (b.ino(), 2, 2));
    fs::write(m.p("d/b"), b"two").expect("write through the link");
    assert_eq!(fs::read(m.p("a")).expect("read"), b"two");
    fs::remove_file(m.p("a")).expect("unlink");
    assert_eq!(fs::metadata(m.p("d/b")).expect("b").nlink(), 1);
    assert_eq!(must_errno(fs::hard_link(m.p("d"), m.p("dl"))), libc::EPERM);
}

/// Symlinks: readlink, following, dangling links.
fn symlinks_read_and_follow(m: &impl Mounted) {
    fs::create_dir(m.p("d")).expect("mkdir");
    fs::write(m.p("d/target"), b"through the link").expect("write");
    std::os::unix::fs::symlink("d/target", m.p("link")).expect("symlink");
    assert_eq!(
        fs::read_link(m.p("link")).expect("readlink").to_str(),
        Some("d/target")
    );
    assert!(fs::symlink_metadata(m.p("link"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(m.p("link")).expect("follow"), b"through the link");
    std::os::unix::fs::symlink("nowhere", m.p("dangling")).expect("symlink");
    assert_eq!(must_errno(File::open(m.p("dangling"))), libc::ENOENT);
}

/// An unlinked file stays readable and writable through an open descriptor, and the
/// backend frees it only after the last close.
fn unlinked_open_file_lives_until_close(m: &impl Mounted) {
    let path = m.p("tmp");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("open");
    f.write_all(b"data outlives its name").expect("write");
    fs::remove_file(&path).expect("unlink");
    assert_eq!(must_errno(fs::metadata(&path)), libc::ENOENT);
    assert!(fs::read_dir(m.p("")).expect("readdir").next().is_none());
    f.seek(SeekFrom::Start(0)).expect("seek");
    let mut s = String::new();
    f.read_to_string(&mut s).expect("read via fd");
    assert_eq!(s, "data outlives its name");
    assert_eq!(f.metadata().expect("fstat").nlink(), 0);
    f.write_all(b"!").expect("write after unlink");
    f.seek(SeekFrom::Start(0)).expect("seek");
    s.clear();
    f.read_to_string(&mut s).expect("read via fd");
    assert_eq!(s, "data outlives its name!");
}

/// The memory backend frees an unlinked inode only after the last close.
#[test]
fn unlinked_inode_is_freed_at_last_close() {
    let m = TestMount::must_mount();
    let mut f = File::create(m.p("tmp")).expect("create");
    f.write_all(b"x").expect("write");
    fs::remove_file(m.p("tmp")).expect("unlink");
    assert!(m.backend.inode_count() > 1);
    drop(f);
    let freed = wait_until(Duration::from_secs(5), || m.backend.inode_count() == 1);
    assert!(
        freed,
        "inode freed after the last close (release is asynchronous)"
    );
}

/// truncate shrinks (data gone) and grows (zeros).
fn truncate_grows_and_shrinks(m: &impl Mounted) {
    let path = m.p("f");
    fs::write(&path, vec![b'x'; 10_000]).expect("write");
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(100).expect("shrink");
    f.set_len(5000).expect("grow");
    let data = fs::read(&path).expect("read");
    assert_eq!(data.len(), 5000);
    assert!(data[..100].iter().all(|&b| b == b'x'));
    assert!(data[100..].iter().all(|&b| b == 0));
    let c = cstr(&path);
    // SAFETY: valid path, plain syscall.
    common::check(unsafe { libc::truncate(c.as_ptr(), 0) }).expect("truncate(2) by path");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 0);
}

/// A write at 1 GiB makes a sparse file: right size, few blocks, holes read as zeros.
fn sparse_file_holes_read_as_zeros(m: &impl Mounted) {
    let path = m.p("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("open");
    f.write_all_at(b"end", GIB).expect("write at 1 GiB");
    let meta = f.metadata().expect("fstat");
    assert_eq!(meta.len(), GIB + 3);
    assert!(
        meta.blocks() < 1024,
        "only the written page is allocated: {}",
        meta.blocks()
    );
    let mut buf = vec![1u8; 64 * 1024];
    f.read_exact_at(&mut buf, GIB / 2).expect("read a hole");
    assert!(buf.iter().all(|&b| b == 0));
    let mut tail = [0u8; 5];
    f.read_exact_at(&mut tail, GIB - 2)
        .expect("read across the hole's end");
    assert_eq!(&tail, b"\0\0end");
}

/// Offsets beyond 4 GiB (no 32-bit truncation anywhere).
fn offsets_beyond_4_gib(m: &impl Mounted) {
    let path = m.p("big");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("open");
    let off = 5 * GIB + 7;
    f.write_all_at(b"far away", off).expect("write at 5 GiB");
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, off).expect("read back");
    assert_eq!(&buf, b"far away");
    f.set_len(6 * GIB).expect("grow to 6 GiB");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 6 * GIB);
}

/// statfs reports the backend's capacity, block size and name limit; writes use space.
#[test]
fn statfs_reports_capacity() {
    let m = TestMount::must_mount();
    let statvfs = || {
        let c = cstr(&m.root);
        // SAFETY: `st` is a plain C struct that statvfs fills; `c` is a valid path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        common::check(unsafe { libc::statvfs(c.as_ptr(), &mut st) }).expect("statvfs");
        st
    };
    let before = statvfs();
    assert_eq!(before.f_namemax, 255);
    assert_eq!(before.f_frsize * before.f_blocks, 16 << 30);
    fs::write(m.p("f"), vec![7u8; 1 << 20]).expect("write 1 MiB");
    let after = statvfs();
    assert_eq!((before.f_bfree - after.f_bfree) * after.f_frsize, 1 << 20);
    assert!(after.f_ffree < before.f_ffree);
}

/// On the cluster, statfs reports the storage nodes' capacity and the name limit.
#[test]
fn statfs_reports_cluster_capacity() {
    let mounts = common::cluster::ClusterMounts::start(1, common::cluster::test_mount_options());
    let c = cstr(&mounts.mounts[0].root);
    // SAFETY: `st` is a plain C struct that statvfs fills; `c` is a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    common::check(unsafe { libc::statvfs(c.as_ptr(), &mut st) }).expect("statvfs");
    assert_eq!(st.f_namemax, 255);
    assert!(
        st.f_blocks > 0 && st.f_bavail <= st.f_blocks,
        "{} {}",
        st.f_blocks,
        st.f_bavail
    );
}

/// With the binary's defaults (auto-unmount through fusermount3 when installed) the mount
/// shows up as `cairn` with default_permissions and allow_other, and unmounting leaves
/// nothing behind.
#[test]
fn default_mount_options_are_visible_and_unmount_cleanly() {
    let m = TestMount::must_mount_with(cairn_fuse_mount::MountOptions::default());
    let mounts = fs::read_to_string("/proc/self/mounts").expect("mounts");
    let root = m.root.clone();
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&*root.to_string_lossy()))
        .expect("mounted");
    assert!(line.starts_with("cairn "), "{line}");
    assert!(
        line.contains("default_permissions") && line.contains("allow_other"),
        "{line}"
    );
    drop(m);
    assert!(!common::is_mounted(&root), "unmounted on drop");
}

/// readdir stays correct while the directory changes: every name present throughout is
/// listed exactly once, no name twice, although entries are added and removed between
/// the getdents calls of one listing.
fn readdir_while_the_directory_changes(m: &impl Mounted) {
    let keep = |i: usize| format!("keep-entry-with-a-longer-name-{i:04}");
    for i in 0..1500 {
        File::create(m.p(&keep(i))).expect("create keep");
        if i % 2 == 0 {
            File::create(m.p(&format!("gone-{i:04}"))).expect("create gone");
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut round = 0;
    for (n, entry) in fs::read_dir(m.p("")).expect("opendir").enumerate() {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf8");
        *seen.entry(name).or_default() += 1;
        if n % 200 == 5 {
            for j in 0..40 {
                let _ = fs::remove_file(m.p(&format!("gone-{:04}", (round * 80 + j * 2) % 1500)));
            }
            File::create(m.p(&format!("aaa-new-{round}"))).expect("create before cursor");
            File::create(m.p(&format!("zzz-new-{round}"))).expect("create after cursor");
            round += 1;
        }
    }
    assert!(round >= 4, "the listing took several getdents calls");
    for i in 0..1500 {
        assert_eq!(seen.get(&keep(i)), Some(&1), "{} listed once", keep(i));
    }
    assert!(seen.values().all(|&c| c == 1), "no entry listed twice");
}

/// A file written in many small fsynced pieces (one chunk each) is compacted after its
/// last close into one chunk holding the same bytes, holes kept.
#[test]
fn cluster_compacts_a_fragmented_file() {
    let mounts = common::cluster::ClusterMounts::start(1, common::cluster::test_mount_options());
    let m = &mounts.mounts[0];
    let path = m.p("fragmented");
    // Pieces at 0, 8 KiB, 16 KiB, ...: the file ends with the last piece.
    let mut expected = vec![0u8; 63 * 8192 + 4096];
    {
        let f = File::create(&path).expect("create");
        for i in 0..64usize {
            let piece = vec![i as u8 + 1; 4096];
            f.write_all_at(&piece, (i * 8192) as u64).expect("pwrite");
            f.sync_data().expect("fdatasync");
            expected[i * 8192..i * 8192 + 4096].copy_from_slice(&piece);
        }
    }
    let client = &mounts.cluster().client;
    let chunks = || {
        mounts
            .block_on(client.stat("default", "fragmented"))
            .expect("stat")
            .chunks
    };
    assert!(
        wait_until(Duration::from_secs(20), || chunks() == 1),
        "compacted to one chunk (now {})",
        chunks()
    );
    let same = |got: &[u8]| {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        assert!(
            got.len() == expected.len() && first.is_none(),
            "{} bytes, first difference at {first:?}",
            got.len()
        );
    };
    same(&fs::read(&path).expect("read"));
    let mut via_api = Vec::new();
    mounts
        .block_on(client.get("default", "fragmented", None, &mut via_api))
        .expect("get");
    same(&via_api);
}

/// The mount's root holds the buckets: `mkdir` there creates one (visible to the object
/// API) on a cluster admin's mount and is refused on a mount's (EACCES), files cannot
/// live there, and renames or links across buckets are EXDEV.
#[test]
fn cluster_root_holds_buckets_and_nothing_crosses_them() {
    let mut mounts =
        common::cluster::ClusterMounts::start(0, common::cluster::test_mount_options());
    mounts.add_admin_mount(common::cluster::test_mount_options());
    let m = &mounts.mounts[0];
    let root = &m.mountpoint;
    fs::create_dir(root.join("second")).expect("mkdir at the root makes a bucket");
    let buckets = mounts
        .block_on(mounts.cluster().client.list_buckets())
        .expect("list buckets");
    assert!(buckets.iter().any(|b| b.name == "second"), "{buckets:?}");
    assert_eq!(must_errno(fs::write(root.join("file"), b"x")), libc::EPERM);
    assert_eq!(
        must_errno(fs::create_dir(root.join("Bad_Name"))),
        libc::EINVAL
    );
    fs::write(m.p("f"), b"data").expect("write in default");
    assert_eq!(
        must_errno(fs::rename(m.p("f"), root.join("second/f"))),
        libc::EXDEV
    );
    assert_eq!(
        must_errno(fs::hard_link(m.p("f"), root.join("second/f"))),
        libc::EXDEV
    );
    // What `mv` does on EXDEV: copy, then remove.
    fs::copy(m.p("f"), root.join("second/f")).expect("copy across buckets");
    assert_eq!(fs::read(root.join("second/f")).expect("read"), b"data");
    fs::remove_file(root.join("second/f")).expect("unlink");

    // The mounts' user (role `mount`) cannot make or remove buckets, and sees only those
    // it is granted.
    mounts.add_mount(
        common::cluster::test_mount_options(),
        cairn_fuse_mount::cluster::ClusterOptions::default(),
    );
    let user_root = mounts.mounts[1].mountpoint.clone();
    assert_eq!(
        must_errno(fs::create_dir(user_root.join("third"))),
        libc::EACCES
    );
    assert_eq!(
        must_errno(fs::remove_dir(user_root.join("second"))),
        libc::EACCES
    );
    let root = &mounts.mounts[0].mountpoint;
    fs::remove_dir(root.join("second")).expect("rmdir of an empty bucket deletes it");
}

/// Random small reads on a mount that did not write the file (nothing cached) read just
/// their bytes from the data shards, and match what was written, across chunk and
/// shard boundaries.
#[test]
fn cluster_random_reads_match_across_shard_boundaries() {
    let mounts = common::cluster::ClusterMounts::start(2, common::cluster::test_mount_options());
    let (a, b) = (&mounts.mounts[0], &mounts.mounts[1]);
    let data: Vec<u8> = (0..(6u32 << 20) + 777)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    fs::write(a.p("random"), &data).expect("write on A");
    let f = File::open(b.p("random")).expect("open on B");
    // Offsets near chunk (4 MiB) and shard (2 MiB for ec 2+1) boundaries, and elsewhere.
    let mut offsets = vec![
        0u64,
        (2 << 20) - 100,
        (4 << 20) - 10,
        (4 << 20) + 1,
        data.len() as u64 - 50,
    ];
    offsets.extend((1..40u64).map(|i| (i * 150_001) % data.len() as u64));
    for off in offsets {
        let len = 4096.min(data.len() - off as usize);
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off).expect("pread");
        assert!(
            buf == data[off as usize..off as usize + len],
            "bytes at {off} differ"
        );
    }
}
