//! Fuzzing the binary Raft format: what a peer or the disk hands `decode` is refused with
//! a typed error, never a panic. Arbitrary bytes; valid records with a byte changed;
//! every prefix of a valid record; and arbitrary object commits round-tripping.

use std::collections::BTreeMap;

use cairn_common::chunk::Hash32;
use cairn_common::ChunkId;
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{Entry, LogId, Vote};
use proptest::prelude::*;

use super::tests::{chunk_meta, every_entry};
use super::*;
use crate::namespace::{Command, ObjectAttrs};
use crate::types::TypeConfig;

/// Decodes `bytes` as every record type there is; none may panic.
fn decode_as_everything(bytes: &[u8]) {
    let _ = decode::<Entry<TypeConfig>>(bytes);
    let _ = decode::<Vote<u64>>(bytes);
    let _ = decode::<Option<LogId<u64>>>(bytes);
    let _ = decode::<AppendEntriesRequest<TypeConfig>>(bytes);
    let _ = decode::<Result<AppendEntriesResponse<u64>, RaftError<u64>>>(bytes);
    let _ = decode::<VoteRequest<u64>>(bytes);
    let _ = decode::<Result<VoteResponse<u64>, RaftError<u64>>>(bytes);
    let _ = decode::<crate::snapshot_stream::StreamHeader>(bytes);
    let _ = decode::<crate::snapshot_stream::StreamReply>(bytes);
}

fn valid_records() -> Vec<Vec<u8>> {
    every_entry()
        .iter()
        .map(|e| encode(e).expect("encode"))
        .collect()
}

proptest! {
    #[test]
    fn fuzz_decode_arbitrary_bytes_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        version in prop_oneof![Just(FORMAT_VERSION), any::<u8>()],
    ) {
        decode_as_everything(&body);
        let mut record = vec![version];
        record.extend_from_slice(&body);
        decode_as_everything(&record);
        if version != FORMAT_VERSION {
            prop_assert!(decode::<Entry<TypeConfig>>(&record).is_err());
        }
    }

    #[test]
    fn fuzz_decode_changed_records_never_panics(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let records = valid_records();
        let mut record = which.get(&records).clone();
        let i = at.index(record.len());
        record[i] = value;
        decode_as_everything(&record);
    }

    /// A record cut short is always an error: decoding reads the same bytes as for the
    /// whole record and needs more.
    #[test]
    fn fuzz_decode_every_prefix_is_refused(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
    ) {
        let records = valid_records();
        let record = which.get(&records);
        let cut = at.index(record.len());
        prop_assert!(decode::<Entry<TypeConfig>>(&record[..cut]).is_err());
    }

    #[test]
    fn arbitrary_object_commits_round_trip(
        key in "\\PC{0,64}",
        size in any::<u64>(),
        ids in proptest::collection::vec(any::<[u8; 16]>(), 0..4),
        hash in any::<[u8; 32]>(),
        metadata in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}", 0..4),
        mtime in any::<u64>(),
    ) {
        let cmd = Command::CommitObject {
            bucket: "b".into(),
            key,
            size,
            chunks: ids.into_iter().map(|id| (ChunkId(id), chunk_meta())).collect(),
            attrs: ObjectAttrs {
                blake3: Some(Hash32(hash)),
                content_type: String::new(),
                metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
            },
            precondition: None,
            mtime,
        };
        let back: Command = decode(&encode(&cmd).expect("encode")).expect("decode");
        prop_assert_eq!(back, cmd);
    }
}
