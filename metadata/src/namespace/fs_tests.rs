//! Unit tests of the filesystem operations: sessions and fencing, chunk reference counts
//! under overwrites and truncation, unlink of held inodes, rename rules, locks, special
//! files, and decoding state written by older versions.

use cairn_common::fs::{
    AttrChanges, ExtentMap, FileExtent, FsChange, FsErrorKind, FsQuery, FsReply, FsResult, NewNode,
    Special,
};
use cairn_common::locks::{FileLock, LockKind};
use cairn_common::{ChunkId, Redundancy};

use super::Command;
use super::*;

const EC: Redundancy = Redundancy::Ec { k: 2, m: 1 };

fn chunk(size: u64) -> (ChunkId, ChunkMeta) {
    (
        ChunkId::random(),
        ChunkMeta {
            size,
            redundancy: EC,
            shard_hashes: vec![Hash32([0; 32]); 3],
            shards: (0..3).map(|i| (i, i as u64 + 1)).collect(),
        },
    )
}

struct Fs {
    ns: Namespace,
    session: SessionId,
    bucket: Ino,
}

impl Fs {
    fn new() -> Fs {
        let mut ns = Namespace::new();
        for id in 1..=3 {
            ns.apply_and_write(Command::RegisterNode {
                id,
                addr: format!("127.0.0.{id}:1"),
                zone: "z".into(),
                disk: None,
                replace_empty: false,
            });
        }
        let session = match ns.apply_and_write(Command::OpenSession {
            name: "test".into(),
            now_ns: 1,
        }) {
            CommandResult::Fs(Ok(FsReply::Session { id, .. })) => id,
            other => panic!("{other:?}"),
        };
        let mut fs = Fs {
            ns,
            session,
            bucket: 0,
        };
        fs.bucket = fs.must_create(ROOT_INO, "bkt", NewNode::Dir);
        fs
    }

    fn change_as(&mut self, session: SessionId, change: FsChange) -> FsResult {
        match self.ns.apply_and_write(Command::Fs {
            session,
            change,
            now_ns: 10,
            seq: 0,
        }) {
            CommandResult::Fs(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn change(&mut self, change: FsChange) -> FsResult {
        self.change_as(self.session, change)
    }

    fn kind_of(&mut self, change: FsChange) -> FsErrorKind {
        self.change(change).expect_err("refused").kind
    }

    fn must_create(&mut self, parent: Ino, name: &str, node: NewNode) -> Ino {
        match self.change(FsChange::Create {
            parent,
            name: name.into(),
            node,
            mode: 0o644,
            uid: 0,
            gid: 0,
            hold: false,
        }) {
            Ok(FsReply::Attr(a)) => a.ino,
            other => panic!("{other:?}"),
        }
    }

    /// Writes `chunk` at `offset` (its whole length).
    fn write(&mut self, ino: Ino, offset: u64, chunk: (ChunkId, ChunkMeta)) -> FsResult {
        self.change(FsChange::Write {
            ino,
            extents: vec![FileExtent {
                offset,
                len: chunk.1.size,
                chunk: chunk.0,
                chunk_offset: 0,
            }],
            chunks: vec![chunk],
            size_at_least: 0,
        })
    }

    fn truncate(&mut self, ino: Ino, size: u64) {
        self.change(FsChange::SetAttr {
            ino,
            changes: AttrChanges {
                size: Some(size),
                ..AttrChanges::default()
            },
        })
        .expect("truncate");
    }

    fn gc_chunks(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self
            .ns
            .gc_entries(usize::MAX, |_| true)
            .into_iter()
            .map(|(_, e)| e.chunk)
            .collect();
        ids.dedup();
        ids
    }
}

#[test]
fn changes_from_a_session_that_ended_are_fenced() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    fs.ns.apply_and_write(Command::EndSession {
        session: fs.session,
    });
    let r = fs.write(ino, 0, chunk(10));
    assert_eq!(r.expect_err("fenced").kind, FsErrorKind::Fenced);
    let never_opened = fs.change_as(99, FsChange::Hold { ino });
    assert_eq!(never_opened.expect_err("fenced").kind, FsErrorKind::Fenced);
}

#[test]
fn overwrites_and_truncation_release_chunks_only_when_unreferenced() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let a = chunk(100);
    let b = chunk(10);
    let (a_id, b_id) = (a.0, b.0);
    fs.write(ino, 0, a).expect("write a");
    fs.write(ino, 40, b).expect("write b into the middle of a");
    assert!(
        fs.gc_chunks().is_empty(),
        "a is still used on both sides of b"
    );
    let map = fs.map(ino);
    let runs: Vec<(u64, u64, u64)> = map
        .extents
        .iter()
        .map(|e| (e.offset, e.len, e.chunk_offset))
        .collect();
    assert_eq!(runs, vec![(0, 40, 0), (40, 10, 0), (50, 50, 50)]);
    assert_eq!(map.chunks.len(), 2);

    fs.truncate(ino, 30);
    assert_eq!(fs.gc_chunks(), vec![b_id], "b is gone, a keeps its head");
    fs.truncate(ino, 0);
    let mut gone = fs.gc_chunks();
    gone.sort();
    let mut want = vec![a_id, b_id];
    want.sort();
    assert_eq!(gone, want);
}

#[test]
fn a_retried_write_applies_once() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let c = chunk(10);
    fs.write(ino, 0, c.clone()).expect("write");
    fs.write(ino, 0, c)
        .expect("the retry is answered as the first time");
    fs.truncate(ino, 0);
    assert_eq!(fs.gc_chunks().len(), 1, "one reference, released once");
}

#[test]
fn answers_are_kept_for_the_last_window_and_forgotten_from_the_session_floor() {
    use super::sessions::MAX_REMEMBERED_ANSWERS as WINDOW;
    let mut fs = Fs::new();
    let (session, bucket) = (fs.session, fs.bucket);
    let create = |fs: &mut Fs, seq: u64| {
        let change = FsChange::Create {
            parent: bucket,
            name: format!("f{seq}"),
            node: NewNode::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            hold: false,
        };
        match fs.ns.apply_and_write(Command::Fs {
            session,
            change,
            now_ns: 10,
            seq,
        }) {
            CommandResult::Fs(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let last = 3 * WINDOW;
    for seq in 1..=last {
        create(&mut fs, seq).expect("create");
    }
    let remembered = |fs: &Fs| -> Vec<u64> {
        fs.ns
            .answers
            .range(
                Bound::Included((session, 0)),
                Bound::Included((session, u64::MAX)),
            )
            .map(|((_, seq), _)| seq)
            .collect()
    };
    let floor = last - WINDOW;
    assert_eq!(remembered(&fs), (floor..=last).collect::<Vec<_>>());
    assert_eq!(fs.ns.sessions.get(&session).unwrap().answers_from, floor);
    // A retry inside the window gets its first answer; one outside applies again.
    create(&mut fs, last).expect("the retry is answered as the first time");
    let again = create(&mut fs, 10).expect_err("applied again");
    assert_eq!(again.kind, FsErrorKind::Exists);
    // Ending the session forgets the rest.
    fs.ns.apply_and_write(Command::EndSession { session });
    assert_eq!(remembered(&fs), Vec::<u64>::new());
}

#[test]
fn an_unlinked_file_lives_while_a_session_holds_it() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    fs.write(ino, 0, chunk(10)).expect("write");
    fs.change(FsChange::Hold { ino }).expect("hold");
    fs.change(FsChange::Unlink {
        parent: fs.bucket,
        name: "f".into(),
        dir: false,
    })
    .expect("unlink");
    assert!(fs.ns.fs_attr(ino).is_ok(), "held: still there");
    assert!(fs.gc_chunks().is_empty());
    fs.change(FsChange::Release { ino }).expect("release");
    assert!(fs.ns.fs_attr(ino).is_err(), "freed at the last release");
    assert_eq!(fs.gc_chunks().len(), 1);
}

#[test]
fn an_ended_session_frees_what_only_it_held_and_its_locks() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let lock = FileLock {
        start: 0,
        end: u64::MAX,
        kind: LockKind::Write,
        pid: 1,
    };
    fs.change(FsChange::SetLock {
        ino,
        owner: 7,
        lock,
    })
    .expect("lock");
    let other = match fs.ns.apply_and_write(Command::OpenSession {
        name: "other".into(),
        now_ns: 2,
    }) {
        CommandResult::Fs(Ok(FsReply::Session { id, .. })) => id,
        r => panic!("{r:?}"),
    };
    let busy = fs.change_as(
        other,
        FsChange::SetLock {
            ino,
            owner: 7,
            lock,
        },
    );
    assert_eq!(busy.expect_err("held").kind, FsErrorKind::WouldBlock);

    fs.change(FsChange::Hold { ino }).expect("hold");
    fs.change(FsChange::Unlink {
        parent: fs.bucket,
        name: "f".into(),
        dir: false,
    })
    .expect("unlink");
    fs.ns.apply_and_write(Command::EndSession {
        session: fs.session,
    });
    assert!(
        fs.ns.fs_attr(ino).is_err(),
        "the orphan went with its session"
    );
    let ino2 = {
        fs.session = other;
        fs.must_create(fs.bucket, "g", NewNode::File)
    };
    fs.change(FsChange::SetLock {
        ino: ino2,
        owner: 7,
        lock,
    })
    .expect("locks of the ended session are gone");
}

#[test]
fn rename_rules() {
    let mut fs = Fs::new();
    let b = fs.bucket;
    let d = fs.must_create(b, "d", NewNode::Dir);
    let sub = fs.must_create(d, "sub", NewNode::Dir);
    fs.must_create(sub, "x", NewNode::File);
    let e = fs.must_create(b, "e", NewNode::Dir);
    let other_bucket = fs.must_create(ROOT_INO, "other", NewNode::Dir);
    let rename = |parent, name: &str, new_parent, new_name: &str| FsChange::Rename {
        parent,
        name: name.into(),
        new_parent,
        new_name: new_name.into(),
        noreplace: false,
        exchange: false,
    };
    assert_eq!(
        fs.kind_of(rename(b, "d", sub, "d2")),
        FsErrorKind::InvalidArgument,
        "into its own subtree"
    );
    assert_eq!(
        fs.kind_of(rename(b, "e", b, "d")),
        FsErrorKind::NotEmpty,
        "onto a non-empty directory"
    );
    assert_eq!(
        fs.kind_of(rename(b, "d", other_bucket, "d")),
        FsErrorKind::CrossDevice
    );
    assert_eq!(
        fs.kind_of(rename(ROOT_INO, "bkt", ROOT_INO, "renamed")),
        FsErrorKind::NotPermitted
    );
    fs.change(rename(d, "sub", e, "moved"))
        .expect("a plain move");
    let attr = fs.ns.fs_attr(e).expect("e");
    assert_eq!(attr.nlink, 3, "e gained a subdirectory");
}

#[test]
fn the_root_holds_only_buckets() {
    let mut fs = Fs::new();
    let file_at_root = fs.change(FsChange::Create {
        parent: ROOT_INO,
        name: "file".into(),
        node: NewNode::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        hold: false,
    });
    assert_eq!(
        file_at_root.expect_err("refused").kind,
        FsErrorKind::NotPermitted
    );
    let bad_name = fs.change(FsChange::Create {
        parent: ROOT_INO,
        name: "Not_A_Bucket".into(),
        node: NewNode::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        hold: false,
    });
    assert_eq!(
        bad_name.expect_err("refused").kind,
        FsErrorKind::InvalidArgument
    );
    assert!(
        fs.ns.bucket("bkt").is_ok(),
        "mkdir at the root made a bucket"
    );
}

#[test]
fn deleting_one_name_of_a_hard_linked_object_keeps_the_other() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "a", NewNode::File);
    fs.write(ino, 0, chunk(10)).expect("write");
    fs.change(FsChange::Link {
        ino,
        parent: fs.bucket,
        name: "b".into(),
    })
    .expect("link");
    fs.ns.apply_and_write(Command::DeleteObject {
        bucket: "bkt".into(),
        key: "a".into(),
        if_generation: None,
        mtime: 3,
    });
    let view = fs.ns.lookup("bkt", "b").expect("b still there");
    assert_eq!(view.entry.size, 10);
    assert!(fs.gc_chunks().is_empty());
}

#[test]
fn special_files_keep_their_type_and_device_and_have_no_content() {
    let mut fs = Fs::new();
    let b = fs.bucket;
    let kinds = [
        ("fifo", Special::Fifo),
        ("sock", Special::Socket),
        ("chr", Special::CharDevice { rdev: 0x1234_5678 }),
        ("blk", Special::BlockDevice { rdev: 0x801 }),
    ];
    for (name, special) in kinds {
        let ino = fs.must_create(b, name, NewNode::Special(special));
        let attr = fs.ns.fs_attr(ino).expect("attr");
        assert_eq!(
            (attr.kind, attr.rdev, attr.mode, attr.size, attr.nlink),
            (special.file_type(), special.rdev(), 0o644, 0, 1),
            "{name}"
        );
        assert_eq!(
            fs.kind_of(FsChange::SetAttr {
                ino,
                changes: AttrChanges {
                    size: Some(0),
                    ..AttrChanges::default()
                },
            }),
            FsErrorKind::InvalidArgument,
            "{name}: truncate"
        );
        assert_eq!(
            fs.kind_of(FsChange::Hold { ino }),
            FsErrorKind::IsDir,
            "{name}: only regular files are opened"
        );
        assert_eq!(
            fs.write(ino, 0, chunk(10)).expect_err("refused").kind,
            FsErrorKind::IsDir,
            "{name}: a write"
        );
        // Invisible to the object API, as symlinks are.
        assert!(matches!(
            fs.ns.lookup("bkt", name),
            Err(NamespaceError::NoSuchKey { .. })
        ));
    }
    match fs.ns.fs_query(
        fs.session,
        FsQuery::ReadDir {
            ino: b,
            after: None,
            limit: 10,
        },
    ) {
        Ok(FsReply::Entries(entries)) => {
            let listed: Vec<(String, cairn_common::fs::FileType)> =
                entries.into_iter().map(|e| (e.name, e.kind)).collect();
            let mut wanted: Vec<(String, cairn_common::fs::FileType)> = kinds
                .iter()
                .map(|(n, s)| (n.to_string(), s.file_type()))
                .collect();
            wanted.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(listed, wanted);
        }
        other => panic!("{other:?}"),
    }
    // Links and unlinks count as for files; the last name frees the inode.
    let chr = match fs.ns.fs_query(
        fs.session,
        FsQuery::Lookup {
            parent: b,
            name: "chr".into(),
        },
    ) {
        Ok(FsReply::Attr(a)) => a.ino,
        other => panic!("{other:?}"),
    };
    fs.change(FsChange::Link {
        ino: chr,
        parent: b,
        name: "chr2".into(),
    })
    .expect("link");
    assert_eq!(fs.ns.fs_attr(chr).expect("attr").nlink, 2);
    for name in ["chr", "chr2"] {
        fs.change(FsChange::Unlink {
            parent: b,
            name: name.into(),
            dir: false,
        })
        .expect("unlink");
    }
    assert_eq!(
        fs.ns.fs_attr(chr).expect_err("freed").kind,
        FsErrorKind::NotFound
    );
}

/// The namespace is in the Raft log and in snapshots as JSON: what was written before
/// special files existed still decodes, and special files survive a snapshot.
#[test]
fn older_log_entries_and_snapshots_decode_and_special_files_survive_a_snapshot() {
    let old_entry = r#"{"Fs":{"session":1,"change":{"Create":{"parent":2,"name":"f","node":"File","mode":420,"uid":0,"gid":0,"hold":false}},"now_ns":5}}"#;
    let command: Command = serde_json::from_str(old_entry).expect("an old log entry decodes");
    assert!(matches!(command, Command::Fs { .. }));
    let old_inode = r#"{"kind":{"Symlink":{"target":"t"}},"mtime_ns":1,"atime_ns":1,"ctime_ns":1,"generation":3,"mode":511,"uid":0,"gid":0,"nlink":1,"bucket":2,"xattrs":{}}"#;
    let inode: Inode = serde_json::from_str(old_inode).expect("an old inode decodes");
    assert_eq!(inode.kind.rdev(), 0);

    let mut fs = Fs::new();
    let b = fs.bucket;
    let ino = fs.must_create(
        b,
        "blk",
        NewNode::Special(Special::BlockDevice { rdev: 0x801 }),
    );
    fs.ns.write_pending();
    let back = Namespace::open(fs.ns.db().clone());
    let attr = back.fs_attr(ino).expect("still there");
    assert_eq!(
        (attr.kind, attr.rdev),
        (cairn_common::fs::FileType::BlockDevice, 0x801)
    );
}

impl Fs {
    fn write_inline(&mut self, ino: Ino, offset: u64, data: &[u8]) -> FsResult {
        self.change(FsChange::WriteInline {
            ino,
            runs: vec![cairn_common::fs::InlineRun {
                offset,
                data: data.to_vec(),
            }],
            size_at_least: 0,
        })
    }

    fn map(&self, ino: Ino) -> ExtentMap {
        let read = self.ns.fs_query(
            self.session,
            FsQuery::Extents {
                ino,
                offset: 0,
                len: u64::MAX,
            },
        );
        let Ok(FsReply::Extents(map)) = read else {
            panic!("{read:?}")
        };
        *map
    }

    /// (offset, len) of each extent.
    fn runs(&self, ino: Ino) -> Vec<(u64, u64)> {
        self.map(ino)
            .extents
            .iter()
            .map(|e| (e.offset, e.len))
            .collect()
    }
}

#[test]
fn inline_bytes_are_the_content_under_the_extents_and_counted_against_the_budget() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let attr = fs.write_inline(ino, 0, b"hello").expect("inline write");
    let FsReply::Attr(attr) = attr else {
        panic!("{attr:?}")
    };
    assert_eq!(attr.size, 5);
    fs.write_inline(ino, 8, b"world")
        .expect("a second run past a gap");
    let map = fs.map(ino);
    assert_eq!(map.inline, b"hello\0\0\0world");
    assert_eq!(map.attr.size, 13);
    assert!(map.extents.is_empty());
    assert_eq!(map.inline_max, DEFAULT_INLINE_MAX_BYTES);
    assert_eq!(fs.ns.inline_bytes_used(), 13);

    // A chunk write lies over part of the inline bytes; they stay under it.
    let a = chunk(4);
    let a_id = a.0;
    fs.write(ino, 2, a).expect("chunk write");
    assert_eq!(fs.runs(ino), vec![(2, 4)]);
    assert_eq!(fs.map(ino).inline.len(), 13);
    // An inline write over the chunk cuts it; what it no longer covers is released.
    fs.write_inline(ino, 0, b"HELLO!")
        .expect("inline over the chunk");
    assert!(fs.runs(ino).is_empty(), "the chunk's run is covered");
    assert_eq!(fs.gc_chunks(), vec![a_id]);
    assert_eq!(fs.map(ino).inline, b"HELLO!\0\0world");

    // A truncation cuts the inline bytes; growing again leaves a hole.
    fs.truncate(ino, 3);
    fs.truncate(ino, 20);
    let map = fs.map(ino);
    assert_eq!(map.inline, b"HEL");
    assert_eq!(map.attr.size, 20);
    assert_eq!(fs.ns.inline_bytes_used(), 3);

    // Extents covering every inline byte drop them: the file moved to chunks.
    fs.write(ino, 0, chunk(20))
        .expect("chunk write over everything");
    assert!(fs.map(ino).inline.is_empty());
    assert_eq!(fs.ns.inline_bytes_used(), 0);

    // Unlinking a file frees its inline bytes.
    let g = fs.must_create(fs.bucket, "g", NewNode::File);
    fs.write_inline(g, 0, &[7; 100]).expect("inline write");
    assert_eq!(fs.ns.inline_bytes_used(), 100);
    fs.change(FsChange::Unlink {
        parent: fs.bucket,
        name: "g".into(),
        dir: false,
    })
    .expect("unlink");
    assert_eq!(fs.ns.inline_bytes_used(), 0);
    assert!(fs.ns.inline_of(g).is_empty());
}

#[test]
fn inline_writes_past_the_threshold_or_the_budget_are_refused_as_not_inline() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let max = DEFAULT_INLINE_MAX_BYTES;
    let past = vec![1u8; 2];
    assert_eq!(
        fs.change(FsChange::WriteInline {
            ino,
            runs: vec![cairn_common::fs::InlineRun {
                offset: max - 1,
                data: past,
            }],
            size_at_least: 0,
        })
        .expect_err("past the threshold")
        .kind,
        FsErrorKind::NotInline
    );
    assert_eq!(
        fs.ns
            .apply_and_write(Command::SetInlineLimits(InlineLimits {
                max_bytes: 1000,
                budget_bytes: 150,
            })),
        CommandResult::Done
    );
    fs.write_inline(ino, 0, &[1; 100])
        .expect("within the budget");
    let g = fs.must_create(fs.bucket, "g", NewNode::File);
    assert_eq!(
        fs.write_inline(g, 0, &[1; 51])
            .expect_err("past the budget")
            .kind,
        FsErrorKind::NotInline
    );
    fs.write_inline(g, 0, &[1; 50]).expect("exactly the budget");
    fs.write_inline(ino, 0, &[2; 100])
        .expect("an overwrite within a file's inline bytes needs no room");
    assert_eq!(
        fs.write_inline(ino, 1000, &[1])
            .expect_err("past the new threshold")
            .kind,
        FsErrorKind::NotInline
    );
    assert!(matches!(
        fs.ns
            .apply_and_write(Command::SetInlineLimits(InlineLimits {
                max_bytes: cairn_common::fs::INLINE_MAX_LIMIT + 1,
                budget_bytes: 1,
            })),
        CommandResult::Rejected(NamespaceError::InvalidSetting { .. })
    ));
    let dir = fs.must_create(fs.bucket, "d", NewNode::Dir);
    assert_eq!(
        fs.write_inline(dir, 0, b"x").expect_err("a directory").kind,
        FsErrorKind::IsDir
    );
    assert_eq!(
        fs.kind_of(FsChange::WriteInline {
            ino,
            runs: vec![],
            size_at_least: 0
        }),
        FsErrorKind::InvalidArgument
    );
}

#[test]
fn an_object_lookup_carries_the_inline_bytes_and_a_new_version_drops_them() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    fs.write_inline(ino, 0, b"small").expect("inline write");
    let view = fs.ns.lookup("bkt", "f").expect("lookup");
    assert_eq!(view.inline, b"small");
    assert_eq!(view.entry.size, 5);
    let c = chunk(3);
    let committed = fs.ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: "f".into(),
        size: 3,
        chunks: vec![c],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 1,
    });
    assert!(matches!(committed, CommandResult::Committed { .. }));
    assert!(fs.ns.lookup("bkt", "f").expect("lookup").inline.is_empty());
    assert_eq!(fs.ns.inline_bytes_used(), 0);
}

#[test]
fn a_punched_hole_reads_as_zeros_keeps_the_size_and_releases_chunks_no_longer_used() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let (a, b) = (chunk(100), chunk(50));
    let (a_id, b_id) = (a.0, b.0);
    fs.write(ino, 0, a).expect("write a");
    fs.write(ino, 100, b).expect("write b");
    let generation = fs.map(ino).attr.generation;

    // Into the middle of a: a stays, cut in two.
    let punched = fs.change(FsChange::PunchHole {
        ino,
        offset: 10,
        len: 20,
    });
    let Ok(FsReply::Attr(attr)) = punched else {
        panic!("{punched:?}")
    };
    assert_eq!(attr.size, 150, "the size does not change");
    assert!(attr.generation > generation, "the content changed");
    assert_eq!(fs.runs(ino), vec![(0, 10), (30, 70), (100, 50)]);
    assert!(fs.gc_chunks().is_empty());

    // Over all of b and past the end of file: b is released, the size stays.
    fs.change(FsChange::PunchHole {
        ino,
        offset: 90,
        len: u64::MAX,
    })
    .expect("punch to the end");
    assert_eq!(fs.runs(ino), vec![(0, 10), (30, 60)]);
    assert_eq!(fs.map(ino).attr.size, 150);
    assert_eq!(fs.gc_chunks(), vec![b_id]);

    // The same punch again changes nothing; a punch past the end is nothing.
    fs.change(FsChange::PunchHole {
        ino,
        offset: 90,
        len: u64::MAX,
    })
    .expect("again");
    fs.change(FsChange::PunchHole {
        ino,
        offset: 1000,
        len: 10,
    })
    .expect("past the end");
    assert_eq!(fs.runs(ino), vec![(0, 10), (30, 60)]);

    // The rest of a: released too.
    fs.change(FsChange::PunchHole {
        ino,
        offset: 0,
        len: 100,
    })
    .expect("punch the rest");
    assert!(fs.runs(ino).is_empty());
    let mut gone = fs.gc_chunks();
    gone.sort();
    let mut want = vec![a_id, b_id];
    want.sort();
    assert_eq!(gone, want);

    // Inline bytes: zeroed inside, cut at their end.
    let g = fs.must_create(fs.bucket, "g", NewNode::File);
    fs.write_inline(g, 0, b"abcdefgh").expect("inline");
    fs.change(FsChange::PunchHole {
        ino: g,
        offset: 2,
        len: 3,
    })
    .expect("inside");
    assert_eq!(fs.map(g).inline, b"ab\0\0\0fgh");
    fs.change(FsChange::PunchHole {
        ino: g,
        offset: 6,
        len: 10,
    })
    .expect("to the end");
    let map = fs.map(g);
    assert_eq!(map.inline, b"ab\0\0\0f");
    assert_eq!(map.attr.size, 8);
    assert_eq!(fs.ns.inline_bytes_used(), 6);

    let dir = fs.must_create(fs.bucket, "d", NewNode::Dir);
    let refused = fs.kind_of(FsChange::PunchHole {
        ino: dir,
        offset: 0,
        len: 1,
    });
    assert_eq!(refused, FsErrorKind::IsDir);
}

#[test]
fn a_clone_shares_the_chunks_until_the_last_file_drops_them() {
    let mut fs = Fs::new();
    let ino = fs.must_create(fs.bucket, "f", NewNode::File);
    let a = chunk(100);
    let a_id = a.0;
    fs.write(ino, 0, a).expect("write a");
    fs.write_inline(ino, 0, b"hi").expect("inline under a");
    let other = fs.must_create(ROOT_INO, "other", NewNode::Dir);
    let clone = |src, parent, name: &str| FsChange::CloneFile {
        src,
        parent,
        name: name.into(),
        mode: 0o600,
        uid: 0,
        gid: 0,
    };
    let cloned = fs.change(clone(ino, other, "copy"));
    let Ok(FsReply::Attr(attr)) = cloned else {
        panic!("{cloned:?}")
    };
    let copy = attr.ino;
    assert_eq!(attr.size, 100);
    assert_eq!(fs.runs(copy), fs.runs(ino));
    assert_eq!(fs.map(copy).inline, b"hi");

    // The copies diverge; the chunk lives while either points into it.
    fs.truncate(ino, 0);
    assert!(fs.gc_chunks().is_empty(), "the clone still uses a");
    assert_eq!(fs.map(ino).attr.size, 0);
    assert_eq!(fs.map(copy).attr.size, 100);
    fs.change(FsChange::Unlink {
        parent: other,
        name: "copy".into(),
        dir: false,
    })
    .expect("unlink the clone");
    assert_eq!(fs.gc_chunks(), vec![a_id]);

    let dir = fs.must_create(fs.bucket, "d", NewNode::Dir);
    assert_eq!(fs.kind_of(clone(dir, other, "x")), FsErrorKind::IsDir);
    assert_eq!(
        fs.kind_of(clone(ino, ROOT_INO, "x")),
        FsErrorKind::NotPermitted
    );
    fs.must_create(other, "taken", NewNode::File);
    assert_eq!(fs.kind_of(clone(ino, other, "taken")), FsErrorKind::Exists);
}

/// A state restored from a backup ends every session (an unlinked file a session held
/// goes with it), fences those sessions for good, and hands out no session or inode id
/// that a mount could have been given after the backup.
#[test]
fn a_restored_state_ends_every_session_and_skips_ids_handed_out_after_the_backup() {
    let mut fs = Fs::new();
    let held = fs.must_create(fs.bucket, "held", NewNode::File);
    fs.change(FsChange::Hold { ino: held }).expect("hold");
    fs.change(FsChange::Unlink {
        parent: fs.bucket,
        name: "held".into(),
        dir: false,
    })
    .expect("unlink");
    let kept = fs.must_create(fs.bucket, "kept", NewNode::File);
    let old_session = fs.session;

    assert_eq!(fs.ns.prepare_restored(), 1);
    fs.ns.write_pending();
    assert!(!fs.ns.session_is_open(old_session));
    assert!(fs.ns.fs_attr(held).is_err(), "the held orphan is freed");
    assert!(fs.ns.fs_attr(kept).is_ok(), "files stay");
    let refused = fs.change(FsChange::Hold { ino: kept });
    assert_eq!(refused.expect_err("fenced").kind, FsErrorKind::Fenced);

    fs.session = match fs.ns.apply_and_write(Command::OpenSession {
        name: "after".into(),
        now_ns: 3,
    }) {
        CommandResult::Fs(Ok(FsReply::Session { id, .. })) => id,
        r => panic!("{r:?}"),
    };
    assert!(fs.session > old_session + sessions::RESTORE_ID_GAP - 1);
    let new = fs.must_create(fs.bucket, "new", NewNode::File);
    assert!(
        new > kept + sessions::RESTORE_ID_GAP - 1,
        "{new} after {kept}"
    );
}
