//! Round trips of everything that goes into the Raft log or between replicas: every
//! `Command` and `FsChange` variant (with every optional part filled), openraft's
//! entries, membership, votes, RPCs and their errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use cairn_common::chunk::{ChunkMeta, Hash32};
use cairn_common::fs::{
    AttrChanges, FileExtent, FsChange, InlineRun, NewNode, Special, TimeSet, XattrMode,
};
use cairn_common::locks::{FileLock, LockKind};
use cairn_common::{ChunkId, DiskId, Precondition, Redundancy};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;
use crate::namespace::grants::Access;
use crate::namespace::tokens::TokenRecord;
use crate::namespace::{Batch, Command, InlineLimits, ObjectAttrs};
use crate::types::TypeConfig;

/// Encodes, decodes, and checks that the value and its encoding survive unchanged
/// (compared through `Debug`: not every openraft type is `PartialEq`).
fn must_round_trip<T: Serialize + DeserializeOwned + Debug>(value: &T) -> Vec<u8> {
    let bytes = encode(value).expect("encode");
    assert_eq!(bytes[0], FORMAT_VERSION);
    let back: T = decode(&bytes).unwrap_or_else(|e| panic!("decode {value:?}: {e}"));
    assert_eq!(format!("{back:?}"), format!("{value:?}"));
    assert_eq!(encode(&back).expect("encode again"), bytes);
    bytes
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 2), index)
}

pub(super) fn chunk_meta() -> ChunkMeta {
    ChunkMeta {
        size: 4 << 20,
        redundancy: Redundancy::Ec { k: 4, m: 2 },
        shard_hashes: (0..6u8).map(|i| Hash32([i; 32])).collect(),
        shards: (0..6u32).map(|i| (i, 10 + i as u64)).collect(),
    }
}

fn extent(offset: u64) -> FileExtent {
    FileExtent {
        offset,
        len: 4096,
        chunk: ChunkId([7; 16]),
        chunk_offset: 512,
    }
}

/// One of every `FsChange` variant, optional parts filled.
fn every_fs_change() -> Vec<FsChange> {
    let changes = AttrChanges {
        mode: Some(0o644),
        uid: Some(1000),
        gid: Some(100),
        size: Some(1 << 40),
        atime: Some(TimeSet::Now),
        mtime: Some(TimeSet::AtNs(u64::MAX)),
    };
    let node_kinds = [
        NewNode::File,
        NewNode::Dir,
        NewNode::Symlink {
            target: "../ü/target".into(),
        },
        NewNode::Special(Special::Fifo),
        NewNode::Special(Special::Socket),
        NewNode::Special(Special::CharDevice { rdev: 0x0105 }),
        NewNode::Special(Special::BlockDevice { rdev: u32::MAX }),
    ];
    let mut all: Vec<FsChange> = node_kinds
        .into_iter()
        .map(|node| FsChange::Create {
            parent: 1,
            name: "name".into(),
            node,
            mode: 0o755,
            uid: 0,
            gid: 0,
            hold: true,
        })
        .collect();
    all.extend([
        FsChange::Link {
            ino: 9,
            parent: 1,
            name: "link".into(),
        },
        FsChange::Unlink {
            parent: 1,
            name: "gone".into(),
            dir: true,
        },
        FsChange::Rename {
            parent: 1,
            name: "a".into(),
            new_parent: 2,
            new_name: "b".into(),
            noreplace: true,
            exchange: false,
        },
        FsChange::SetAttr { ino: 9, changes },
        FsChange::SetAttr {
            ino: 9,
            changes: AttrChanges::default(),
        },
        FsChange::Write {
            ino: 9,
            extents: vec![extent(0), extent(4096)],
            chunks: vec![(ChunkId([7; 16]), chunk_meta())],
            size_at_least: 8192,
        },
        FsChange::Compact {
            ino: 9,
            generation: 3,
            extents: vec![extent(0)],
            chunks: vec![(ChunkId([8; 16]), chunk_meta())],
        },
        FsChange::SetXattr {
            ino: 9,
            name: "user.x".into(),
            value: vec![0, 1, 255],
            mode: XattrMode::Create,
        },
        FsChange::RemoveXattr {
            ino: 9,
            name: "user.x".into(),
        },
        FsChange::Hold { ino: 9 },
        FsChange::Release { ino: 9 },
        FsChange::SetLock {
            ino: 9,
            owner: u64::MAX,
            lock: FileLock {
                start: 0,
                end: u64::MAX,
                kind: LockKind::Write,
                pid: 42,
            },
        },
        FsChange::UnlockAll { ino: 9, owner: 1 },
        FsChange::CreateMany {
            parent: 4,
            prefix: "f".into(),
            first: u64::MAX - 10,
            count: 10,
            mode: 0o644,
            uid: 1000,
            gid: 100,
        },
        FsChange::RemoveMany {
            parent: 4,
            prefix: "f".into(),
            first: 3,
            count: 10_000,
        },
        FsChange::WriteInline {
            ino: 9,
            runs: vec![
                InlineRun {
                    offset: 0,
                    data: vec![0, 1, 255],
                },
                InlineRun {
                    offset: 65_535,
                    data: vec![7],
                },
            ],
            size_at_least: u64::MAX,
        },
        FsChange::PunchHole {
            ino: 9,
            offset: 4095,
            len: u64::MAX,
        },
        FsChange::CloneFile {
            src: 9,
            parent: 4,
            name: "snap".into(),
            mode: 0o600,
            uid: 0,
            gid: 7,
        },
    ]);
    all
}

/// The variant's name. No wildcard: a new variant fails to compile here, next to
/// [`FS_CHANGE_VARIANTS`], which the test checks `every_fs_change` covers.
fn fs_change_variant(c: &FsChange) -> &'static str {
    match c {
        FsChange::Create { .. } => "Create",
        FsChange::Link { .. } => "Link",
        FsChange::Unlink { .. } => "Unlink",
        FsChange::Rename { .. } => "Rename",
        FsChange::SetAttr { .. } => "SetAttr",
        FsChange::Write { .. } => "Write",
        FsChange::Compact { .. } => "Compact",
        FsChange::SetXattr { .. } => "SetXattr",
        FsChange::RemoveXattr { .. } => "RemoveXattr",
        FsChange::Hold { .. } => "Hold",
        FsChange::Release { .. } => "Release",
        FsChange::SetLock { .. } => "SetLock",
        FsChange::UnlockAll { .. } => "UnlockAll",
        FsChange::CreateMany { .. } => "CreateMany",
        FsChange::RemoveMany { .. } => "RemoveMany",
        FsChange::WriteInline { .. } => "WriteInline",
        FsChange::PunchHole { .. } => "PunchHole",
        FsChange::CloneFile { .. } => "CloneFile",
    }
}

const FS_CHANGE_VARIANTS: &[&str] = &[
    "Create",
    "Link",
    "Unlink",
    "Rename",
    "SetAttr",
    "Write",
    "Compact",
    "SetXattr",
    "RemoveXattr",
    "Hold",
    "Release",
    "SetLock",
    "UnlockAll",
    "CreateMany",
    "RemoveMany",
    "WriteInline",
    "PunchHole",
    "CloneFile",
];

/// One of every `Command` variant (several for the ones with optional parts), with
/// every `FsChange`.
pub(super) fn every_command() -> Vec<Command> {
    let attrs = ObjectAttrs {
        blake3: Some(Hash32([9; 32])),
        content_type: "text/plain".into(),
        metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
    };
    let mut all = vec![
        Command::CreateBucket {
            name: "b".into(),
            redundancy: Redundancy::Replicas { n: 3 },
            mtime: 1,
        },
        Command::RegisterNode {
            id: 4,
            addr: "127.0.0.14:7114".into(),
            zone: "zone-1".into(),
            disk: Some(DiskId([3; 16])),
            replace_empty: true,
        },
        Command::RegisterNode {
            id: 4,
            addr: String::new(),
            zone: String::new(),
            disk: None,
            replace_empty: false,
        },
        Command::CommitObject {
            bucket: "b".into(),
            key: "a/b/c".into(),
            size: 4 << 20,
            chunks: vec![(ChunkId([1; 16]), chunk_meta())],
            attrs,
            precondition: Some(Precondition::IfGeneration(7)),
            mtime: 2,
        },
        Command::CommitObject {
            bucket: "b".into(),
            key: "empty".into(),
            size: 0,
            chunks: vec![],
            attrs: ObjectAttrs::default(),
            precondition: Some(Precondition::IfAbsent),
            mtime: 0,
        },
        Command::DeleteObject {
            bucket: "b".into(),
            key: "k".into(),
            if_generation: Some(3),
            mtime: 5,
        },
        Command::DeleteBucket { name: "b".into() },
        Command::ShardLost {
            chunk: ChunkId([2; 16]),
            index: 5,
            node: 6,
        },
        Command::RepairChunk {
            chunk: ChunkId([2; 16]),
            placed: vec![(1, 2), (3, 4)],
            dropped: vec![(5, 6)],
        },
        Command::SetDraining {
            node: 1,
            draining: true,
        },
        Command::RemoveNode { node: 1 },
        Command::SetNodeWeight {
            node: 1,
            weight_pct: 250,
        },
        Command::SetRepairThrottle {
            bytes_per_sec: u64::MAX,
        },
        Command::SetGrant {
            bucket: "b".into(),
            user: "alice".into(),
            access: Some(Access::Admin),
        },
        Command::SetGrant {
            bucket: "b".into(),
            user: "alice".into(),
            access: None,
        },
        Command::AddToken {
            id: "0123456789abcdef".into(),
            record: TokenRecord {
                user: "alice".into(),
                hash: [0xee; 32],
                created: 1_700_000_000,
            },
        },
        Command::RevokeToken {
            id: "0123456789abcdef".into(),
        },
        Command::OpenSession {
            name: "mount@host".into(),
            now_ns: 1,
        },
        Command::EndSession { session: 12 },
        Command::GcDone {
            seqs: vec![1, u64::MAX],
        },
    ];
    all.push(Command::SetInlineLimits(InlineLimits {
        max_bytes: 1 << 20,
        budget_bytes: u64::MAX,
    }));
    all.extend(every_fs_change().into_iter().map(|change| Command::Fs {
        session: 12,
        change,
        now_ns: u64::MAX,
        seq: 99,
    }));
    let batched = all.clone();
    all.push(Command::Batch(Batch(batched)));
    all.push(Command::Batch(Batch::default()));
    all
}

/// The variant's name; no wildcard (see [`fs_change_variant`]).
fn command_variant(c: &Command) -> &'static str {
    match c {
        Command::CreateBucket { .. } => "CreateBucket",
        Command::RegisterNode { .. } => "RegisterNode",
        Command::CommitObject { .. } => "CommitObject",
        Command::DeleteObject { .. } => "DeleteObject",
        Command::DeleteBucket { .. } => "DeleteBucket",
        Command::ShardLost { .. } => "ShardLost",
        Command::RepairChunk { .. } => "RepairChunk",
        Command::SetDraining { .. } => "SetDraining",
        Command::RemoveNode { .. } => "RemoveNode",
        Command::SetNodeWeight { .. } => "SetNodeWeight",
        Command::SetRepairThrottle { .. } => "SetRepairThrottle",
        Command::SetGrant { .. } => "SetGrant",
        Command::AddToken { .. } => "AddToken",
        Command::RevokeToken { .. } => "RevokeToken",
        Command::Fs { .. } => "Fs",
        Command::OpenSession { .. } => "OpenSession",
        Command::EndSession { .. } => "EndSession",
        Command::GcDone { .. } => "GcDone",
        Command::Batch(_) => "Batch",
        Command::SetInlineLimits(_) => "SetInlineLimits",
    }
}

const COMMAND_VARIANTS: &[&str] = &[
    "CreateBucket",
    "RegisterNode",
    "CommitObject",
    "DeleteObject",
    "DeleteBucket",
    "ShardLost",
    "RepairChunk",
    "SetDraining",
    "RemoveNode",
    "SetNodeWeight",
    "SetRepairThrottle",
    "SetGrant",
    "AddToken",
    "RevokeToken",
    "Fs",
    "OpenSession",
    "EndSession",
    "GcDone",
    "Batch",
    "SetInlineLimits",
];

fn membership() -> Membership<u64, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3, 4])],
        BTreeMap::from([
            (1, BasicNode::new("127.0.0.1:7101")),
            (2, BasicNode::new("127.0.0.2:7102")),
            (3, BasicNode::new("127.0.0.3:7103")),
            (4, BasicNode::new("127.0.0.4:7104")),
        ]),
    )
}

/// Entries of every payload kind: blank, membership and every command.
pub(super) fn every_entry() -> Vec<Entry<TypeConfig>> {
    let mut entries = vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    for (i, cmd) in every_command().into_iter().enumerate() {
        entries.push(Entry {
            log_id: log_id(3, 3 + i as u64),
            payload: EntryPayload::Normal(cmd),
        });
    }
    entries
}

#[test]
fn every_command_and_fs_change_variant_round_trips() {
    let commands = every_command();
    let seen: BTreeSet<_> = commands.iter().map(command_variant).collect();
    assert_eq!(seen, COMMAND_VARIANTS.iter().copied().collect());
    let seen: BTreeSet<_> = every_fs_change().iter().map(fs_change_variant).collect();
    assert_eq!(seen, FS_CHANGE_VARIANTS.iter().copied().collect());
    for cmd in &commands {
        must_round_trip(cmd);
    }
}

#[test]
fn every_entry_kind_round_trips() {
    for entry in every_entry() {
        must_round_trip(&entry);
    }
}

#[test]
fn vote_and_log_ids_round_trip() {
    must_round_trip(&Vote::new(7, 3u64));
    must_round_trip(&Vote::new_committed(u64::MAX, u64::MAX));
    must_round_trip(&Some(log_id(2, 9)));
    must_round_trip(&None::<LogId<u64>>);
    must_round_trip(&log_id(0, 0));
}

#[test]
fn raft_rpcs_and_their_errors_round_trip() {
    let vote = Vote::new_committed(4, 2u64);
    must_round_trip(&AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id(1, 1)),
        entries: every_entry(),
        leader_commit: Some(log_id(1, 2)),
    });
    must_round_trip(&AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    });
    type AppendReply = Result<AppendEntriesResponse<u64>, RaftError<u64>>;
    for reply in [
        Ok(AppendEntriesResponse::Success),
        Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(1, 5)))),
        Ok(AppendEntriesResponse::PartialSuccess(None)),
        Ok(AppendEntriesResponse::Conflict),
        Ok(AppendEntriesResponse::HigherVote(vote)),
        Err(RaftError::Fatal(Fatal::Stopped)),
        Err(RaftError::Fatal(Fatal::Panicked)),
        Err(RaftError::Fatal(Fatal::StorageError(StorageError::IO {
            source: StorageIOError::read_logs(
                AnyError::error("disk on fire").add_context(|| "reading entry 5"),
            ),
        }))),
    ] {
        must_round_trip::<AppendReply>(&reply);
    }
    must_round_trip(&VoteRequest::new(vote, Some(log_id(3, 4))));
    must_round_trip::<Result<VoteResponse<u64>, RaftError<u64>>>(&Ok(VoteResponse::new(
        vote, None, true,
    )));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(3, 40)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: "3-40-1".into(),
    };
    must_round_trip(&crate::snapshot_stream::StreamHeader { vote, meta });
    for reply in [
        Ok(SnapshotResponse { vote }),
        Err(Fatal::Stopped),
        Err(Fatal::StorageError(StorageError::IO {
            source: StorageIOError::write_snapshot(None, AnyError::error("disk full")),
        })),
    ] {
        must_round_trip::<crate::snapshot_stream::StreamReply>(&reply);
    }
}

/// What the binary format buys on the commonest entry: a put of one 4+2 chunk.
#[test]
fn a_commit_entry_is_far_smaller_than_its_json() {
    let entry = Entry::<TypeConfig> {
        log_id: log_id(3, 123_456),
        payload: EntryPayload::Normal(Command::CommitObject {
            bucket: "default".into(),
            key: "photos/2026/img_0001.jpg".into(),
            size: 4 << 20,
            chunks: vec![(ChunkId([1; 16]), chunk_meta())],
            attrs: ObjectAttrs {
                blake3: Some(Hash32([9; 32])),
                ..ObjectAttrs::default()
            },
            precondition: None,
            mtime: 1_780_000_000,
        }),
    };
    let binary = must_round_trip(&entry).len();
    let json = serde_json::to_vec(&entry).unwrap().len();
    eprintln!("a CommitObject entry of one 4+2 chunk: {binary} bytes binary, {json} JSON");
    assert!(binary * 2 < json, "binary {binary} bytes, JSON {json}");
}

#[test]
fn decode_names_what_it_refuses() {
    let bytes = encode(&log_id(1, 2)).unwrap();
    assert!(matches!(decode::<LogId<u64>>(&[]), Err(CodecError::Empty)));
    let json = serde_json::to_vec(&log_id(1, 2)).unwrap();
    assert!(matches!(
        decode::<LogId<u64>>(&json),
        Err(CodecError::LegacyJson)
    ));
    let mut other = bytes.clone();
    other[0] = 2;
    assert!(matches!(
        decode::<LogId<u64>>(&other),
        Err(CodecError::UnknownVersion { found: 2 })
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode::<LogId<u64>>(&longer),
        Err(CodecError::TrailingBytes { extra: 1 })
    ));
    assert!(matches!(
        decode::<LogId<u64>>(&bytes[..bytes.len() - 1]),
        Err(CodecError::Malformed { .. })
    ));
    let message = CodecError::LegacyJson.to_string();
    assert!(message.contains("same release"), "{message}");
}

/// A batch inside a batch is refused by the decoder (`Batch`'s `Deserialize`), however
/// deep: a hostile record cannot recurse the decoder off the stack.
#[test]
fn a_nested_batch_does_not_decode() {
    let inner = Command::Batch(Batch(vec![Command::RemoveNode { node: 1 }]));
    let nested = encode(&Command::Batch(Batch(vec![inner]))).unwrap();
    assert!(matches!(
        decode::<Command>(&nested),
        Err(CodecError::Malformed { .. })
    ));
    // The variant index of `Batch`, then a one-element sequence, a million times over.
    let batch_tag = encode(&Command::Batch(Batch::default())).unwrap()[1];
    let mut deep = vec![FORMAT_VERSION];
    for _ in 0..1_000_000 {
        deep.extend([batch_tag, 1]);
    }
    assert!(matches!(
        decode::<Command>(&deep),
        Err(CodecError::Malformed { .. })
    ));
    // And a flat batch after a refused one decodes: the guard was reset.
    let flat = encode(&Command::Batch(Batch(vec![Command::RemoveNode {
        node: 1,
    }])))
    .unwrap();
    assert!(decode::<Command>(&flat).is_ok());
}
