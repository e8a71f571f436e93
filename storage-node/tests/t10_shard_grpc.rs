//! A whole storage node (`run_with_listener`) in-process, driven through the generated
//! gRPC client. No metadata service runs: the node's heartbeats just keep retrying.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_proto::common::ShardId;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::{put_shard_request, GetShardRequest, PutShardHeader, PutShardRequest};
use cairn_proto::{DATA_FRAME_BYTES, MAX_MESSAGE_BYTES};
use cairn_storage_node::{IoEngineChoice, NodeConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

struct Node {
    client: NodeServiceClient<Channel>,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

fn config(id: u64, data_dir: &Path) -> NodeConfig {
    NodeConfig {
        id,
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        data_dir: data_dir.to_path_buf(),
        zone: "default".into(),
        // Nothing listens here; registration keeps retrying in the background.
        meta: vec!["127.0.0.1:1".into()],
        heartbeat_interval_ms: 1000,
        io_engine: IoEngineChoice::Auto,
        capacity_bytes: Some(1 << 30),
        orphan_grace_ms: 3_600_000,
        orphan_sweep_interval_ms: 600_000,
        scrub_interval_ms: 0,
        scrub_bytes_per_sec: 50 << 20,
        rebuild_busy_share_pct: 25,
        metrics_listen: None,
        quarantine_retention_ms: 7 * 24 * 3600 * 1000,
        tls_dir: None,
        insecure: true,
        replace_empty: false,
    }
}

async fn must_start(cfg: NodeConfig) -> Node {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(cairn_storage_node::run_with_listener(
        cfg,
        listener,
        stop.clone(),
    ));
    // The listener is bound already, so the connection waits for the server at worst.
    let client = NodeServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the node");
    Node {
        client: client
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        stop,
        task,
    }
}

async fn must_stop(node: Node) {
    node.stop.cancel();
    drop(node.client);
    tokio::time::timeout(Duration::from_secs(10), node.task)
        .await
        .expect("node stops within 10 s")
        .unwrap()
        .unwrap();
}

async fn must_get(
    client: &mut NodeServiceClient<Channel>,
    id: &ShardId,
    offset: u64,
    length: u64,
) -> Result<(u64, Vec<u8>, Vec<u8>), tonic::Status> {
    let mut stream = client
        .get_shard(GetShardRequest {
            id: Some(id.clone()),
            offset,
            length,
        })
        .await?
        .into_inner();
    let first = stream.message().await?.expect("a first message");
    let mut data = first.data.to_vec();
    while let Some(frame) = stream.message().await? {
        assert!(frame.data.len() <= DATA_FRAME_BYTES);
        data.extend_from_slice(&frame.data);
    }
    Ok((first.shard_length, first.blake3.to_vec(), data))
}

fn shard_path(data_dir: &Path, chunk: &[u8], index: u32) -> PathBuf {
    let hex: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
    data_dir
        .join("shards")
        .join(&hex[..2])
        .join(format!("{hex}.{index}"))
}

/// Puts a 3 MiB shard in 256 KiB frames, reads it whole and by ranges, flips a data byte
/// on disk, and checks the next read is DATA_LOSS with the file moved to quarantine/.
/// Proves: streamed puts store exact bytes, ranged reads are exact, corruption is never
/// served and is quarantined, not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_range_then_corruption_is_data_loss_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = must_start(config(11, dir.path())).await;

    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hash = blake3::hash(&data).as_bytes().to_vec();
    let id = ShardId {
        chunk_id: (1..=16).collect(),
        index: 4,
    };
    let mut messages = vec![PutShardRequest {
        part: Some(put_shard_request::Part::Header(PutShardHeader {
            id: Some(id.clone()),
            length: data.len() as u64,
            blake3: hash.clone().into(),
        })),
    }];
    for frame in data.chunks(DATA_FRAME_BYTES) {
        messages.push(PutShardRequest {
            part: Some(put_shard_request::Part::Data(frame.to_vec().into())),
        });
    }
    node.client
        .put_shard(futures::stream::iter(messages))
        .await
        .unwrap();

    let (len, got_hash, whole) = must_get(&mut node.client, &id, 0, 0).await.unwrap();
    assert_eq!(len, data.len() as u64);
    assert_eq!(got_hash, hash);
    assert!(whole == data, "whole read differs");

    for (offset, length) in [
        (0u64, 4096u64),
        (65_530, 20),
        (1_000_000, 1_500_000),
        (3 * 1024 * 1024 - 1, 1),
    ] {
        let (_, _, part) = must_get(&mut node.client, &id, offset, length)
            .await
            .unwrap();
        assert_eq!(
            part,
            data[offset as usize..(offset + length) as usize],
            "range {offset}+{length}"
        );
    }
    let err = must_get(&mut node.client, &id, 3 * 1024 * 1024, 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);

    // Flip one byte in the data region (the last bytes of the file are data).
    let path = shard_path(dir.path(), &id.chunk_id, id.index);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 1_000;
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();

    let err = must_get(&mut node.client, &id, 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("quarantined"), "{}", err.message());
    assert!(!path.exists());
    let quarantined: Vec<_> = std::fs::read_dir(dir.path().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].starts_with("0102030405060708090a0b0c0d0e0f10.4."));
    let err = must_get(&mut node.client, &id, 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    must_stop(node).await;
}

/// Restarts on the same data directory: the shard is still there; a different node id is
/// refused with an error naming both ids. Proves the marker's swapped-disk detection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_shards_and_refuses_another_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = must_start(config(21, dir.path())).await;
    let id = ShardId {
        chunk_id: vec![0x55; 16].into(),
        index: 0,
    };
    let messages = vec![
        PutShardRequest {
            part: Some(put_shard_request::Part::Header(PutShardHeader {
                id: Some(id.clone()),
                length: 5,
                blake3: blake3::hash(b"hello").as_bytes().to_vec().into(),
            })),
        },
        PutShardRequest {
            part: Some(put_shard_request::Part::Data(b"hello".to_vec().into())),
        },
    ];
    node.client
        .put_shard(futures::stream::iter(messages))
        .await
        .unwrap();
    must_stop(node).await;

    let mut node = must_start(config(21, dir.path())).await;
    let (_, _, data) = must_get(&mut node.client, &id, 0, 0).await.unwrap();
    assert_eq!(data, b"hello");
    must_stop(node).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = cairn_storage_node::run_with_listener(
        config(22, dir.path()),
        listener,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("belongs to node 21, not to node 22"),
        "{message}"
    );
}
