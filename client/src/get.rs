//! The read path: look the object up (converting the reply to `cairn-common`'s types
//! once, here), fetch only the chunks a range needs, each through the one verified chunk
//! reader (`cairn_shard_io::reader`: k shards, data shards of nodes that are up first,
//! every shard checked against the metadata's blake3, missing, corrupt or slow shards
//! replaced by parity; DESIGN.md invariant 3), and write the bytes out in order.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use cairn_common::chunk::{ChunkMeta, NodeAddr};
use cairn_common::fs::FileExtent;
use cairn_common::{ChunkId, NodeId};
use cairn_proto::meta as pm;
use cairn_shard_io::ChunkReadError;
use futures::stream::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{ClientError, Result};
use crate::Client;

/// A chunk with too few reachable shards is tried once more after this.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_millis(500);

/// An object's description, as `stat` and `get` return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    pub key: String,
    pub size: u64,
    pub generation: u64,
    pub mtime: u64,
    /// blake3 of the whole object (absent for objects written without one).
    pub blake3: Option<[u8; 32]>,
    pub content_type: String,
    pub metadata: std::collections::HashMap<String, String>,
    pub chunks: usize,
    pub degraded_chunks: usize,
}

/// An object as looked up by [`Client::open`].
#[derive(Clone, Debug)]
pub struct OpenObject {
    pub stat: ObjectStat,
    /// The bucket it was opened in (a reader reporting a lost shard names it).
    bucket: String,
    /// The object's byte runs in order; gaps between them read as `inline`, and past its
    /// end as zeros.
    extents: Vec<FileExtent>,
    /// The object's inline bytes (kept in the metadata), under its extents.
    inline: bytes::Bytes,
    chunks: HashMap<ChunkId, ChunkMeta>,
    nodes: Vec<NodeAddr>,
}

impl Client {
    pub async fn stat(&self, bucket: &str, key: &str) -> Result<ObjectStat> {
        Ok(self.open(bucket, key).await?.stat)
    }

    async fn lookup(&self, bucket: &str, key: &str) -> Result<pm::LookupObjectResponse> {
        cairn_common::names::validate_bucket(bucket).map_err(crate::put::invalid)?;
        cairn_common::names::validate_key(key).map_err(crate::put::invalid)?;
        self.meta
            .call(
                pm::LookupObjectRequest {
                    bucket: bucket.into(),
                    key: key.into(),
                },
                |mut c, r| async move { c.lookup_object(r).await },
            )
            .await
    }

    /// Writes the object's bytes (or the `range` of them) to `out`.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<ObjectStat> {
        let object = self.open(bucket, key).await?;
        self.read(&object, range, out).await?;
        Ok(object.stat)
    }

    /// Looks an object up once: its description and where its chunks are. Reading an
    /// opened object reads exactly this version, even if the key is overwritten meanwhile
    /// (until garbage collection reclaims the old chunks).
    pub async fn open(&self, bucket: &str, key: &str) -> Result<OpenObject> {
        open_object(bucket, self.lookup(bucket, key).await?)
    }

    /// Writes the opened object's bytes (or the `range` of them) to `out`.
    pub async fn read(
        &self,
        object: &OpenObject,
        range: Option<Range<u64>>,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<()> {
        let stat = &object.stat;
        let range = match range {
            None => 0..stat.size,
            Some(r) if r.start <= r.end && r.end <= stat.size => r,
            Some(r) => {
                return Err(ClientError::InvalidArgument {
                    message: format!(
                        "range {}..{} is outside the object's {} bytes",
                        r.start, r.end, stat.size
                    ),
                })
            }
        };
        let wanted: Vec<&FileExtent> = object
            .extents
            .iter()
            .filter(|e| e.offset.saturating_add(e.len) > range.start && e.offset < range.end)
            .collect();
        // The chunks to read, in order (consecutive extents often share one), fetched up
        // to READS_IN_FLIGHT ahead of the one being written out.
        let mut order: Vec<ChunkId> = wanted.iter().map(|e| e.chunk).collect();
        order.dedup();
        let mut fetched = futures::stream::iter(order.into_iter().map(|id| async move {
            let data = self
                .read_chunk(&object.bucket, id, &object.chunks[&id], &object.nodes)
                .await;
            (id, data)
        }))
        .buffered(READS_IN_FLIGHT);
        let mut at = range.start;
        let mut last: Option<(ChunkId, Vec<u8>)> = None;
        for extent in wanted {
            let start = extent.offset;
            let from = start.max(range.start);
            let to = extent.offset.saturating_add(extent.len).min(range.end);
            write_gap(out, &object.inline, at, from).await?;
            if last.as_ref().map(|(i, _)| *i) != Some(extent.chunk) {
                let Some((index, data)) = fetched.next().await else {
                    return Err(ClientError::Malformed {
                        what: "chunk order of the extents changed".into(),
                    });
                };
                debug_assert_eq!(index, extent.chunk);
                last = Some((index, data?));
            }
            let data = &last.as_ref().expect("just read").1;
            let lo = (extent.chunk_offset + (from - start)) as usize;
            let hi = lo + (to - from) as usize;
            let slice = data.get(lo..hi).ok_or_else(|| ClientError::Malformed {
                what: format!("extent reaches past its chunk's {} bytes", data.len()),
            })?;
            out.write_all(slice)
                .await
                .map_err(|source| ClientError::Io {
                    op: "write output".into(),
                    source,
                })?;
            at = to;
        }
        write_gap(out, &object.inline, at, range.end).await?;
        out.flush().await.map_err(|source| ClientError::Io {
            op: "flush output".into(),
            source,
        })?;
        Ok(())
    }

    /// Reads, verifies and decodes one chunk (see `cairn_shard_io::reader`), once more
    /// after a pause if too few shards answered (a node may be restarting). Shards found
    /// missing or corrupt are reported to the metadata service.
    pub(crate) async fn read_chunk(
        &self,
        bucket: &str,
        id: ChunkId,
        meta: &ChunkMeta,
        nodes: &[NodeAddr],
    ) -> Result<Vec<u8>> {
        let mut retried = false;
        loop {
            let (result, lost) = self.nodes.read_chunk(id, meta, nodes).await;
            self.report_lost_in(bucket, id, &lost).await;
            match result {
                Err(ChunkReadError::Unavailable { .. }) if !retried => {
                    retried = true;
                    tokio::time::sleep(UNAVAILABLE_RETRY_AFTER).await;
                }
                other => return other.map_err(ClientError::from),
            }
        }
    }

    /// A storage node's report of its own shards found missing or corrupt (scrub): no
    /// bucket is named, which only a node's or its gateway's certificate may do.
    pub async fn report_lost(&self, chunk: ChunkId, lost: &[(u32, NodeId)]) {
        self.report_lost_in("", chunk, lost).await
    }

    /// Tells the metadata service about shards of a chunk read from `bucket` found
    /// missing or corrupt (best effort: a failure here does not fail the read). The
    /// leader checks each with its node before it drops the placement.
    async fn report_lost_in(&self, bucket: &str, chunk: ChunkId, lost: &[(u32, NodeId)]) {
        for &(index, node_id) in lost {
            let req = pm::ReportShardLostRequest {
                chunk_id: chunk.as_bytes().to_vec().into(),
                index,
                node_id,
                bucket: bucket.into(),
            };
            let meta = self.meta.clone().with_retry_for(Duration::from_secs(3));
            if let Err(e) = meta
                .call(req, |mut c, r| async move { c.report_shard_lost(r).await })
                .await
            {
                tracing::warn!(%chunk, index, node_id, error = %e, "could not report a lost shard");
            }
        }
    }
}

/// Chunks one get reads ahead of the one it writes out.
const READS_IN_FLIGHT: usize = 4;

/// Writes the bytes `from..to` no extent covers: the inline bytes where there are some,
/// zeros past them (a hole in a sparse file).
async fn write_gap(
    out: &mut (impl AsyncWrite + Unpin),
    inline: &[u8],
    from: u64,
    to: u64,
) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let inline_to = to.min(inline.len() as u64);
    if from < inline_to {
        out.write_all(&inline[from as usize..inline_to as usize])
            .await
            .map_err(|source| ClientError::Io {
                op: "write output".into(),
                source,
            })?;
    }
    write_zeros(out, to - from.max(inline_to)).await
}

/// Writes `n` zero bytes (a hole in a sparse file).
async fn write_zeros(out: &mut (impl AsyncWrite + Unpin), mut n: u64) -> Result<()> {
    let zeros = [0u8; 64 * 1024];
    while n > 0 {
        let step = n.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..step])
            .await
            .map_err(|source| ClientError::Io {
                op: "write output".into(),
                source,
            })?;
        n -= step as u64;
    }
    Ok(())
}

/// The client's view of a lookup reply: the wire converted once, here.
fn open_object(bucket: &str, resp: pm::LookupObjectResponse) -> Result<OpenObject> {
    let chunks = resp
        .chunks
        .into_iter()
        .map(<(ChunkId, ChunkMeta)>::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let extents = resp
        .extents
        .iter()
        .map(|e| {
            let (chunk, _) =
                chunks
                    .get(e.chunk as usize)
                    .ok_or_else(|| ClientError::Malformed {
                        what: format!("extent names chunk #{} of {}", e.chunk, chunks.len()),
                    })?;
            Ok(FileExtent {
                offset: e.offset,
                len: e.len,
                chunk: *chunk,
                chunk_offset: e.chunk_offset,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let nodes = resp
        .nodes
        .into_iter()
        .map(|n| NodeAddr {
            id: n.node_id,
            addr: n.addr,
            down: n.down,
        })
        .collect();
    let info = resp.info.unwrap_or_default();
    let stat = ObjectStat {
        key: info.key,
        size: info.size,
        generation: info.generation,
        mtime: info.mtime,
        blake3: info.blake3[..].try_into().ok(),
        content_type: info.content_type,
        metadata: info.metadata,
        chunks: chunks.len(),
        degraded_chunks: chunks.iter().filter(|(_, c)| c.is_degraded()).count(),
    };
    Ok(OpenObject {
        stat,
        bucket: bucket.into(),
        extents,
        inline: resp.inline,
        chunks: chunks.into_iter().collect(),
        nodes,
    })
}
