//! Property tests (fuzzing) of the decoders in `cairn-common` that see bytes from a
//! network, a disk or a user: key and bucket names, config files, redundancy schemes,
//! chunk ids and the mounts' filesystem protocol (special files' kinds and device numbers
//! included). None may panic; whatever they accept must be valid. 256 cases each unless
//! PROPTEST_CASES says otherwise (TESTING.md).

use cairn_common::config::ClusterFile;
use cairn_common::fs::{
    check_name, FileType, FsAttr, FsChange, FsRequest, FsResult, NewNode, Special,
};
use cairn_common::names::{validate_bucket, validate_key, MAX_KEY_BYTES};
use cairn_common::{ChunkId, Redundancy};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn names_accepted_are_well_formed(key in "\\PC{0,40}|[a-z0-9/.\\-]{0,1100}", bucket in "\\PC{0,70}") {
        if validate_key(&key).is_ok() {
            prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.contains('\0'));
            prop_assert!(key.split('/').all(|p| !p.is_empty() && p != "." && p != ".."));
        }
        if validate_bucket(&bucket).is_ok() {
            prop_assert!((3..=63).contains(&bucket.len()));
        }
        if check_name(&key).is_ok() {
            prop_assert!(!key.contains('/') && key.len() <= 255);
        }
    }

    #[test]
    fn cluster_files_parse_or_fail_cleanly(text in "\\PC{0,200}|meta = \\[\"[0-9.:]{0,30}\"\\]\nchunk_size = [0-9]{0,12}") {
        let _ = toml::from_str::<ClusterFile>(&text);
    }

    #[test]
    fn redundancy_and_chunk_ids_parse_or_fail_cleanly(text in "\\PC{0,40}|[0-9]{1,4}\\+[0-9]{1,4}|[0-9a-f]{30,34}") {
        if let Ok(r) = text.parse::<Redundancy>() {
            let _ = r.validate();
        }
        if let Ok(id) = text.parse::<ChunkId>() {
            prop_assert_eq!(id.to_string().parse::<ChunkId>().ok(), Some(id));
        }
    }

    #[test]
    fn filesystem_protocol_messages_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = serde_json::from_slice::<FsRequest>(&bytes);
        let _ = serde_json::from_slice::<FsResult>(&bytes);
    }

    /// Every kind of special file, with any device number, travels as itself; a byte
    /// changed in its encoding decodes to a valid kind or not at all.
    #[test]
    fn special_files_round_trip_and_corruptions_fail_cleanly(
        which in 0usize..4,
        rdev in any::<u32>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let special = [
            Special::Fifo,
            Special::Socket,
            Special::CharDevice { rdev },
            Special::BlockDevice { rdev },
        ][which];
        let request = FsRequest::Change {
            session: 1,
            seq: 1,
            change: FsChange::Create {
                parent: 2,
                name: "n".into(),
                node: NewNode::Special(special),
                mode: 0o644,
                uid: 0,
                gid: 0,
                hold: false,
            },
        };
        let mut bytes = serde_json::to_vec(&request).expect("encode");
        prop_assert_eq!(serde_json::from_slice::<FsRequest>(&bytes).ok(), Some(request));
        prop_assert_eq!(special.rdev(), if special.is_device() { rdev } else { 0 });
        let at = flip.index(bytes.len());
        bytes[at] = byte;
        if let Ok(FsRequest::Change { change: FsChange::Create { node: NewNode::Special(s), .. }, .. }) =
            serde_json::from_slice::<FsRequest>(&bytes)
        {
            prop_assert!(matches!(
                s.file_type(),
                FileType::Fifo | FileType::Socket | FileType::CharDevice | FileType::BlockDevice
            ));
        }
    }
}

/// Structured garbage: JSON that is almost a request.
#[test]
fn nearly_valid_filesystem_requests_are_refused_not_panicked() {
    for text in [
        r#"{"Change":{"session":1,"change":{"Write":{"ino":2,"extents":[{"offset":18446744073709551615,"len":18446744073709551615,"chunk":"00","chunk_offset":0}],"chunks":[],"size_at_least":0}}}}"#,
        r#"{"Query":{"session":1,"query":{"ReadDir":{"ino":1,"after":null,"limit":4294967295}}}}"#,
        r#"{"Change":{"session":18446744073709551615,"change":{"Hold":{"ino":0}}}}"#,
        r#"{"OpenSession":{"name":""}}"#,
    ] {
        let _ = serde_json::from_str::<FsRequest>(text);
    }
}

/// Special files that are not: unknown kinds, device numbers out of range, a device
/// number on a FIFO. Each is refused by the decoder, and an attribute reply from before
/// device numbers existed still decodes (as 0).
#[test]
fn malformed_special_files_are_refused_and_old_attributes_decode() {
    for node in [
        r#"{"Special":"Door"}"#,
        r#"{"Special":{"CharDevice":{"rdev":-1}}}"#,
        r#"{"Special":{"BlockDevice":{"rdev":4294967296}}}"#,
        r#"{"Special":{"CharDevice":{}}}"#,
        r#"{"Special":{"Fifo":{"rdev":1}}}"#,
        r#"{"Special":null}"#,
    ] {
        assert!(
            serde_json::from_str::<NewNode>(node).is_err(),
            "{node} must be refused"
        );
    }
    assert!(serde_json::from_str::<FileType>(r#""Whiteout""#).is_err());
    let old = r#"{"ino":5,"kind":"File","size":0,"allocated":0,"mode":420,"uid":0,"gid":0,"nlink":1,"atime_ns":1,"mtime_ns":1,"ctime_ns":1,"generation":1}"#;
    let attr: FsAttr = serde_json::from_str(old).expect("an attribute reply without rdev");
    assert_eq!(attr.rdev, 0);
}
