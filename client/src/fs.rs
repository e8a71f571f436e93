//! The client library's side of the filesystem protocol, for mounts: one call carrying a
//! [`FsRequest`] to the metadata leader, and chunk-level writes and reads (a mount
//! decides itself which bytes go into which chunk).

use std::collections::HashMap;

use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{FsRequest, FsResult, NodeAddr};
use cairn_common::{ChunkId, NodeId};
use cairn_proto::meta as pm;

use crate::convert::{chunk_from_proto, chunk_to_proto};
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
            .call(pm::FsCallMessage { json }, |mut c, r| async move {
                c.fs_call(r).await
            })
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
        chunk_from_proto(chunk)
    }

    /// Reads, verifies and decodes one chunk, trying once more if too few shards answer.
    pub async fn load_chunk(
        &self,
        id: &ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
    ) -> Result<Vec<u8>> {
        let chunk = chunk_to_proto(id, meta);
        let addrs: Vec<pm::NodeAddress> = nodes
            .iter()
            .map(|n| pm::NodeAddress {
                node_id: n.id,
                addr: n.addr.clone(),
                down: n.down,
            })
            .collect();
        let by_id: HashMap<NodeId, &pm::NodeAddress> =
            addrs.iter().map(|n| (n.node_id, n)).collect();
        self.read_chunk_retrying(&chunk, &by_id).await
    }
}
