//! The gRPC edge: a real tonic server on 127.0.0.1:0 and the generated client.

use super::*;
use crate::config::IoEngineChoice;
use crate::io_engine::IoEngine;
use cairn_proto::common::ShardId;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::PutShardHeader;
use tonic::transport::Channel;
use tonic::Code;

struct Harness {
    client: NodeServiceClient<Channel>,
    store: Arc<ShardStore>,
    _dir: tempfile::TempDir,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn must_start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let engine = IoEngine::detect(dir.path(), IoEngineChoice::Auto)
        .await
        .unwrap();
    let store = Arc::new(ShardStore::open(dir.path(), 1, engine).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .add_service(NodeServiceImpl::new(store.clone()).into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        );
    tokio::spawn(server);
    let client = NodeServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    Harness {
        client,
        store,
        _dir: dir,
        stop,
    }
}

fn shard_id(n: u8, index: u32) -> ShardId {
    ShardId {
        chunk_id: vec![n; 16].into(),
        index,
    }
}

fn key(n: u8, index: u32) -> ShardKey {
    ShardKey {
        chunk: ChunkId([n; 16]),
        index,
    }
}

fn header(id: ShardId, length: u64, blake3: &[u8]) -> PutShardRequest {
    PutShardRequest {
        part: Some(put_shard_request::Part::Header(PutShardHeader {
            id: Some(id),
            length,
            blake3: blake3.to_vec().into(),
        })),
    }
}

fn data(bytes: &[u8]) -> PutShardRequest {
    PutShardRequest {
        part: Some(put_shard_request::Part::Data(bytes.to_vec().into())),
    }
}

async fn put(h: &mut Harness, messages: Vec<PutShardRequest>) -> Result<(), Status> {
    h.client
        .put_shard(futures::stream::iter(messages))
        .await
        .map(drop)
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

#[tokio::test]
async fn put_without_a_header_first_is_invalid() {
    let mut h = must_start().await;
    let err = put(&mut h, vec![data(b"abc")]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = put(&mut h, vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn more_data_than_announced_stores_nothing() {
    let mut h = must_start().await;
    let bytes = b"0123456789";
    let err = put(
        &mut h,
        vec![header(shard_id(1, 0), 5, &hash(&bytes[..5])), data(bytes)],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("more data"), "{}", err.message());
    assert_eq!(h.store.usage().shard_count, 0);
}

#[tokio::test]
async fn fewer_bytes_than_announced_store_nothing() {
    let mut h = must_start().await;
    let err = put(
        &mut h,
        vec![header(shard_id(1, 0), 10, &hash(b"01234")), data(b"01234")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(h.store.usage().shard_count, 0);
}

#[tokio::test]
async fn oversized_shard_is_refused_up_front() {
    let mut h = must_start().await;
    let err = put(
        &mut h,
        vec![header(shard_id(1, 0), MAX_SHARD_BYTES + 1, &[0; 32])],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn wrong_hash_is_invalid_argument_with_a_clear_message() {
    let mut h = must_start().await;
    let err = put(
        &mut h,
        vec![header(shard_id(2, 0), 3, &[7; 32]), data(b"abc")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("hashes to"), "{}", err.message());
    assert_eq!(h.store.usage().shard_count, 0);
}

#[tokio::test]
async fn bad_chunk_ids_and_hash_lengths_are_invalid() {
    let mut h = must_start().await;
    let short = ShardId {
        chunk_id: vec![1; 15].into(),
        index: 0,
    };
    let err = put(
        &mut h,
        vec![header(short.clone(), 1, &hash(b"a")), data(b"a")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = put(
        &mut h,
        vec![header(shard_id(1, 0), 1, &[1; 31]), data(b"a")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = h
        .client
        .stat_shard(StatShardRequest { id: Some(short) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = h
        .client
        .get_shard(GetShardRequest {
            id: None,
            offset: 0,
            length: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn missing_shard_and_bad_range_get_their_codes() {
    let mut h = must_start().await;
    let err = h
        .client
        .get_shard(GetShardRequest {
            id: Some(shard_id(3, 0)),
            offset: 0,
            length: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    put(
        &mut h,
        vec![header(shard_id(3, 0), 3, &hash(b"xyz")), data(b"xyz")],
    )
    .await
    .unwrap();
    let err = h
        .client
        .get_shard(GetShardRequest {
            id: Some(shard_id(3, 0)),
            offset: 2,
            length: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
}

#[tokio::test]
async fn stat_and_delete_report_the_shard() {
    let mut h = must_start().await;
    put(
        &mut h,
        vec![
            header(shard_id(4, 1), 4, &hash(b"abcd")),
            data(b"ab"),
            data(b"cd"),
        ],
    )
    .await
    .unwrap();
    let stat = h
        .client
        .stat_shard(StatShardRequest {
            id: Some(shard_id(4, 1)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stat.length, 4);
    assert_eq!(stat.blake3[..], hash(b"abcd"));
    let delete = |id, term| DeleteShardRequest { id: Some(id), term };
    let first = h
        .client
        .delete_shard(delete(shard_id(4, 1), 3))
        .await
        .unwrap();
    assert!(first.into_inner().existed);
    let second = h
        .client
        .delete_shard(delete(shard_id(4, 1), 3))
        .await
        .unwrap();
    assert!(!second.into_inner().existed);
    assert!(!h.store.delete(key(4, 1)).await.unwrap());
}

/// A deletion from a deposed metadata leader (an older term than one already seen) is
/// refused and deletes nothing; the current term's and newer ones are served.
#[tokio::test]
async fn deletions_of_an_older_leader_term_are_refused() {
    let mut h = must_start().await;
    put(
        &mut h,
        vec![header(shard_id(6, 0), 4, &hash(b"live")), data(b"live")],
    )
    .await
    .unwrap();
    let delete = |term| DeleteShardRequest {
        id: Some(shard_id(6, 0)),
        term,
    };
    h.client.delete_shard(delete(7)).await.unwrap();
    put(
        &mut h,
        vec![header(shard_id(6, 0), 4, &hash(b"live")), data(b"live")],
    )
    .await
    .unwrap();
    let stale = h.client.delete_shard(delete(6)).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    assert!(stale.message().contains("deposed leader"), "{stale:?}");
    assert_eq!(h.store.stat(key(6, 0)).await.unwrap().length, 4, "kept");
    assert!(
        h.client
            .delete_shard(delete(8))
            .await
            .unwrap()
            .into_inner()
            .existed
    );
}

#[tokio::test]
async fn empty_shard_get_still_sends_its_length_and_hash() {
    let mut h = must_start().await;
    put(&mut h, vec![header(shard_id(5, 0), 0, &hash(b""))])
        .await
        .unwrap();
    let mut stream = h
        .client
        .get_shard(GetShardRequest {
            id: Some(shard_id(5, 0)),
            offset: 0,
            length: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.shard_length, 0);
    assert_eq!(first.blake3[..], hash(b""));
    assert!(first.data.is_empty());
    assert!(stream.message().await.unwrap().is_none());
}

#[test]
fn every_store_error_maps_to_its_code() {
    let id = key(1, 0);
    let path = std::path::PathBuf::from("/x");
    let cases = [
        (StoreError::NotFound { id }, Code::NotFound),
        (
            StoreError::Corrupt {
                id,
                reason: crate::store::CorruptReason::Truncated,
            },
            Code::DataLoss,
        ),
        (
            StoreError::HashMismatch {
                id,
                expected: [0; 32],
                actual: [1; 32],
            },
            Code::InvalidArgument,
        ),
        (
            StoreError::RangeOutOfBounds {
                id,
                offset: 1,
                len: 1,
                shard_len: 1,
            },
            Code::OutOfRange,
        ),
        (
            StoreError::NoSpace { path: path.clone() },
            Code::ResourceExhausted,
        ),
        (
            StoreError::Io {
                op: "read",
                path,
                source: std::io::Error::other("boom"),
            },
            Code::Internal,
        ),
    ];
    for (err, code) in cases {
        assert_eq!(status_of(err).code(), code);
    }
    // A full disk is told apart from an overloaded node by a typed reason, not by text.
    let full = status_of(StoreError::NoSpace {
        path: std::path::PathBuf::from("/data/x"),
    });
    assert_eq!(
        cairn_proto::status::reason_of(&full),
        Some(cairn_proto::common::ErrorReason::NoSpace)
    );
    let corrupt = status_of(StoreError::Corrupt {
        id,
        reason: crate::store::CorruptReason::Truncated,
    });
    assert!(corrupt.message().contains("corrupt"));
    assert!(corrupt.message().contains("quarantined"));
    // A shard the disk cannot read is lost like a corrupt one: readers report it.
    let unreadable = status_of(StoreError::Corrupt {
        id,
        reason: crate::store::CorruptReason::Unreadable { errno: libc::EIO },
    });
    assert_eq!(unreadable.code(), tonic::Code::DataLoss);
    assert!(unreadable.message().contains("unreadable"));
    let unopenable = status_of(StoreError::Unopenable {
        id,
        reason: crate::store::CorruptReason::Unreadable { errno: libc::EIO },
    });
    assert_eq!(unopenable.code(), tonic::Code::DataLoss);
}
