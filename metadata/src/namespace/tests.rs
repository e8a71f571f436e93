//! Unit tests of the namespace: apply commands, check queries.

use super::Command;
use super::*;
use cairn_common::{ChunkId, DiskId, NodeId, Redundancy};

const EC: Redundancy = Redundancy::Ec { k: 2, m: 1 };

fn ns_with_bucket() -> Namespace {
    let mut ns = Namespace::new();
    let r = ns.apply_and_write(Command::CreateBucket {
        name: "bkt".into(),
        redundancy: EC,
        mtime: 1,
    });
    assert_eq!(r, CommandResult::Done);
    ns
}

fn chunk(size: u64, shards: u32) -> (ChunkId, ChunkMeta) {
    (
        ChunkId::random(),
        ChunkMeta {
            size,
            redundancy: EC,
            shard_hashes: vec![Hash32([0; 32]); 3],
            shards: (0..shards).map(|i| (i, i as u64 + 1)).collect(),
        },
    )
}

fn put(ns: &mut Namespace, key: &str, size: u64) -> CommandResult {
    ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: key.into(),
        size,
        chunks: if size == 0 {
            vec![]
        } else {
            vec![chunk(size, 3)]
        },
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 2,
    })
}

fn keys(ns: &Namespace, prefix: &str, after: &str, limit: usize) -> (Vec<String>, bool) {
    let page = ns
        .list(
            "bkt",
            &ListQuery {
                prefix,
                start_after: after,
                limit,
                ..ListQuery::default()
            },
        )
        .unwrap();
    (
        page.objects.into_iter().map(|e| e.key).collect(),
        page.truncated,
    )
}

#[test]
fn put_then_lookup_returns_the_chunks() {
    let mut ns = ns_with_bucket();
    assert!(matches!(
        put(&mut ns, "a/b/c", 10),
        CommandResult::Committed { .. }
    ));
    let view = ns.lookup("bkt", "a/b/c").unwrap();
    assert_eq!(view.entry.size, 10);
    assert_eq!(view.chunks.len(), 1);
    assert!(matches!(
        ns.lookup("bkt", "a/b"),
        Err(NamespaceError::IsDirectory { .. })
    ));
    assert!(matches!(
        ns.lookup("bkt", "nope"),
        Err(NamespaceError::NoSuchKey { .. })
    ));
    assert!(matches!(
        ns.lookup("nob", "x"),
        Err(NamespaceError::NoSuchBucket { .. })
    ));
}

#[test]
fn overwrite_queues_old_shards_for_gc_and_bumps_generation() {
    let mut ns = ns_with_bucket();
    let CommandResult::Committed { generation: g1 } = put(&mut ns, "k", 5) else {
        panic!()
    };
    let CommandResult::Committed { generation: g2 } = put(&mut ns, "k", 6) else {
        panic!()
    };
    assert!(g2 > g1);
    assert_eq!(ns.counts().pending_gc, 3);
    assert_eq!(ns.counts().chunks, 1);
    assert_eq!(ns.lookup("bkt", "k").unwrap().entry.size, 6);
}

#[test]
fn recommitting_the_same_chunks_is_idempotent() {
    let mut ns = ns_with_bucket();
    let c = chunk(10, 3);
    let commit = Command::CommitObject {
        bucket: "bkt".into(),
        key: "k".into(),
        size: 10,
        chunks: vec![c],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 0,
    };
    let first = ns.apply_and_write(commit.clone());
    assert!(matches!(first, CommandResult::Committed { .. }));
    assert_eq!(ns.apply_and_write(commit), first);
    assert_eq!(ns.counts().pending_gc, 0);
}

#[test]
fn file_and_directory_cannot_share_a_name() {
    let mut ns = ns_with_bucket();
    put(&mut ns, "a/b", 1);
    let before = ns.state_digest();
    assert!(matches!(
        put(&mut ns, "a/b/c", 1),
        CommandResult::Rejected(NamespaceError::NotDirectory { .. })
    ));
    assert!(matches!(
        put(&mut ns, "a", 1),
        CommandResult::Rejected(NamespaceError::IsDirectory { .. })
    ));
    assert_eq!(ns.state_digest(), before, "rejected commits change nothing");
}

#[test]
fn delete_removes_empty_implicit_directories() {
    let mut ns = ns_with_bucket();
    put(&mut ns, "x/y/z", 1);
    put(&mut ns, "x/keep", 1);
    ns.apply_and_write(Command::DeleteObject {
        mtime: 0,
        bucket: "bkt".into(),
        key: "x/y/z".into(),
        if_generation: None,
    });
    assert_eq!(keys(&ns, "", "", 10).0, vec!["x/keep"]);
    assert!(ns.lookup("bkt", "x/y").is_err());
    ns.apply_and_write(Command::DeleteObject {
        mtime: 0,
        bucket: "bkt".into(),
        key: "x/keep".into(),
        if_generation: None,
    });
    assert_eq!(ns.counts().objects, 0);
    assert!(ns.dir_is_empty(ns.bucket("bkt").unwrap().ino));
    assert_eq!(ns.counts().pending_gc, 6);
    assert_eq!(
        ns.apply_and_write(Command::DeleteObject {
            mtime: 0,
            bucket: "bkt".into(),
            key: "x/keep".into(),
            if_generation: None,
        }),
        CommandResult::Rejected(NamespaceError::NoSuchKey {
            bucket: "bkt".into(),
            key: "x/keep".into()
        })
    );
}

#[test]
fn list_is_in_byte_order_with_prefix_and_pagination() {
    let mut ns = ns_with_bucket();
    for k in ["a/b", "a-c", "a/a/z", "b", "ab", "a/c"] {
        put(&mut ns, k, 1);
    }
    let mut sorted = vec!["a/b", "a-c", "a/a/z", "b", "ab", "a/c"];
    sorted.sort();
    assert_eq!(keys(&ns, "", "", 100).0, sorted);
    assert_eq!(keys(&ns, "a/", "", 100).0, vec!["a/a/z", "a/b", "a/c"]);
    assert_eq!(keys(&ns, "a", "", 100).0.len(), 5);
    assert_eq!(keys(&ns, "a/a", "", 100).0, vec!["a/a/z"]);
    assert_eq!(keys(&ns, "zz/", "", 100).0, Vec::<String>::new());
    // Page through two at a time.
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let (page, more) = keys(&ns, "", &after, 2);
        all.extend(page.clone());
        if !more {
            break;
        }
        after = page.last().unwrap().clone();
    }
    assert_eq!(all, sorted);
}

#[test]
fn commit_checks_sizes_and_durable_minimum() {
    let mut ns = ns_with_bucket();
    let r = ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: "k".into(),
        size: 99,
        chunks: vec![chunk(10, 3)],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 0,
    });
    assert!(matches!(
        r,
        CommandResult::Rejected(NamespaceError::SizeMismatch { .. })
    ));
    let r = ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: "k".into(),
        size: 10,
        chunks: vec![chunk(10, 2)],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 0,
    });
    assert!(matches!(
        r,
        CommandResult::Rejected(NamespaceError::BadChunk { .. })
    ));
}

#[test]
fn shard_lost_marks_the_chunk_degraded() {
    let mut ns = ns_with_bucket();
    put(&mut ns, "k", 10);
    let (id, _) = ns.lookup("bkt", "k").unwrap().chunks[0].clone();
    ns.apply_and_write(Command::ShardLost {
        chunk: id,
        index: 0,
        node: 1,
    });
    assert_eq!(ns.counts().degraded_chunks, 1);
    assert!(!ns.chunk(&id).unwrap().shards.contains_key(&0));
}

#[test]
fn namespace_reopens_from_its_database_unchanged() {
    let mut ns = ns_with_bucket();
    put(&mut ns, "a/b", 3);
    let digest = ns.state_digest();
    let mut back = Namespace::open(ns.db().clone());
    assert_eq!(back.state_digest(), digest);
    assert_eq!(back.counts(), ns.counts());
    assert_eq!(
        back.lookup("bkt", "a/b").unwrap(),
        ns.lookup("bkt", "a/b").unwrap()
    );
}

fn commit_with(ns: &mut Namespace, key: &str, pre: Option<Precondition>) -> CommandResult {
    ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: key.into(),
        size: 1,
        chunks: vec![chunk(1, 3)],
        attrs: ObjectAttrs::default(),
        precondition: pre,
        mtime: 0,
    })
}

#[test]
fn preconditions_allow_exactly_one_writer() {
    let mut ns = ns_with_bucket();
    let CommandResult::Committed { generation: g1 } =
        commit_with(&mut ns, "k", Some(Precondition::IfAbsent))
    else {
        panic!("first if-absent put must win")
    };
    let lost = commit_with(&mut ns, "k", Some(Precondition::IfAbsent));
    assert!(matches!(
        lost,
        CommandResult::Rejected(NamespaceError::PreconditionFailed { current: Some(g), .. }) if g == g1
    ));
    let CommandResult::Committed { generation: g2 } =
        commit_with(&mut ns, "k", Some(Precondition::IfGeneration(g1)))
    else {
        panic!("matching generation must win")
    };
    let stale = commit_with(&mut ns, "k", Some(Precondition::IfGeneration(g1)));
    assert!(matches!(
        stale,
        CommandResult::Rejected(NamespaceError::PreconditionFailed { .. })
    ));
    let gone = ns.apply_and_write(Command::DeleteObject {
        mtime: 0,
        bucket: "bkt".into(),
        key: "k".into(),
        if_generation: Some(g1),
    });
    assert!(matches!(
        gone,
        CommandResult::Rejected(NamespaceError::PreconditionFailed { .. })
    ));
    let gone = ns.apply_and_write(Command::DeleteObject {
        mtime: 0,
        bucket: "bkt".into(),
        key: "k".into(),
        if_generation: Some(g2),
    });
    assert_eq!(gone, CommandResult::Done);
}

#[test]
fn only_empty_buckets_can_be_deleted() {
    let mut ns = ns_with_bucket();
    put(&mut ns, "a/b", 1);
    let refused = ns.apply_and_write(Command::DeleteBucket { name: "bkt".into() });
    assert!(matches!(
        refused,
        CommandResult::Rejected(NamespaceError::BucketNotEmpty { .. })
    ));
    ns.apply_and_write(Command::DeleteObject {
        mtime: 0,
        bucket: "bkt".into(),
        key: "a/b".into(),
        if_generation: None,
    });
    assert_eq!(
        ns.apply_and_write(Command::DeleteBucket { name: "bkt".into() }),
        CommandResult::Done
    );
    assert!(ns.bucket("bkt").is_err());
    assert!(ns.dir_is_empty(ROOT_INO));
}

fn page(ns: &Namespace, q: ListQuery) -> (Vec<String>, Vec<String>, bool) {
    let p = ns.list("bkt", &q).unwrap();
    (
        p.objects.into_iter().map(|o| o.key).collect(),
        p.common_prefixes,
        p.truncated,
    )
}

#[test]
fn delimiter_rolls_keys_up_into_common_prefixes() {
    let mut ns = ns_with_bucket();
    for k in [
        "a/1",
        "a/2/x",
        "b",
        "c/d/e",
        "c-d",
        "photos/2026/x.jpg",
        "photos/2025/y.jpg",
    ] {
        put(&mut ns, k, 1);
    }
    let q = |prefix, delimiter| ListQuery {
        prefix,
        delimiter,
        limit: 100,
        ..ListQuery::default()
    };
    assert_eq!(
        page(&ns, q("", "/")),
        (
            vec!["b".into(), "c-d".into()],
            vec!["a/".into(), "c/".into(), "photos/".into()],
            false
        )
    );
    assert_eq!(
        page(&ns, q("a/", "/")),
        (vec!["a/1".into()], vec!["a/2/".into()], false)
    );
    assert_eq!(
        page(&ns, q("photos/", "/")).1,
        vec!["photos/2025/".to_string(), "photos/2026/".to_string()]
    );
    // A delimiter other than "/" is rolled up key by key.
    assert_eq!(
        page(&ns, q("c", "-")),
        (vec!["c/d/e".into()], vec!["c-".into()], false)
    );
    // Paging one entry at a time over objects and prefixes together.
    let mut seen = Vec::new();
    let (mut after, mut skip) = (String::new(), String::new());
    loop {
        let p = ns
            .list(
                "bkt",
                &ListQuery {
                    prefix: "",
                    delimiter: "/",
                    start_after: &after,
                    skip_prefix: &skip,
                    limit: 1,
                },
            )
            .unwrap();
        if let Some(o) = p.objects.first() {
            seen.push(o.key.clone());
            after = o.key.clone();
            skip.clear();
        }
        if let Some(cp) = p.common_prefixes.first() {
            seen.push(cp.clone());
            after = cp.clone();
            skip = cp.clone();
        }
        if !p.truncated {
            break;
        }
    }
    assert_eq!(seen, vec!["a/", "b", "c-d", "c/", "photos/"]);
}

#[test]
fn node_with_shards_cannot_be_removed_and_draining_survives_reregistration() {
    let mut ns = ns_with_bucket();
    for id in 1..=3 {
        ns.apply_and_write(Command::RegisterNode {
            id,
            addr: format!("n{id}"),
            zone: "z".into(),
            disk: None,
            replace_empty: false,
        });
    }
    put(&mut ns, "k", 10);
    assert!(matches!(
        ns.apply_and_write(Command::RemoveNode { node: 1 }),
        CommandResult::Rejected(NamespaceError::NodeInUse { node: 1, shards: 1 })
    ));
    assert_eq!(ns.shards_per_node().get(&2), Some(&1));
    ns.apply_and_write(Command::SetDraining {
        node: 2,
        draining: true,
    });
    ns.apply_and_write(Command::RegisterNode {
        id: 2,
        addr: "n2".into(),
        zone: "z".into(),
        disk: None,
        replace_empty: false,
    });
    assert!(ns.nodes()[&2].draining, "a restart does not end a drain");
    ns.apply_and_write(Command::RegisterNode {
        id: 9,
        addr: "n9".into(),
        zone: "z".into(),
        disk: None,
        replace_empty: false,
    });
    assert_eq!(
        ns.apply_and_write(Command::RemoveNode { node: 9 }),
        CommandResult::Done
    );
    assert!(!ns.nodes().contains_key(&9));
}

#[test]
fn recommitting_a_placement_does_not_garbage_collect_the_live_shard() {
    let mut ns = ns_with_bucket();
    put(&mut ns, "k", 10);
    let (id, meta) = ns.lookup("bkt", "k").unwrap().chunks[0].clone();
    let before = ns.counts().pending_gc;
    // Move index 0 from node 1 to node 7, then commit the same move again.
    let mv = Command::RepairChunk {
        chunk: id,
        placed: vec![(0, 7)],
        dropped: vec![(0, 1)],
    };
    ns.apply_and_write(mv.clone());
    ns.apply_and_write(mv);
    assert_eq!(ns.chunk(&id).unwrap().shards.get(&0), Some(&7));
    assert_eq!(
        ns.counts().pending_gc,
        before + 1,
        "only the old copy on node 1 is garbage"
    );
    assert!(ns.gc_entries(10, |_| true).iter().all(|(_, e)| e.node != 7));
    assert_eq!(meta.shards.len(), 3);
}

#[test]
fn late_retry_of_a_commit_cannot_revive_a_released_chunk() {
    let mut ns = ns_with_bucket();
    let c = chunk(10, 3);
    let commit = Command::CommitObject {
        bucket: "bkt".into(),
        key: "k".into(),
        size: 10,
        chunks: vec![c],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 0,
    };
    assert!(matches!(
        ns.apply_and_write(commit.clone()),
        CommandResult::Committed { .. }
    ));
    // Another writer overwrites the key; the first chunk's shards go to GC.
    put(&mut ns, "k", 3);
    let late = ns.apply_and_write(commit);
    assert!(
        matches!(
            late,
            CommandResult::Rejected(NamespaceError::BadChunk { .. })
        ),
        "{late:?}"
    );
    assert_eq!(ns.lookup("bkt", "k").unwrap().entry.size, 3);
}

#[test]
fn absurd_sizes_are_rejected_not_panicking() {
    let mut ns = ns_with_bucket();
    let (mut a, mut b) = (chunk(1, 3), chunk(1, 3));
    a.1.size = u64::MAX;
    b.1.size = 1;
    let r = ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: "k".into(),
        size: 0,
        chunks: vec![a.clone(), b],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 0,
    });
    assert!(matches!(
        r,
        CommandResult::Rejected(NamespaceError::SizeMismatch { .. })
    ));
    let r = ns.apply_and_write(Command::CommitObject {
        bucket: "bkt".into(),
        key: "k".into(),
        size: 2,
        chunks: vec![(a.0, chunk(1, 3).1), (a.0, chunk(1, 3).1)],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 0,
    });
    assert!(
        matches!(r, CommandResult::Rejected(NamespaceError::BadChunk { .. })),
        "{r:?}"
    );
}

fn register(
    ns: &mut Namespace,
    id: NodeId,
    disk: Option<DiskId>,
    replace_empty: bool,
) -> CommandResult {
    ns.apply_and_write(Command::RegisterNode {
        id,
        addr: format!("n{id}"),
        zone: "z".into(),
        disk,
        replace_empty,
    })
}

#[test]
fn a_node_is_bound_to_the_data_directory_it_registered_with() {
    let mut ns = ns_with_bucket();
    let (first, wiped) = (DiskId([1; 16]), DiskId([2; 16]));
    for id in 1..=3 {
        register(&mut ns, id, Some(DiskId([id as u8; 16])), false);
    }
    put(&mut ns, "k", 10);
    assert_eq!(ns.disk_of(1), Some(first));
    // The same directory again (a restart), or a node too old to say: accepted.
    assert_eq!(
        register(&mut ns, 1, Some(first), false),
        CommandResult::Done
    );
    assert_eq!(register(&mut ns, 1, None, false), CommandResult::Done);
    assert_eq!(
        ns.disk_of(1),
        Some(first),
        "an old node does not erase the id"
    );
    // Another directory: refused, and nothing changes.
    let before = ns.state_digest();
    match register(&mut ns, 1, Some(wiped), false) {
        CommandResult::Rejected(e @ NamespaceError::WrongDisk { node: 1, .. }) => {
            let text = e.to_string();
            assert!(text.contains("wiped or replaced"), "{text}");
            assert!(text.contains("--replace-empty"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ns.state_digest(), before);
    assert_eq!(ns.counts().degraded_chunks, 0);
}

#[test]
fn replacing_a_node_with_an_empty_directory_forgets_its_shards() {
    let mut ns = ns_with_bucket();
    for id in 1..=3 {
        register(&mut ns, id, Some(DiskId([id as u8; 16])), false);
    }
    put(&mut ns, "k", 10);
    put(&mut ns, "l", 10);
    ns.apply_and_write(Command::SetNodeWeight {
        node: 2,
        weight_pct: 300,
    });
    let gc_before = ns.counts().pending_gc;
    let new = DiskId([9; 16]);
    assert_eq!(register(&mut ns, 2, Some(new), true), CommandResult::Done);
    assert_eq!(ns.disk_of(2), Some(new));
    assert_eq!(ns.nodes()[&2].weight_pct, 300, "settings survive");
    assert_eq!(ns.shards_per_node().get(&2), None, "nothing placed on it");
    assert_eq!(ns.counts().degraded_chunks, 2, "both chunks to repair");
    assert_eq!(ns.counts().pending_gc, gc_before, "nothing to delete");
    // Asking again with the now registered directory changes nothing.
    let before = ns.state_digest();
    assert_eq!(register(&mut ns, 2, Some(new), true), CommandResult::Done);
    assert_eq!(ns.state_digest(), before);
}

#[test]
fn a_record_without_a_disk_id_adopts_the_first_presented() {
    let mut ns = ns_with_bucket();
    register(&mut ns, 1, None, false);
    put(&mut ns, "k", 10);
    let disk = DiskId([5; 16]);
    assert_eq!(register(&mut ns, 1, Some(disk), true), CommandResult::Done);
    assert_eq!(ns.disk_of(1), Some(disk));
    assert_eq!(
        ns.counts().degraded_chunks,
        0,
        "nothing to compare with: the shard-count check covers it"
    );
}

#[test]
fn old_register_node_entries_still_decode() {
    let json = r#"{"RegisterNode":{"id":4,"addr":"a:1","zone":"z"}}"#;
    let cmd: Command = serde_json::from_str(json).unwrap();
    assert_eq!(
        cmd,
        Command::RegisterNode {
            id: 4,
            addr: "a:1".into(),
            zone: "z".into(),
            disk: None,
            replace_empty: false,
        }
    );
    let record: NodeRecord = serde_json::from_str(r#"{"addr":"a:1","zone":"z"}"#).unwrap();
    assert_eq!(record.disk, None);
}

/// A batch (group commit) is the same as its commands applied one by one: each has its
/// own result, a refused one changes nothing for the others, and the state is the same.
#[test]
fn a_batch_applies_like_its_commands_one_by_one() {
    let commit = |key: &str| Command::CommitObject {
        bucket: "bkt2".into(),
        key: key.into(),
        size: 10,
        chunks: vec![chunk(10, 3)],
        attrs: ObjectAttrs::default(),
        precondition: None,
        mtime: 2,
    };
    let commands = vec![
        Command::CreateBucket {
            name: "bkt2".into(),
            redundancy: EC,
            mtime: 1,
        },
        commit("k1"),
        Command::CreateBucket {
            name: "bkt2".into(),
            redundancy: EC,
            mtime: 1,
        },
        Command::DeleteObject {
            bucket: "bkt2".into(),
            key: "missing".into(),
            if_generation: None,
            mtime: 3,
        },
        commit("k2"),
        Command::DeleteObject {
            bucket: "bkt2".into(),
            key: "k1".into(),
            if_generation: None,
            mtime: 4,
        },
    ];
    let mut one_by_one = Namespace::new();
    let results: Vec<_> = commands
        .iter()
        .map(|c| one_by_one.apply_and_write(c.clone()))
        .collect();
    assert!(
        matches!(
            results[2],
            CommandResult::Rejected(NamespaceError::BucketExists { .. })
        ),
        "{results:?}"
    );
    assert!(matches!(
        results[3],
        CommandResult::Rejected(NamespaceError::NoSuchKey { .. })
    ));
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, CommandResult::Rejected(_)))
            .count(),
        2
    );

    let mut batched = Namespace::new();
    let result = batched.apply_and_write(Command::Batch(Batch(commands)));
    assert_eq!(result, CommandResult::Batch(results));
    assert_eq!(batched.state_digest(), one_by_one.state_digest());
    assert!(batched.lookup("bkt2", "k2").is_ok());
    assert!(batched.lookup("bkt2", "k1").is_err());
}

/// A nested batch (never written by Cairn; decoding refuses one) is refused whole.
#[test]
fn a_nested_batch_is_refused_whole() {
    let mut ns = Namespace::new();
    let before = ns.state_digest();
    let create = Command::CreateBucket {
        name: "bkt3".into(),
        redundancy: EC,
        mtime: 1,
    };
    let nested = Command::Batch(Batch(vec![
        create.clone(),
        Command::Batch(Batch(vec![create])),
    ]));
    assert_eq!(
        ns.apply_and_write(nested),
        CommandResult::Rejected(NamespaceError::NestedBatch)
    );
    assert_eq!(ns.state_digest(), before);
}
