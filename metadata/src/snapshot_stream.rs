//! A snapshot sent to a replica in one gRPC stream (`RaftService.StreamSnapshot`).
//!
//! openraft's own transfer sends a snapshot as a sequence of install RPCs, each waiting
//! for the answer to the one before, and the receiver stored the whole archive before
//! unpacking it: reading, sending, writing and unpacking took turns. Here the leader's
//! reads run ahead of the network (a few chunks queued), HTTP/2 flow control keeps bytes
//! in flight, and the receiver writes each chunk straight into the new database's files
//! (`ArchiveWriter`), then hands the snapshot to openraft to install
//! (`Raft::install_full_snapshot`, which checks the leader's vote).
//!
//! The stream: a first message holding a [`StreamHeader`] (codec.rs), then the archive's
//! bytes in order. The reply is `Result<SnapshotResponse, Fatal>` (codec.rs).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::meta::raft_service_client::RaftServiceClient;
use cairn_proto::meta::RaftPayload;
use openraft::error::{
    Fatal, NetworkError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::raft::SnapshotResponse;
use openraft::{BasicNode, Snapshot, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Status;

use crate::codec;
use crate::snapshot_archive::SnapshotData;
use crate::types::{Raft, TypeConfig};

/// Bytes of the archive per stream message.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks read ahead of the network.
const READ_AHEAD: usize = 4;
/// Chunks received ahead of the receiver's disk writes.
const WRITE_AHEAD: usize = 4;
/// The slowest transfer tolerated: a stream gets its RPC timeout plus the time to move
/// the archive at this rate before it is abandoned (and retried by openraft).
const MIN_BYTES_PER_SEC: u64 = 8 << 20;

/// Read buffers kept for reuse: those queued, plus those the network still holds.
const POOLED_BUFFERS: usize = 2 * READ_AHEAD;

/// A chunk read into a reusable buffer, given back when the network has sent it.
struct PooledChunk {
    buf: Vec<u8>,
    len: usize,
    give_back: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        // A full pool, or a transfer that ended, frees the buffer instead.
        let _ = self.give_back.try_send(std::mem::take(&mut self.buf));
    }
}

/// The first message of a snapshot stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamHeader {
    /// The sending leader's vote, checked by the receiver before installing.
    pub vote: Vote<u64>,
    pub meta: SnapshotMeta<u64, BasicNode>,
}

/// What the receiver answers.
pub type StreamReply = Result<SnapshotResponse<u64>, Fatal<u64>>;

type SendError = StreamingError<TypeConfig, Fatal<u64>>;

fn network(e: impl std::fmt::Display) -> SendError {
    SendError::Network(NetworkError::new(&openraft::AnyError::error(e.to_string())))
}

/// Sends `snapshot` to `target` and waits for it to be installed there.
pub async fn send(
    client: &mut RaftServiceClient<Channel>,
    target: u64,
    vote: Vote<u64>,
    snapshot: Snapshot<TypeConfig>,
    cancel: impl Future<Output = ReplicationClosed>,
    rpc_timeout: Duration,
) -> Result<SnapshotResponse<u64>, SendError> {
    let SnapshotData::Outgoing(mut reader) = *snapshot.snapshot else {
        return Err(network("only a snapshot built here can be sent"));
    };
    let header = codec::encode(&StreamHeader {
        vote,
        meta: snapshot.meta,
    })
    .map_err(network)?;
    let total = reader.total_bytes();
    let (tx, rx) = mpsc::channel::<RaftPayload>(READ_AHEAD);
    tx.send(RaftPayload {
        data: header.into(),
    })
    .await
    .map_err(network)?;
    // Reads on a blocking thread: they end when the archive does or the stream is dropped.
    let reading = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        reader.rewind();
        let (give_back, returned) = std::sync::mpsc::sync_channel(POOLED_BUFFERS);
        loop {
            // A buffer the network is done with: a fresh one costs a page fault per 4 KiB,
            // half of the reading's time.
            let mut buf = returned
                .try_recv()
                .unwrap_or_else(|_| vec![0u8; CHUNK_BYTES]);
            let len = reader.read_full(&mut buf)?;
            if len == 0 {
                return Ok(());
            }
            let data = Bytes::from_owner(PooledChunk {
                buf,
                len,
                give_back: give_back.clone(),
            });
            if tx.blocking_send(RaftPayload { data }).is_err() {
                return Ok(()); // the stream ended first: its error is the one to report
            }
        }
    });
    let limit = rpc_timeout + Duration::from_secs(total / MIN_BYTES_PER_SEC);
    let call = client.stream_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
    let answer = tokio::select! {
        closed = cancel => return Err(SendError::Closed(closed)),
        answer = tokio::time::timeout(limit, call) => answer,
    };
    // A failed read ends the stream early: the receiver refuses the short archive, and
    // the read error is the cause to report.
    if let Ok(Err(e)) = reading.await {
        return Err(SendError::StorageError(
            openraft::StorageError::from_io_error(
                openraft::ErrorSubject::Snapshot(None),
                openraft::ErrorVerb::Read,
                e,
            ),
        ));
    }
    let reply = match answer {
        Err(_) => return Err(network(format!("snapshot stream not done in {limit:?}"))),
        Ok(Err(status)) => {
            return Err(match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                    SendError::Unreachable(Unreachable::new(&status))
                }
                _ => network(status),
            })
        }
        Ok(Ok(reply)) => reply.into_inner(),
    };
    match codec::decode::<StreamReply>(&reply.data).map_err(network)? {
        Ok(response) => Ok(response),
        Err(fatal) => Err(SendError::RemoteError(RemoteError::new(target, fatal))),
    }
}

/// Receives a snapshot stream into a new database directory and has openraft install it.
/// A stream that is refused (a bad header or archive, an early end) or broken leaves
/// nothing behind and changes nothing.
pub async fn receive(
    raft: &Raft,
    stream: impl Stream<Item = Result<RaftPayload, Status>>,
) -> Result<StreamReply, Status> {
    let mut stream = std::pin::pin!(stream);
    let first = stream
        .next()
        .await
        .transpose()?
        .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
    let header: StreamHeader = codec::decode(&first.data)
        .map_err(|e| Status::invalid_argument(format!("snapshot stream header: {e}")))?;
    let started = std::time::Instant::now();
    let mut bytes = 0u64;
    let mut data = raft
        .begin_receiving_snapshot()
        .await
        .map_err(|e| Status::internal(format!("begin receiving a snapshot: {e}")))?;
    // One blocking thread writes while the next chunks are received and decrypted.
    let (chunks, mut to_write) = mpsc::channel::<Bytes>(WRITE_AHEAD);
    let writing = tokio::task::spawn_blocking(move || {
        let SnapshotData::Incoming(writer) = &mut *data else {
            unreachable!("begin_receiving_snapshot makes an incoming snapshot")
        };
        while let Some(chunk) = to_write.blocking_recv() {
            writer.write(&chunk)?;
        }
        // A stream that ended early is refused here: an archive openraft failed to
        // install would stop this replica.
        writer.check_complete()?;
        Ok(data)
    });
    let mut received = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                bytes += chunk.data.len() as u64;
                if chunks.send(chunk.data).await.is_err() {
                    break; // the writer stopped: its error is the one to report
                }
            }
            Err(status) => {
                received = Err(status);
                break;
            }
        }
    }
    drop(chunks);
    let written = writing.await.map_err(|e| Status::internal(e.to_string()))?;
    // A broken stream is the cause to report; the writer then only saw a short archive.
    received?;
    let data = written.map_err(refused)?;
    tracing::info!(
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "received a snapshot stream"
    );
    let snapshot = Snapshot {
        meta: header.meta,
        snapshot: data,
    };
    Ok(raft.install_full_snapshot(header.vote, snapshot).await)
}

/// A bad archive is the sender's fault; anything else (a full disk) is this replica's.
fn refused(e: std::io::Error) -> Status {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Status::invalid_argument(format!("snapshot stream refused: {e}"))
    } else {
        Status::internal(format!("write a received snapshot: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::RaftSnapshotBuilder;

    use super::*;
    use crate::network::Network;
    use crate::state_db::CacheConfig;

    /// A real replica (RocksDB log and state, openraft), alone in its cluster and leader.
    async fn replica(dir: &std::path::Path) -> Raft {
        let (log, sm) = crate::store::open(&dir.join("raft"), CacheConfig::default()).unwrap();
        let config = openraft::Config {
            cluster_name: "stream-test".into(),
            ..Default::default()
        };
        let network = Network::new(cairn_net::Transport::insecure());
        let raft = Raft::new(
            1,
            std::sync::Arc::new(config.validate().unwrap()),
            network,
            log,
            sm,
        )
        .await
        .unwrap();
        let node = BasicNode {
            addr: "127.0.0.1:1".into(),
        };
        raft.initialize(BTreeMap::from([(1, node)])).await.unwrap();
        raft.wait(None).current_leader(1, "leader").await.unwrap();
        raft
    }

    /// A snapshot of another replica's state: its header and archive bytes.
    async fn a_snapshot(dir: &std::path::Path) -> (StreamHeader, Vec<u8>) {
        let (_, mut sm) = crate::store::open(dir, CacheConfig::default()).unwrap();
        let built = sm.build_snapshot().await.unwrap();
        let SnapshotData::Outgoing(mut reader) = *built.snapshot else {
            unreachable!("a built snapshot is outgoing")
        };
        let mut bytes = vec![0; reader.total_bytes() as usize];
        assert_eq!(reader.read_full(&mut bytes).unwrap(), bytes.len());
        let header = StreamHeader {
            vote: Vote::new_committed(1, 1),
            meta: built.meta,
        };
        (header, bytes)
    }

    fn stream(messages: Vec<Vec<u8>>) -> impl Stream<Item = Result<RaftPayload, Status>> {
        tokio_stream::iter(
            messages
                .into_iter()
                .map(|m| Ok(RaftPayload { data: m.into() })),
        )
    }

    fn incoming(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir.join("raft/state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("incoming-"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_streams_change_nothing_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let raft = replica(dir.path()).await;
        let (header, archive) = a_snapshot(&dir.path().join("other")).await;
        let header = codec::encode(&header).unwrap();
        let applied = raft.metrics().borrow().last_applied;

        let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
            ("empty", vec![], "an empty snapshot stream"),
            (
                "bad header",
                vec![b"garbage".to_vec()],
                "snapshot stream header",
            ),
            (
                "not an archive",
                vec![header.clone(), b"not an archive at all".to_vec()],
                "bad magic",
            ),
            (
                "ended early",
                vec![header.clone(), archive[..archive.len() - 1].to_vec()],
                "ended after",
            ),
            (
                "too long",
                vec![header.clone(), archive.clone(), vec![0]],
                "past the end",
            ),
        ];
        for (what, messages, expect) in cases {
            let status = receive(&raft, stream(messages)).await.unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{what}: {status:?}"
            );
            assert!(status.message().contains(expect), "{what}: {status:?}");
            assert_eq!(incoming(dir.path()), Vec::<String>::new(), "{what}");
        }
        // A broken stream (the connection lost midway) as well.
        let broken = tokio_stream::iter(vec![
            Ok(RaftPayload {
                data: header.clone().into(),
            }),
            Ok(RaftPayload {
                data: archive[..100].to_vec().into(),
            }),
            Err(Status::unavailable("connection lost")),
        ]);
        let status = receive(&raft, broken).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(incoming(dir.path()), Vec::<String>::new());

        // The replica still serves, with its own state.
        assert!(raft.metrics().borrow().running_state.is_ok());
        assert_eq!(raft.metrics().borrow().last_applied, applied);
        raft.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_complete_stream_from_a_stale_leader_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let raft = replica(dir.path()).await;
        let (mut header, archive) = a_snapshot(&dir.path().join("other")).await;
        let applied = raft.metrics().borrow().last_applied;
        // A leader of term 0 is behind this replica's term 1: openraft answers with its
        // own vote and installs nothing.
        header.vote = Vote::new_committed(0, 2);
        let header = codec::encode(&header).unwrap();
        let mut messages = vec![header];
        messages.extend(archive.chunks(1000).map(<[u8]>::to_vec));
        let reply = receive(&raft, stream(messages)).await.unwrap().unwrap();
        assert_eq!(reply.vote, raft.metrics().borrow().vote);
        assert_eq!(raft.metrics().borrow().last_applied, applied);
        assert_eq!(incoming(dir.path()), Vec::<String>::new());
        raft.shutdown().await.unwrap();
    }
}
