//! Reference semantics of the memory backend, called through the `FsBackend` trait the way
//! the core calls any backend.

use super::*;

const ME: Caller = Caller {
    uid: 1000,
    gid: 100,
    pid: 1,
};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn backend() -> MemoryBackend {
    MemoryBackend::default()
}

async fn new_file(b: &MemoryBackend, parent: Ino, name: &str) -> (FsAttr, HandleId) {
    b.create(parent, os(name), 0o644, ME, AccessMode::ReadWrite)
        .await
        .expect("create")
}

#[tokio::test]
async fn create_twice_is_exists_and_lookup_finds_the_file() {
    let b = backend();
    let (a, _) = new_file(&b, ROOT_INO, "f").await;
    assert_eq!(
        (a.kind, a.mode, a.uid, a.gid, a.nlink),
        (FileType::File, 0o644, 1000, 100, 1)
    );
    let again = b
        .create(ROOT_INO, os("f"), 0o644, ME, AccessMode::Read)
        .await;
    assert!(matches!(again, Err(FsError::Exists)));
    assert_eq!(
        b.lookup(ROOT_INO, os("f")).await.expect("lookup").ino,
        a.ino
    );
}

#[tokio::test]
async fn lookup_errors_distinguish_missing_and_not_a_directory() {
    let b = backend();
    let (f, _) = new_file(&b, ROOT_INO, "f").await;
    assert!(matches!(
        b.lookup(ROOT_INO, os("nope")).await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        b.lookup(f.ino, os("x")).await,
        Err(FsError::NotDir)
    ));
    let long = "n".repeat(NAME_MAX + 1);
    assert!(matches!(
        b.lookup(ROOT_INO, os(&long)).await,
        Err(FsError::NameTooLong)
    ));
}

#[tokio::test]
async fn mkdir_and_rmdir_keep_parent_link_count() {
    let b = backend();
    let d = b.mkdir(ROOT_INO, os("d"), 0o755, ME).await.expect("mkdir");
    assert_eq!(d.nlink, 2);
    assert_eq!(b.getattr(ROOT_INO).await.expect("root").nlink, 3);
    b.mkdir(d.ino, os("sub"), 0o755, ME)
        .await
        .expect("mkdir sub");
    assert!(matches!(
        b.rmdir(ROOT_INO, os("d")).await,
        Err(FsError::NotEmpty)
    ));
    b.rmdir(d.ino, os("sub")).await.expect("rmdir sub");
    b.rmdir(ROOT_INO, os("d")).await.expect("rmdir");
    assert_eq!(b.getattr(ROOT_INO).await.expect("root").nlink, 2);
    assert_eq!(b.inode_count(), 1);
}

#[tokio::test]
async fn unlink_and_rmdir_reject_the_wrong_kind() {
    let b = backend();
    b.mkdir(ROOT_INO, os("d"), 0o755, ME).await.expect("mkdir");
    new_file(&b, ROOT_INO, "f").await;
    assert!(matches!(
        b.unlink(ROOT_INO, os("d")).await,
        Err(FsError::IsDir)
    ));
    assert!(matches!(
        b.rmdir(ROOT_INO, os("f")).await,
        Err(FsError::NotDir)
    ));
    assert!(matches!(
        b.unlink(ROOT_INO, os("zz")).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn unlinked_open_file_stays_readable_until_last_release() {
    let b = backend();
    let (f, h) = new_file(&b, ROOT_INO, "f").await;
    b.write(f.ino, h, Some(0), b"still here")
        .await
        .expect("write");
    let h2 = b.open(f.ino, AccessMode::Read).await.expect("open");
    b.unlink(ROOT_INO, os("f")).await.expect("unlink");
    assert_eq!(b.getattr(f.ino).await.expect("attr").nlink, 0);
    b.release(f.ino, h).await.expect("release");
    assert_eq!(
        b.read(f.ino, h2, 0, 100).await.expect("read"),
        b"still here"
    );
    b.release(f.ino, h2).await.expect("release last");
    assert!(matches!(b.getattr(f.ino).await, Err(FsError::NotFound)));
    assert_eq!(b.inode_count(), 1);
}

#[tokio::test]
async fn hard_links_share_data_and_count_links() {
    let b = backend();
    let (f, h) = new_file(&b, ROOT_INO, "a").await;
    let d = b.mkdir(ROOT_INO, os("d"), 0o755, ME).await.expect("mkdir");
    assert_eq!(b.link(f.ino, d.ino, os("b")).await.expect("link").nlink, 2);
    b.write(f.ino, h, Some(0), b"shared").await.expect("write");
    let via_b = b.lookup(d.ino, os("b")).await.expect("lookup");
    assert_eq!((via_b.ino, via_b.size), (f.ino, 6));
    b.unlink(ROOT_INO, os("a")).await.expect("unlink");
    assert_eq!(b.getattr(f.ino).await.expect("attr").nlink, 1);
    assert!(matches!(
        b.link(d.ino, ROOT_INO, os("dl")).await,
        Err(FsError::NotPermitted)
    ));
    assert!(matches!(
        b.link(f.ino, d.ino, os("b")).await,
        Err(FsError::Exists)
    ));
}

#[tokio::test]
async fn rename_replaces_a_file_and_frees_the_old_one() {
    let b = backend();
    let (src, hs) = new_file(&b, ROOT_INO, "src").await;
    let (dst, hd) = new_file(&b, ROOT_INO, "dst").await;
    b.release(dst.ino, hd).await.expect("release");
    b.write(src.ino, hs, Some(0), b"new").await.expect("write");
    b.rename(
        ROOT_INO,
        os("src"),
        ROOT_INO,
        os("dst"),
        RenameFlags::default(),
    )
    .await
    .expect("rename");
    assert_eq!(
        b.lookup(ROOT_INO, os("dst")).await.expect("dst").ino,
        src.ino
    );
    assert!(matches!(
        b.lookup(ROOT_INO, os("src")).await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(b.getattr(dst.ino).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn rename_enforces_directory_rules() {
    let b = backend();
    let a = b.mkdir(ROOT_INO, os("a"), 0o755, ME).await.expect("a");
    let full = b
        .mkdir(ROOT_INO, os("full"), 0o755, ME)
        .await
        .expect("full");
    new_file(&b, full.ino, "x").await;
    new_file(&b, ROOT_INO, "f").await;
    let none = RenameFlags::default();
    let r = b
        .rename(ROOT_INO, os("a"), ROOT_INO, os("full"), none)
        .await;
    assert!(matches!(r, Err(FsError::NotEmpty)));
    let r = b.rename(ROOT_INO, os("a"), a.ino, os("inside"), none).await;
    assert!(matches!(r, Err(FsError::InvalidArgument)));
    let r = b.rename(ROOT_INO, os("f"), ROOT_INO, os("a"), none).await;
    assert!(matches!(r, Err(FsError::IsDir)));
    let r = b.rename(ROOT_INO, os("a"), ROOT_INO, os("f"), none).await;
    assert!(matches!(r, Err(FsError::NotDir)));
    // Moving a directory moves one link from the old parent to the new one.
    b.rename(ROOT_INO, os("a"), full.ino, os("a2"), none)
        .await
        .expect("move dir");
    assert_eq!(b.getattr(full.ino).await.expect("full").nlink, 3);
    assert_eq!(b.getattr(ROOT_INO).await.expect("root").nlink, 3);
    // An empty directory target is replaced.
    b.mkdir(ROOT_INO, os("empty"), 0o755, ME)
        .await
        .expect("empty");
    b.rename(full.ino, os("a2"), ROOT_INO, os("empty"), none)
        .await
        .expect("replace");
    assert_eq!(b.getattr(ROOT_INO).await.expect("root").nlink, 4);
}

#[tokio::test]
async fn rename_between_two_links_of_one_inode_changes_nothing() {
    let b = backend();
    let (f, _) = new_file(&b, ROOT_INO, "a").await;
    b.link(f.ino, ROOT_INO, os("b")).await.expect("link");
    b.rename(ROOT_INO, os("a"), ROOT_INO, os("b"), RenameFlags::default())
        .await
        .expect("rename");
    assert!(b.lookup(ROOT_INO, os("a")).await.is_ok());
    assert_eq!(b.getattr(f.ino).await.expect("attr").nlink, 2);
}

#[tokio::test]
async fn rename_noreplace_and_exchange() {
    let b = backend();
    let (x, _) = new_file(&b, ROOT_INO, "x").await;
    let y = b.mkdir(ROOT_INO, os("y"), 0o755, ME).await.expect("y");
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    let r = b
        .rename(ROOT_INO, os("x"), ROOT_INO, os("y"), noreplace)
        .await;
    assert!(matches!(r, Err(FsError::Exists)));
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    b.rename(ROOT_INO, os("x"), ROOT_INO, os("y"), exchange)
        .await
        .expect("exchange");
    assert_eq!(b.lookup(ROOT_INO, os("x")).await.expect("x").ino, y.ino);
    assert_eq!(b.lookup(ROOT_INO, os("y")).await.expect("y").ino, x.ino);
    let r = b
        .rename(ROOT_INO, os("x"), ROOT_INO, os("zz"), exchange)
        .await;
    assert!(matches!(r, Err(FsError::NotFound)));
}

#[tokio::test]
async fn truncate_shrink_then_grow_reads_zeros_and_dirs_cannot_be_truncated() {
    let b = backend();
    let (f, h) = new_file(&b, ROOT_INO, "f").await;
    b.write(f.ino, h, Some(0), &[9u8; 10_000])
        .await
        .expect("write");
    let shrink = AttrChanges {
        size: Some(10),
        ..AttrChanges::default()
    };
    assert_eq!(b.setattr(f.ino, shrink).await.expect("shrink").size, 10);
    let grow = AttrChanges {
        size: Some(20_000),
        ..AttrChanges::default()
    };
    assert_eq!(b.setattr(f.ino, grow).await.expect("grow").size, 20_000);
    let data = b.read(f.ino, h, 0, 20_000).await.expect("read");
    assert_eq!(&data[..10], &[9u8; 10]);
    assert!(data[10..].iter().all(|&x| x == 0));
    let r = b.setattr(ROOT_INO, shrink).await;
    assert!(matches!(r, Err(FsError::IsDir)));
}

#[tokio::test]
async fn append_writes_at_end_and_sizes_are_limited() {
    let b = backend();
    let (f, h) = new_file(&b, ROOT_INO, "f").await;
    b.write(f.ino, h, Some(0), b"abc").await.expect("write");
    b.write(f.ino, h, None, b"def").await.expect("append");
    assert_eq!(b.read(f.ino, h, 0, 10).await.expect("read"), b"abcdef");
    let r = b.write(f.ino, h, Some(MAX_FILE_SIZE), b"x").await;
    assert!(matches!(r, Err(FsError::FileTooBig)));
    let ro = b.open(f.ino, AccessMode::Read).await.expect("open");
    assert!(matches!(
        b.write(f.ino, ro, Some(0), b"x").await,
        Err(FsError::BadHandle)
    ));
}

#[tokio::test]
async fn writes_beyond_capacity_fail_with_no_space() {
    let b = MemoryBackend::new(MemoryOptions {
        capacity_bytes: 8 * PAGE,
        ..MemoryOptions::default()
    });
    let (f, h) = new_file(&b, ROOT_INO, "f").await;
    b.write(f.ino, h, Some(0), &vec![1u8; 8 * PAGE as usize])
        .await
        .expect("fits");
    assert!(matches!(
        b.write(f.ino, h, Some(8 * PAGE), b"x").await,
        Err(FsError::NoSpace)
    ));
    let st = b.statfs().await.expect("statfs");
    assert_eq!((st.capacity_bytes, st.free_bytes), (8 * PAGE, 0));
    // Overwriting allocated pages needs no space.
    b.write(f.ino, h, Some(0), b"y").await.expect("overwrite");
}

#[tokio::test]
async fn setgid_directory_passes_its_group_and_bit_down() {
    let b = backend();
    let d = b
        .mkdir(ROOT_INO, os("d"), 0o2775, Caller { gid: 555, ..ME })
        .await
        .expect("d");
    assert_eq!(d.mode, 0o2775);
    let (f, _) = new_file(&b, d.ino, "f").await;
    assert_eq!(f.gid, 555);
    let sub = b.mkdir(d.ino, os("sub"), 0o755, ME).await.expect("sub");
    assert_eq!((sub.gid, sub.mode & 0o2000), (555, 0o2000));
}

#[tokio::test]
async fn xattrs_follow_create_and_replace_flags() {
    let b = backend();
    let (f, _) = new_file(&b, ROOT_INO, "f").await;
    assert!(matches!(
        b.getxattr(f.ino, os("user.a")).await,
        Err(FsError::NoData)
    ));
    let r = b
        .setxattr(f.ino, os("user.a"), b"1", XattrMode::Replace)
        .await;
    assert!(matches!(r, Err(FsError::NoData)));
    b.setxattr(f.ino, os("user.a"), b"1", XattrMode::Create)
        .await
        .expect("create");
    let r = b
        .setxattr(f.ino, os("user.a"), b"2", XattrMode::Create)
        .await;
    assert!(matches!(r, Err(FsError::Exists)));
    b.setxattr(f.ino, os("user.a"), b"2", XattrMode::Replace)
        .await
        .expect("replace");
    assert_eq!(b.getxattr(f.ino, os("user.a")).await.expect("get"), b"2");
    assert_eq!(
        b.listxattr(f.ino).await.expect("list"),
        vec![OsString::from("user.a")]
    );
    let big = vec![0u8; XATTR_SIZE_MAX + 1];
    let r = b.setxattr(f.ino, os("user.b"), &big, XattrMode::Any).await;
    assert!(matches!(r, Err(FsError::ValueTooBig)));
    b.removexattr(f.ino, os("user.a")).await.expect("remove");
    assert!(matches!(
        b.removexattr(f.ino, os("user.a")).await,
        Err(FsError::NoData)
    ));
}

#[tokio::test]
async fn readdir_resumes_after_a_name_in_byte_order() {
    let b = backend();
    for n in ["c", "a", "b", "d"] {
        new_file(&b, ROOT_INO, n).await;
    }
    let first = b.readdir(ROOT_INO, None, 2).await.expect("readdir");
    let names: Vec<_> = first.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["a", "b"]);
    b.unlink(ROOT_INO, os("b"))
        .await
        .expect("unlink the cursor's entry");
    let rest = b
        .readdir(ROOT_INO, Some(os("b")), 10)
        .await
        .expect("readdir");
    let names: Vec<_> = rest.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["c", "d"]);
}

#[tokio::test]
async fn symlinks_store_their_target() {
    let b = backend();
    let s = b
        .symlink(ROOT_INO, os("s"), os("../t"), ME)
        .await
        .expect("symlink");
    assert_eq!((s.kind, s.size), (FileType::Symlink, 4));
    assert_eq!(b.readlink(s.ino).await.expect("readlink"), "../t");
    assert!(matches!(
        b.readlink(ROOT_INO).await,
        Err(FsError::InvalidArgument)
    ));
    assert!(matches!(
        b.symlink(ROOT_INO, os("e"), os(""), ME).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn locks_conflict_between_owners_and_unlock_all_frees_them() {
    let b = backend();
    let (f, _) = new_file(&b, ROOT_INO, "f").await;
    let w = FileLock {
        start: 0,
        end: MAX_FILE_SIZE,
        kind: LockKind::Write,
        pid: 1,
    };
    b.setlk(f.ino, LockOwner(1), w).await.expect("lock");
    assert!(matches!(
        b.setlk(f.ino, LockOwner(2), w).await,
        Err(FsError::WouldBlock)
    ));
    let seen = b.getlk(f.ino, LockOwner(2), w).await.expect("getlk");
    assert_eq!(seen.map(|l| l.pid), Some(1));
    b.unlock_all(f.ino, LockOwner(1)).await.expect("unlock");
    b.setlk(f.ino, LockOwner(2), w).await.expect("free now");
}
