//! The write path: cut the input into chunks, encode each, place its shards, write them
//! in parallel, and commit the object once every chunk is durable (DESIGN.md invariant
//! 1). Only one chunk (and its shards) is in memory at a time, whatever the input size.

use std::collections::{BTreeMap, HashSet, VecDeque};

use bytes::Bytes;

use cairn_common::erasure::Codec;
use cairn_common::NodeId;
use cairn_proto::meta as pm;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

use cairn_shard_io::ShardError;

use crate::error::{ClientError, Result};
use crate::Client;

/// What a successful put returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub size: u64,
    pub generation: u64,
    /// blake3 of the whole object.
    pub blake3: [u8; 32],
    /// Chunks written with fewer than all their shards (queued for repair).
    pub degraded_chunks: usize,
}

pub use cairn_common::Precondition;

/// Optional parts of a put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: String,
    pub metadata: std::collections::HashMap<String, String>,
    /// When set, the put fails (and commits nothing) unless the bytes hash to this.
    pub expected_blake3: Option<[u8; 32]>,
    pub precondition: Option<Precondition>,
}

/// How often a long put re-announces its uncommitted chunks (well inside the leader's
/// pending TTL, 1 h by default).
const REFRESH_PENDING_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Fills `buf` from `reader` until it is full or the input ends; returns bytes read.
async fn read_full(reader: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader
            .read(&mut buf[filled..])
            .await
            .map_err(|source| ClientError::Io {
                op: "read input".into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

impl Client {
    /// Stores everything `reader` yields as `bucket/key`, replacing any older version.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        reader: impl AsyncRead + Unpin,
    ) -> Result<PutOutcome> {
        self.put_with(bucket, key, reader, PutOptions::default())
            .await
    }

    /// Stores everything `reader` yields as `bucket/key` with the given options. Nothing
    /// becomes visible unless the whole input was read, stored durably and (when asked)
    /// matched the expected hash and the precondition.
    pub async fn put_with(
        &self,
        bucket: &str,
        key: &str,
        mut reader: impl AsyncRead + Unpin,
        options: PutOptions,
    ) -> Result<PutOutcome> {
        cairn_common::names::validate_bucket(bucket).map_err(invalid)?;
        cairn_common::names::validate_key(key).map_err(invalid)?;
        let mut chunks: Vec<pm::Chunk> = Vec::new();
        let mut size = 0u64;
        let mut degraded_chunks = 0;
        let mut hasher = blake3::Hasher::new();
        let mut refreshed = std::time::Instant::now();
        // Chunk N+1 is read while chunks N, N-1, ... are still being written (each write
        // is a task of its own, so it progresses while this one waits for input).
        let mut in_flight: VecDeque<ChunkWrite> = VecDeque::new();
        let abort_all = |tasks: &VecDeque<ChunkWrite>| {
            tasks.iter().for_each(|t| t.abort());
        };
        let mut done = false;
        while !done || !in_flight.is_empty() {
            if !done && in_flight.len() < WRITES_IN_FLIGHT {
                let mut buf = vec![0u8; self.chunk_size];
                let n = match read_full(&mut reader, &mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        abort_all(&in_flight);
                        return Err(e);
                    }
                };
                done = n < buf.len();
                if n == 0 {
                    continue;
                }
                buf.truncate(n);
                hasher.update(&buf);
                size += n as u64;
                // Every few minutes, tell the leader this write is still going on, so its
                // earlier chunks are not taken for orphans (see AllocateChunkRequest).
                let in_progress = if refreshed.elapsed() > REFRESH_PENDING_EVERY {
                    refreshed = std::time::Instant::now();
                    chunks.iter().map(|c| c.chunk_id.clone()).collect()
                } else {
                    Vec::new()
                };
                let (client, bucket) = (self.clone(), bucket.to_string());
                in_flight.push_back(tokio::spawn(async move {
                    client.write_chunk(&bucket, &buf, in_progress).await
                }));
                continue;
            }
            let Some(task) = in_flight.pop_front() else {
                break;
            };
            let chunk = match task.await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => {
                    abort_all(&in_flight);
                    return Err(e);
                }
                Err(e) => {
                    abort_all(&in_flight);
                    return Err(ClientError::Malformed {
                        what: format!("chunk write task failed: {e}"),
                    });
                }
            };
            if chunk.shards.len() < chunk.shard_hashes.len() {
                degraded_chunks += 1;
            }
            chunks.push(chunk);
        }
        let blake3: [u8; 32] = *hasher.finalize().as_bytes();
        if let Some(expected) = options.expected_blake3 {
            if expected != blake3 {
                return Err(ClientError::HashMismatch {
                    expected: cairn_common::ids::hex(&expected),
                    actual: cairn_common::ids::hex(&blake3),
                });
            }
        }
        cairn_common::failpoint::hit(cairn_common::failpoint::PUT_BEFORE_COMMIT).map_err(|e| {
            ClientError::Io {
                op: "commit".into(),
                source: e,
            }
        })?;
        let req = pm::CommitObjectRequest {
            bucket: bucket.into(),
            key: key.into(),
            size,
            chunks,
            blake3: blake3.to_vec().into(),
            content_type: options.content_type,
            metadata: options.metadata,
            precondition: options.precondition.map(Into::into),
        };
        let resp = self
            .meta
            .call(req, |mut c, r| async move { c.commit_object(r).await })
            .await?;
        Ok(PutOutcome {
            size,
            generation: resp.generation,
            blake3,
            degraded_chunks,
        })
    }

    /// Encodes and stores one chunk; returns its metadata once at least the scheme's
    /// durable minimum of shards is on disk. Failed shards are retried once on other nodes.
    pub(crate) async fn write_chunk(
        &self,
        bucket: &str,
        data: &[u8],
        in_progress: Vec<Bytes>,
    ) -> Result<pm::Chunk> {
        let alloc = self
            .meta
            .call(
                pm::AllocateChunkRequest {
                    bucket: bucket.into(),
                    exclude_nodes: vec![],
                    min_targets: 0,
                    in_progress,
                },
                |mut c, r| async move { c.allocate_chunk(r).await },
            )
            .await?;
        let chunk = cairn_proto::convert::chunk_id(&alloc.chunk_id)?;
        let redundancy =
            cairn_proto::convert::redundancy(alloc.redundancy, "allocated redundancy")?;
        let codec = Codec::new(redundancy).map_err(|e| ClientError::Malformed {
            what: e.to_string(),
        })?;
        let shards: Vec<Bytes> = codec.encode(data).into_iter().map(Bytes::from).collect();
        let hashes: Vec<[u8; 32]> = shards.iter().map(|s| *blake3::hash(s).as_bytes()).collect();

        // Shard index -> target; indices beyond the targets are unplaced for now.
        let mut targets: BTreeMap<u32, pm::NodeAddress> = alloc
            .targets
            .into_iter()
            .enumerate()
            .map(|(i, t)| (i as u32, t))
            .collect();
        let mut used: HashSet<NodeId> = targets.values().map(|t| t.node_id).collect();
        let mut durable: BTreeMap<u32, NodeId> = BTreeMap::new();
        let mut failed: Vec<u32> = (targets.len() as u32..shards.len() as u32).collect();
        // A node's "out of space" refusal, and whether any shard failed otherwise: the
        // write is reported as out of space only if every failure was.
        let mut no_space: Option<String> = None;
        let mut other_failure = false;

        for attempt in 0..2 {
            let mut writes = FuturesUnordered::new();
            for (&index, target) in &targets {
                let pool = self.nodes.clone();
                let data = shards[index as usize].clone();
                let hash = hashes[index as usize];
                let target = target.clone();
                writes.push(async move {
                    let r = pool.put_shard(&target.addr, chunk, index, data, hash).await;
                    (index, target.node_id, r)
                });
            }
            while let Some((index, node, result)) = writes.next().await {
                match result {
                    Ok(()) => {
                        durable.insert(index, node);
                    }
                    Err(e) => {
                        tracing::warn!(%chunk, index, node, error = %e, "shard write failed");
                        if let ShardError::NoSpace { message, .. } = &e {
                            no_space = Some(format!("node {node}: {message}"));
                        } else {
                            other_failure = true;
                        }
                        failed.push(index);
                    }
                }
            }
            if failed.is_empty() || attempt == 1 {
                break;
            }
            // Ask for other nodes for the failed shards (excluding every node used).
            let more = self
                .meta
                .call(
                    pm::AllocateChunkRequest {
                        bucket: bucket.into(),
                        exclude_nodes: used.iter().copied().collect(),
                        min_targets: 1,
                        in_progress: Vec::new(),
                    },
                    |mut c, r| async move { c.allocate_chunk(r).await },
                )
                .await;
            let spare: Vec<pm::NodeAddress> = match more {
                Ok(resp) => resp.targets,
                // Too few nodes left for a whole chunk: use none; durability decides below.
                Err(_) => Vec::new(),
            };
            targets = failed
                .drain(..)
                .zip(spare.into_iter().filter(|t| !used.contains(&t.node_id)))
                .collect();
            used.extend(targets.values().map(|t| t.node_id));
            if targets.is_empty() {
                break;
            }
        }
        let needed = redundancy.min_durable_shards();
        if durable.len() < needed {
            if let Some(reason) = no_space.filter(|_| !other_failure) {
                return Err(ClientError::NoSpace {
                    chunk,
                    durable: durable.len(),
                    needed,
                    reason,
                });
            }
            return Err(ClientError::NotDurable {
                chunk,
                durable: durable.len(),
                needed,
            });
        }
        Ok(pm::Chunk {
            chunk_id: chunk.as_bytes().to_vec().into(),
            size: data.len() as u64,
            shard_hashes: hashes.iter().map(|h| h.to_vec().into()).collect(),
            shards: durable
                .into_iter()
                .map(|(index, node_id)| pm::ShardPlacement { index, node_id })
                .collect(),
            redundancy: Some(redundancy.into()),
        })
    }
}

/// One chunk being written by a task of its own.
type ChunkWrite = tokio::task::JoinHandle<Result<pm::Chunk>>;

/// Chunks of one put written at once (each holds a chunk-sized buffer).
const WRITES_IN_FLIGHT: usize = 4;

pub(crate) fn invalid(e: impl std::fmt::Display) -> ClientError {
    ClientError::InvalidArgument {
        message: e.to_string(),
    }
}
