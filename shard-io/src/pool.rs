//! Connections to storage nodes, one lazily connected channel per address, and the shard
//! calls the data path makes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use std::time::Duration;

use cairn_common::ChunkId;
use cairn_proto::common::ShardId;
use cairn_proto::node::node_service_client::NodeServiceClient;
use cairn_proto::node::{
    put_shard_request, GetShardRequest, PutShardHeader, PutShardRequest, StatShardRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::error::ShardError;
use cairn_net::Transport;

/// What one scrub pass on a node found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubCounts {
    /// Shards read and verified.
    pub checked: u64,
    /// Corrupt or unreadable shards: quarantined and reported lost.
    pub corrupt: u64,
    /// Of `corrupt`, those the disk could not read (EIO).
    pub unreadable: u64,
    /// Shards that could not be checked (left for the next pass).
    pub failed: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Verified shards of chunks the metadata service does not know, and their bytes
    /// (`None`: the node could not ask it).
    pub orphans: Option<(u64, u64)>,
}

/// Deadline for one whole shard transfer.
pub const SHARD_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline for one shard's header (`stat_shard`).
pub const STAT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct NodePool {
    clients: Arc<Mutex<HashMap<String, NodeServiceClient<Channel>>>>,
    transport: Transport,
}

impl NodePool {
    pub fn new(transport: Transport) -> NodePool {
        NodePool {
            clients: Arc::default(),
            transport,
        }
    }

    /// The identity the pool connects with (shared with the metadata client).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub(crate) fn client(&self, addr: &str) -> Result<NodeServiceClient<Channel>, ShardError> {
        let mut clients = self.clients.lock().expect("node pool lock poisoned");
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let channel = self
            .transport
            .channel(addr, |e| e.connect_timeout(Duration::from_secs(2)))
            .map_err(|e| ShardError::BadAddress {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let c = NodeServiceClient::new(channel)
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Stores one shard; returns once the node has it durably.
    pub async fn put_shard(
        &self,
        addr: &str,
        chunk: ChunkId,
        index: u32,
        data: Bytes,
        hash: [u8; 32],
    ) -> Result<(), ShardError> {
        let mut client = self.client(addr)?;
        let header = PutShardRequest {
            part: Some(put_shard_request::Part::Header(PutShardHeader {
                id: Some(ShardId {
                    chunk_id: chunk.as_bytes().to_vec().into(),
                    index,
                }),
                length: data.len() as u64,
                blake3: hash.to_vec().into(),
            })),
        };
        let frames = (0..data.len().div_ceil(cairn_proto::DATA_FRAME_BYTES)).map(move |i| {
            let start = i * cairn_proto::DATA_FRAME_BYTES;
            let end = (start + cairn_proto::DATA_FRAME_BYTES).min(data.len());
            PutShardRequest {
                part: Some(put_shard_request::Part::Data(data.slice(start..end))),
            }
        });
        let stream = tokio_stream::iter(std::iter::once(header).chain(frames));
        let mut request = tonic::Request::new(stream);
        request.set_timeout(SHARD_TIMEOUT);
        client
            .put_shard(request)
            .await
            .map_err(|s| ShardError::from_status(s, addr, chunk, index))?;
        Ok(())
    }

    /// Runs one scrub pass on a node and returns what it found.
    pub async fn scrub(&self, addr: &str) -> Result<ScrubCounts, tonic::Status> {
        let mut client = self
            .client(addr)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let mut request = tonic::Request::new(cairn_proto::node::ScrubRequest {});
        request.set_timeout(Duration::from_secs(24 * 3600));
        let r = client.scrub(request).await?.into_inner();
        Ok(ScrubCounts {
            checked: r.checked,
            corrupt: r.corrupt,
            unreadable: r.unreadable,
            failed: r.failed,
            bytes: r.bytes,
            orphans: (!r.orphans_unchecked).then_some((r.orphans, r.orphan_bytes)),
        })
    }

    /// Reads a whole shard and returns its bytes. The node verified them against its own
    /// block hashes, but nothing here checks them against the metadata's shard hash: read
    /// shards for their content through [`NodePool::read_verified_shard`] or the chunk
    /// reader (`reader.rs`).
    pub async fn get_shard(
        &self,
        addr: &str,
        chunk: ChunkId,
        index: u32,
    ) -> Result<Vec<u8>, ShardError> {
        self.get_shard_range(addr, chunk, index, 0, 0).await
    }

    /// Reads `length` bytes of a shard from `offset` (0: to the end). The node verifies
    /// every 64 KiB block it reads against the shard's block hash table (the only check a
    /// partial read can have: the metadata's hash covers the whole shard).
    pub async fn get_shard_range(
        &self,
        addr: &str,
        chunk: ChunkId,
        index: u32,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, ShardError> {
        let mut client = self.client(addr)?;
        let mut request = tonic::Request::new(GetShardRequest {
            id: Some(ShardId {
                chunk_id: chunk.as_bytes().to_vec().into(),
                index,
            }),
            offset,
            length,
        });
        request.set_timeout(SHARD_TIMEOUT);
        let failed = |s| ShardError::from_status(s, addr, chunk, index);
        let mut stream = client
            .get_shard(request)
            .await
            .map_err(failed)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(failed)?;
            if out.is_empty() && msg.shard_length > 0 {
                out.reserve_exact((msg.shard_length as usize).min(64 << 20));
            }
            out.extend_from_slice(&msg.data);
        }
        Ok(out)
    }

    /// The length and blake3 of a shard as its node's header records them (no data is
    /// read: cheap enough to ask for every shard of a node). Only metadata replicas may
    /// call it.
    pub async fn stat_shard(
        &self,
        addr: &str,
        chunk: ChunkId,
        index: u32,
    ) -> Result<(u64, [u8; 32]), ShardError> {
        let mut client = self.client(addr)?;
        let mut request = tonic::Request::new(StatShardRequest {
            id: Some(ShardId {
                chunk_id: chunk.as_bytes().to_vec().into(),
                index,
            }),
        });
        request.set_timeout(STAT_TIMEOUT);
        let reply = client
            .stat_shard(request)
            .await
            .map_err(|s| ShardError::from_status(s, addr, chunk, index))?
            .into_inner();
        let hash = reply.blake3[..]
            .try_into()
            .map_err(|_| ShardError::Failed {
                addr: addr.to_string(),
                code: tonic::Code::Internal,
                message: format!("StatShard answered a {}-byte blake3", reply.blake3.len()),
            })?;
        Ok((reply.length, hash))
    }
}
