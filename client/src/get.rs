//! The read path: look the object up, fetch only the chunks a range needs, and for each
//! chunk read k shards (data shards of nodes that are up first), verify every shard
//! against the metadata's blake3, and decode. Missing, corrupt or slow shards are
//! replaced by parity (DESIGN.md invariant 3); a reader gets correct bytes or an error.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use cairn_common::erasure::Codec;
use cairn_common::{ChunkId, NodeId};
use cairn_proto::meta as pm;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::convert::redundancy_from_proto;
use crate::error::{ClientError, Result};
use crate::Client;

/// A shard read that has not answered by then gets a parity read raced against it.
const HEDGE_AFTER: Duration = Duration::from_millis(1500);
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
    resp: pm::LookupObjectResponse,
}

struct Candidate {
    index: u32,
    node: NodeId,
    addr: String,
}

impl Client {
    pub async fn stat(&self, bucket: &str, key: &str) -> Result<ObjectStat> {
        let resp = self.lookup(bucket, key).await?;
        Ok(stat_of(&resp))
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
        let resp = self.lookup(bucket, key).await?;
        Ok(OpenObject {
            stat: stat_of(&resp),
            resp,
        })
    }

    /// Writes the opened object's bytes (or the `range` of them) to `out`.
    pub async fn read(
        &self,
        object: &OpenObject,
        range: Option<Range<u64>>,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<()> {
        let (resp, stat) = (&object.resp, &object.stat);
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
        let nodes: HashMap<NodeId, &pm::NodeAddress> =
            resp.nodes.iter().map(|n| (n.node_id, n)).collect();
        let wanted: Vec<&pm::Extent> = resp
            .extents
            .iter()
            .filter(|e| e.offset.saturating_add(e.len) > range.start && e.offset < range.end)
            .collect();
        // The chunks to read, in order (consecutive extents often share one), fetched up
        // to READS_IN_FLIGHT ahead of the one being written out.
        let mut order: Vec<u32> = wanted.iter().map(|e| e.chunk).collect();
        order.dedup();
        for &index in &order {
            if index as usize >= resp.chunks.len() {
                return Err(ClientError::Malformed {
                    what: format!("extent names chunk #{index} of {}", resp.chunks.len()),
                });
            }
        }
        let nodes = &nodes;
        let mut fetched = futures::stream::iter(order.into_iter().map(|index| async move {
            let data = self
                .read_chunk_retrying(&resp.chunks[index as usize], nodes)
                .await;
            (index, data)
        }))
        .buffered(READS_IN_FLIGHT);
        let mut at = range.start;
        let mut last: Option<(u32, Vec<u8>)> = None;
        for extent in wanted {
            let start = extent.offset;
            let from = start.max(range.start);
            let to = extent.offset.saturating_add(extent.len).min(range.end);
            write_zeros(out, from.saturating_sub(at)).await?;
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
        write_zeros(out, range.end.saturating_sub(at)).await?;
        out.flush().await.map_err(|source| ClientError::Io {
            op: "flush output".into(),
            source,
        })?;
        Ok(())
    }

    /// [`Self::read_chunk`], once more after a pause if too few shards answered (a node
    /// may be restarting).
    pub(crate) async fn read_chunk_retrying(
        &self,
        chunk: &pm::Chunk,
        nodes: &HashMap<NodeId, &pm::NodeAddress>,
    ) -> Result<Vec<u8>> {
        match self.read_chunk(chunk, nodes).await {
            Err(ClientError::DataUnavailable { .. }) => {
                tokio::time::sleep(UNAVAILABLE_RETRY_AFTER).await;
                self.read_chunk(chunk, nodes).await
            }
            other => other,
        }
    }

    /// Reads, verifies and decodes one chunk.
    async fn read_chunk(
        &self,
        chunk: &pm::Chunk,
        nodes: &HashMap<NodeId, &pm::NodeAddress>,
    ) -> Result<Vec<u8>> {
        let id = ChunkId::from_slice(&chunk.chunk_id).map_err(|e| ClientError::Malformed {
            what: e.to_string(),
        })?;
        let redundancy = redundancy_from_proto(chunk.redundancy)?;
        let codec = Codec::new(redundancy).map_err(|e| ClientError::Malformed {
            what: e.to_string(),
        })?;
        let total = redundancy.total_shards();
        let needed = redundancy.data_shards();
        if chunk.shard_hashes.len() != total {
            return Err(ClientError::Malformed {
                what: format!("chunk {id} lists {} shard hashes", chunk.shard_hashes.len()),
            });
        }
        let shard_len = codec.shard_len(chunk.size as usize);

        // Up nodes before down ones; within each, data shards before parity.
        let mut candidates: Vec<(bool, Candidate)> = chunk
            .shards
            .iter()
            .filter(|s| (s.index as usize) < total)
            .filter_map(|s| {
                nodes.get(&s.node_id).map(|n| {
                    (
                        n.down,
                        Candidate {
                            index: s.index,
                            node: s.node_id,
                            addr: n.addr.clone(),
                        },
                    )
                })
            })
            .collect();
        candidates.sort_by_key(|(down, c)| (*down, c.index));
        let mut queue = candidates.into_iter().map(|(_, c)| c);

        let mut shards: Vec<Option<Vec<u8>>> = vec![None; total];
        let mut have = 0;
        let mut lost: Vec<(u32, NodeId)> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let launch = |c: Candidate| {
            let pool = self.nodes.clone();
            async move {
                let result = pool.get_shard(&c.addr, id, c.index).await;
                (c, result)
            }
        };
        for c in queue.by_ref().take(needed) {
            in_flight.push(launch(c));
        }
        while have < needed {
            let next = tokio::select! {
                next = in_flight.next() => next,
                _ = tokio::time::sleep(HEDGE_AFTER), if !in_flight.is_empty() => {
                    if let Some(c) = queue.next() {
                        in_flight.push(launch(c));
                    }
                    continue;
                }
            };
            let Some((c, result)) = next else {
                break;
            };
            match result {
                Ok(bytes)
                    if bytes.len() == shard_len
                        && blake3::hash(&bytes).as_bytes()[..]
                            == chunk.shard_hashes[c.index as usize][..] =>
                {
                    if shards[c.index as usize].is_none() {
                        shards[c.index as usize] = Some(bytes);
                        have += 1;
                    }
                    continue;
                }
                Ok(_) => {
                    tracing::warn!(chunk = %id, index = c.index, node = c.node, "shard failed verification");
                    lost.push((c.index, c.node));
                }
                Err(ClientError::NotFound { .. })
                | Err(ClientError::Server {
                    code: tonic::Code::DataLoss,
                    ..
                }) => {
                    tracing::warn!(chunk = %id, index = c.index, node = c.node, "shard missing or corrupt");
                    lost.push((c.index, c.node));
                }
                Err(e) => {
                    tracing::debug!(chunk = %id, index = c.index, node = c.node, error = %e, "shard read failed");
                }
            }
            if let Some(next) = queue.next() {
                in_flight.push(launch(next));
            }
        }
        drop(in_flight);
        self.report_lost(id, &lost).await;
        if have < needed {
            return Err(ClientError::DataUnavailable {
                chunk: id,
                available: have,
                needed,
            });
        }
        codec
            .decode(shards, chunk.size as usize)
            .map_err(|_| ClientError::Corrupt { chunk: id })
    }

    /// Tells the metadata service about shards found missing or corrupt (best effort:
    /// a failure here does not fail the read).
    pub async fn report_lost(&self, chunk: ChunkId, lost: &[(u32, NodeId)]) {
        for &(index, node_id) in lost {
            let req = pm::ReportShardLostRequest {
                chunk_id: chunk.as_bytes().to_vec().into(),
                index,
                node_id,
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

fn stat_of(resp: &pm::LookupObjectResponse) -> ObjectStat {
    let info = resp.info.clone().unwrap_or_default();
    ObjectStat {
        key: info.key,
        size: info.size,
        generation: info.generation,
        mtime: info.mtime,
        blake3: info.blake3[..].try_into().ok(),
        content_type: info.content_type,
        metadata: info.metadata,
        chunks: resp.chunks.len(),
        degraded_chunks: resp
            .chunks
            .iter()
            .filter(|c| c.shards.len() < c.shard_hashes.len())
            .count(),
    }
}
