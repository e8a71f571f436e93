//! The client library's side of the filesystem protocol, for mounts: one call carrying a
//! [`FsRequest`] to the metadata leader, and chunk-level writes and reads (a mount
//! decides itself which bytes go into which chunk).

use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{FsRequest, FsResult, NodeAddr};
use cairn_common::ChunkId;
use cairn_proto::meta as pm;

use crate::error::{ClientError, Result};
use crate::Client;

impl Client {
    /// Sends one filesystem request; retried while no metadata leader can serve it.
    pub async fn fs_call(&self, request: &FsRequest) -> Result<FsResult> {
        let json = serde_json::to_vec(request).map_err(|e| ClientError::Malformed {
            what: format!("encode filesystem request: {e}"),
        })?;
        let resp = self
            .meta
            .call(
                pm::FsCallMessage { json: json.into() },
                |mut c, r| async move { c.fs_call(r).await },
            )
            .await?;
        serde_json::from_slice(&resp.json).map_err(|e| ClientError::Malformed {
            what: format!("decode filesystem reply: {e}"),
        })
    }

    /// Encodes `data` as one chunk for `bucket` and stores it durably (the scheme's
    /// minimum of shards fdatasynced); the chunk is not part of any file until a write
    /// commits it.
    pub async fn store_chunk(&self, bucket: &str, data: &[u8]) -> Result<(ChunkId, ChunkMeta)> {
        let chunk = self.write_chunk(bucket, data, Vec::new()).await?;
        Ok(chunk.try_into()?)
    }

    /// Reads, verifies and decodes one chunk of a file in `bucket`, trying once more if
    /// too few shards answer.
    pub async fn load_chunk(
        &self,
        bucket: &str,
        id: &ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
    ) -> Result<Vec<u8>> {
        self.read_chunk(bucket, *id, meta, nodes).await
    }

    /// Reads `len` bytes at `offset` of a chunk without decoding it: straight from the
    /// data shards that hold them (an erasure code keeps data shards as plain slices of
    /// the chunk; a replica is the whole chunk). Each node verifies the 64 KiB blocks it
    /// reads against the shard's block hashes, so a small read neither reads nor hashes a
    /// whole shard. If a shard is unavailable, the whole chunk is read and decoded.
    pub async fn load_chunk_range(
        &self,
        bucket: &str,
        id: &ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(meta.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        match self.read_data_shards(id, meta, nodes, offset, end).await {
            Some(bytes) => Ok(bytes),
            None => {
                let whole = self.load_chunk(bucket, id, meta, nodes).await?;
                Ok(whole[offset as usize..end as usize].to_vec())
            }
        }
    }

    /// The bytes `offset..end` of the chunk from its data shards, or `None` if any
    /// piece could not be read (the caller falls back to a full decode).
    async fn read_data_shards(
        &self,
        id: &ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
        offset: u64,
        end: u64,
    ) -> Option<Vec<u8>> {
        let addr_of = |index: u32| {
            let node = meta.shards.get(&index)?;
            nodes
                .iter()
                .find(|n| n.id == *node && !n.down)
                .map(|n| n.addr.clone())
        };
        // (shard index, offset in the shard, length)
        let mut pieces = Vec::new();
        match meta.redundancy {
            cairn_common::Redundancy::Replicas { n } => {
                let index = (0..n).find(|i| addr_of(*i).is_some())?;
                pieces.push((index, offset, end - offset));
            }
            cairn_common::Redundancy::Ec { k, .. } => {
                let shard_len = (meta.size as usize).div_ceil(k as usize).max(1) as u64;
                let mut at = offset;
                while at < end {
                    let index = (at / shard_len) as u32;
                    let in_shard = at % shard_len;
                    let take = (shard_len - in_shard).min(end - at);
                    pieces.push((index, in_shard, take));
                    at += take;
                }
            }
        }
        let reads = pieces.into_iter().map(|(index, from, len)| {
            let addr = addr_of(index);
            let pool = self.nodes.clone();
            async move {
                let bytes = pool
                    .get_shard_range(&addr?, *id, index, from, len)
                    .await
                    .ok()?;
                (bytes.len() as u64 == len).then_some(bytes)
            }
        });
        let parts = futures::future::join_all(reads).await;
        let mut out = Vec::with_capacity((end - offset) as usize);
        for part in parts {
            out.extend_from_slice(&part?);
        }
        Some(out)
    }
}
