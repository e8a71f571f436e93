//! Property tests of the state machine under arbitrary filesystem commands: a command
//! comes from the network, and a panic in apply would repeat on every replica and at
//! every replay of the log, so random sequences of changes (valid or not, from open and
//! fenced sessions) must never panic and must keep the namespace's invariants: every
//! directory entry names an inode, a file's link count is its number of entries (or 0
//! while held), extents are sorted and disjoint and every chunk they use exists with a
//! reference count equal to its uses; inline bytes belong to live files, within their
//! size and the threshold, and their count is their sum.

use std::collections::BTreeMap;

use cairn_common::fs::{AttrChanges, FileExtent, FsChange, InlineRun, NewNode, Special, XattrMode};
use cairn_common::locks::{FileLock, LockKind};
use cairn_common::{ChunkId, Redundancy};
use proptest::prelude::*;

use super::Command;
use super::*;

const NAMES: &[&str] = &["a", "b", "c", "dir", "x"];

fn chunk_meta(size: u64, shards: u32) -> ChunkMeta {
    ChunkMeta {
        size,
        redundancy: Redundancy::Ec { k: 2, m: 1 },
        shard_hashes: vec![Hash32([7; 32]); 3],
        shards: (0..shards).map(|i| (i, u64::from(i) + 1)).collect(),
    }
}

fn change() -> impl Strategy<Value = FsChange> {
    let ino = || 1u64..24;
    let name = || prop::sample::select(NAMES).prop_map(str::to_string);
    let node = prop_oneof![
        Just(NewNode::File),
        Just(NewNode::Dir),
        Just(NewNode::Symlink { target: "t".into() }),
        Just(NewNode::Special(Special::Fifo)),
        any::<u32>().prop_map(|rdev| NewNode::Special(Special::CharDevice { rdev })),
    ];
    prop_oneof![
        (ino(), name(), node, any::<bool>()).prop_map(|(parent, name, node, hold)| {
            FsChange::Create {
                parent,
                name,
                node,
                mode: 0o644,
                uid: 1,
                gid: 1,
                hold,
            }
        }),
        (ino(), ino(), name()).prop_map(|(ino, parent, name)| FsChange::Link { ino, parent, name }),
        (ino(), name(), any::<bool>()).prop_map(|(parent, name, dir)| FsChange::Unlink {
            parent,
            name,
            dir
        }),
        (ino(), name(), ino(), name(), any::<bool>(), any::<bool>()).prop_map(
            |(parent, name, new_parent, new_name, noreplace, exchange)| FsChange::Rename {
                parent,
                name,
                new_parent,
                new_name,
                noreplace,
                exchange,
            }
        ),
        (ino(), prop::option::of(0u64..50_000)).prop_map(|(ino, size)| FsChange::SetAttr {
            ino,
            changes: AttrChanges {
                size,
                mode: Some(0o600),
                ..AttrChanges::default()
            },
        }),
        // Writes: runs into one or two new chunks, sometimes out of range, sometimes
        // naming a chunk the write does not carry, sometimes not durable enough.
        (
            ino(),
            prop::collection::vec((0u64..40_000, 0u64..5_000, 0u64..6_000, 0usize..3), 0..4),
            1u64..6_000,
            1u32..4,
        )
            .prop_map(|(ino, runs, size, shards)| {
                let ids = [ChunkId::random(), ChunkId::random(), ChunkId::random()];
                FsChange::Write {
                    ino,
                    extents: runs
                        .into_iter()
                        .map(|(offset, len, chunk_offset, c)| FileExtent {
                            offset,
                            len,
                            chunk: ids[c],
                            chunk_offset,
                        })
                        .collect(),
                    chunks: vec![
                        (ids[0], chunk_meta(size, shards)),
                        (ids[1], chunk_meta(size / 2 + 1, 3)),
                    ],
                    size_at_least: 0,
                }
            }),
        (
            ino(),
            any::<u64>(),
            prop::collection::vec((0u64..40_000, 1u64..3_000), 0..3)
        )
            .prop_map(|(ino, generation, runs)| {
                let id = ChunkId::random();
                FsChange::Compact {
                    ino,
                    generation: generation % 64,
                    extents: runs
                        .into_iter()
                        .map(|(offset, len)| FileExtent {
                            offset,
                            len,
                            chunk: id,
                            chunk_offset: 0,
                        })
                        .collect(),
                    chunks: vec![(id, chunk_meta(4_000, 3))],
                }
            }),
        (ino(), name()).prop_map(|(ino, name)| FsChange::SetXattr {
            ino,
            name,
            value: vec![1, 2, 3],
            mode: XattrMode::Any,
        }),
        (
            ino(),
            prop::collection::vec((0u64..70_000, 1usize..3_000), 0..3),
            0u64..80_000
        )
            .prop_map(|(ino, runs, size_at_least)| FsChange::WriteInline {
                ino,
                runs: runs
                    .into_iter()
                    .map(|(offset, len)| InlineRun {
                        offset,
                        data: vec![offset as u8; len],
                    })
                    .collect(),
                size_at_least,
            }),
        (ino(), 0u64..80_000, 0u64..80_000).prop_map(|(ino, offset, len)| FsChange::PunchHole {
            ino,
            offset,
            len
        }),
        (ino(), ino(), name()).prop_map(|(src, parent, name)| FsChange::CloneFile {
            src,
            parent,
            name,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }),
        ino().prop_map(|ino| FsChange::Hold { ino }),
        ino().prop_map(|ino| FsChange::Release { ino }),
        (ino(), 0u64..3, 0u64..100, 0u64..100).prop_map(|(ino, owner, start, end)| {
            FsChange::SetLock {
                ino,
                owner,
                lock: FileLock {
                    start,
                    end,
                    kind: LockKind::Write,
                    pid: 1,
                },
            }
        }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Change { session: u64, change: FsChange },
    EndSession(u64),
    DeleteObject(String),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (1u64..4, change()).prop_map(|(session, change)| Step::Change { session, change }),
        1 => (1u64..4).prop_map(Step::EndSession),
        1 => prop::sample::select(NAMES).prop_map(|n| Step::DeleteObject(n.to_string())),
    ]
}

fn check_invariants(ns: &Namespace) {
    let mut entries: BTreeMap<Ino, u32> = BTreeMap::new();
    for ((dir, name), ino) in ns.children.iter() {
        assert!(
            ns.inodes.get(&dir).is_some_and(|d| d.kind.is_dir()),
            "entry {name:?} of a missing directory {dir}"
        );
        assert!(
            ns.inodes.contains_key(&ino),
            "{dir}/{name} names missing inode {ino}"
        );
        *entries.entry(ino).or_default() += 1;
    }
    let mut uses: BTreeMap<ChunkId, u32> = BTreeMap::new();
    for (ino, inode) in ns.inodes.iter() {
        let ino = &ino;
        match &inode.kind {
            InodeKind::Dir { .. } => {
                let subdirs = ns
                    .entries_from(*ino, std::ops::Bound::Unbounded)
                    .filter(|(_, i)| ns.inodes.get(i).is_some_and(|n| n.kind.is_dir()))
                    .count() as u32;
                assert_eq!(
                    inode.nlink,
                    2 + subdirs,
                    "directory {ino}: 2 + subdirectories"
                );
                if *ino != ROOT_INO {
                    assert_eq!(entries.get(ino), Some(&1), "directory {ino} has one entry");
                }
            }
            InodeKind::File { extents, size, .. } => {
                let linked = entries.get(ino).copied().unwrap_or(0);
                assert_eq!(inode.nlink, linked, "file {ino}: nlink counts its entries");
                if linked == 0 {
                    assert!(
                        ns.holds.get(ino).is_some_and(|h| !h.is_empty()),
                        "an unlinked file {ino} lives only while held"
                    );
                }
                for pair in extents.windows(2) {
                    assert!(
                        pair[0].end() <= pair[1].offset,
                        "file {ino}: extents overlap"
                    );
                }
                if let Some(last) = extents.last() {
                    assert!(last.end() <= *size, "file {ino}: extent past the size");
                }
                for e in extents {
                    assert!(e.len > 0);
                    let chunk = ns.chunks.get(&e.chunk).expect("an extent's chunk exists");
                    assert!(
                        e.chunk_offset + e.len <= chunk.size,
                        "extent inside its chunk"
                    );
                    *uses.entry(e.chunk).or_default() += 1;
                }
            }
            InodeKind::Symlink { .. } | InodeKind::Special(_) => {
                assert_eq!(inode.nlink, entries.get(ino).copied().unwrap_or(0));
            }
        }
    }
    let mut inline_bytes = 0;
    for (ino, bytes) in ns.inline.iter() {
        let inode = ns.inodes.get(&ino).expect("inline bytes of a live inode");
        let InodeKind::File { size, .. } = inode.kind else {
            panic!("inline bytes of inode {ino}, not a file");
        };
        assert!(
            !bytes.is_empty(),
            "file {ino}: empty inline bytes are absent"
        );
        assert!(
            bytes.len() as u64 <= size,
            "file {ino}: inline bytes past the size"
        );
        assert!(bytes.len() as u64 <= ns.inline_limits().max_bytes);
        inline_bytes += bytes.len() as u64;
    }
    assert_eq!(ns.inline_bytes_used(), inline_bytes, "the budget's count");
    let refs: BTreeMap<ChunkId, u32> = ns.chunk_refs.iter().collect();
    assert_eq!(uses, refs, "reference counts equal the extents' uses");
    for (id, _) in ns.chunks.iter() {
        assert!(
            uses.contains_key(&id),
            "chunk {id} is referenced by an extent"
        );
    }
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise (longer runs: TESTING.md).
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_filesystem_commands_keep_the_invariants(steps in prop::collection::vec(step(), 1..60)) {
        let mut ns = Namespace::new();
        for id in 1..=3 {
            ns.apply(Command::RegisterNode { id, addr: format!("127.0.0.{id}:1"), zone: "z".into(), disk: None, replace_empty: false });
        }
        for name in ["s1", "s2", "s3"] {
            ns.apply(Command::OpenSession { name: name.into(), now_ns: 1 });
        }
        ns.apply(Command::CreateBucket { name: "bkt".into(), redundancy: Redundancy::Ec { k: 2, m: 1 }, mtime: 1 });
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Change { session, change } => {
                    // Every fifth change is also retried (a lost reply): same number, same
                    // answer, applied once.
                    let seq = i as u64 + 1;
                    let retried = i % 5 == 0 && change.needs_first_answer();
                    let fs = |change| Command::Fs { session, change, now_ns: 5, seq };
                    let first = ns.apply(fs(change.clone()));
                    if retried {
                        check_invariants(&ns);
                        prop_assert_eq!(ns.apply(fs(change)), first);
                    }
                }
                Step::EndSession(session) => {
                    ns.apply(Command::EndSession { session });
                }
                Step::DeleteObject(key) => {
                    ns.apply(Command::DeleteObject { bucket: "bkt".into(), key, if_generation: None, mtime: 2 });
                }
            }
            check_invariants(&ns);
            // Commands go to the database in batches of varying size, as openraft hands
            // them to the state machine: the invariants hold on both sides of a write.
            if i % 3 == 2 {
                ns.write_pending();
                check_invariants(&ns);
            }
        }
        ns.write_pending();
        let digest = ns.state_digest();
        let mut reopened = Namespace::open(ns.db().clone());
        check_invariants(&reopened);
        prop_assert_eq!(reopened.state_digest(), digest);
    }
}
