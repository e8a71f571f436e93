//! Buckets and objects: what clients and gateways call to create, list and delete buckets
//! and to write (allocate chunks, commit), read, list and delete objects. Every call but
//! `CreateBucket` (cluster admins) and `ListBuckets` (filtered to what the caller may see)
//! is checked against the caller's grant on its bucket.
//!
//! Only the shared preamble and Raft plumbing of `service.rs`; nothing of the other
//! audiences (nodes, admin, grants, mounts).

use std::time::Instant;

use cairn_common::names::{validate_bucket, validate_key, MAX_KEY_BYTES};
use cairn_common::placement::place;
use cairn_common::{ChunkId, NodeId};
use cairn_net::authorize;
use cairn_proto::convert;
use cairn_proto::meta as pm;
use tonic::{Request, Response, Status};

use super::{now_secs, MetaServer, CLIENTS, CLIENTS_AND_MOUNTS, MAX_FILTER_BATCH};
use crate::convert::{attrs_from_proto, extents_to_proto, status_from};
use crate::liveness::{placement_candidates, NodeState};
use crate::namespace::grants::Access;
use crate::namespace::{ChunkMeta, Command, CommandResult, ListQuery, Namespace};

pub const DEFAULT_LIST_LIMIT: u32 = 1000;
pub const MAX_LIST_LIMIT: u32 = 10_000;

impl MetaServer {
    pub(super) async fn create_bucket(
        &self,
        req: Request<pm::CreateBucketRequest>,
    ) -> Result<Response<pm::CreateBucketResponse>, Status> {
        admin_call!(self, req, "CreateBucket" => create_bucket, "create buckets");
        let req = req.into_inner();
        validate_bucket(&req.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let redundancy = convert::redundancy(req.redundancy, "redundancy")?;
        let (exists, registered) = self
            .read(|ns| (ns.bucket(&req.name).is_ok(), ns.nodes().len()))
            .await?;
        if exists {
            return Err(Status::already_exists(format!(
                "bucket {:?} already exists",
                req.name
            )));
        }
        if registered < redundancy.min_durable_shards() {
            return Err(Status::failed_precondition(format!(
                "{redundancy} needs at least {} storage nodes to accept writes; the cluster has {registered}",
                redundancy.min_durable_shards()
            )));
        }
        self.write(Command::CreateBucket {
            name: req.name,
            redundancy,
            mtime: now_secs(),
        })
        .await?;
        Ok(Response::new(pm::CreateBucketResponse {}))
    }

    pub(super) async fn list_buckets(
        &self,
        req: Request<pm::ListBucketsRequest>,
    ) -> Result<Response<pm::ListBucketsResponse>, Status> {
        authorize(&req, "ListBuckets", CLIENTS)?;
        forward_unless_leader!(self, req, list_buckets);
        let buckets = self
            .read(|ns| {
                let caller = crate::access::caller(ns, &req)?;
                Ok::<_, Status>(
                    ns.buckets()
                        .into_iter()
                        .filter(|(name, _)| self.admins.may_see(ns, &caller, name))
                        .map(|(name, b)| pm::Bucket {
                            name,
                            redundancy: Some(b.redundancy.into()),
                        })
                        .collect(),
                )
            })
            .await??;
        Ok(Response::new(pm::ListBucketsResponse { buckets }))
    }

    pub(super) async fn allocate_chunk(
        &self,
        req: Request<pm::AllocateChunkRequest>,
    ) -> Result<Response<pm::AllocateChunkResponse>, Status> {
        // Mounts allocate the chunks of their writes too.
        bucket_call!(self, req, "AllocateChunk" => allocate_chunk, CLIENTS_AND_MOUNTS, bucket: Access::Write);
        let req = req.into_inner();
        if req.in_progress.len() > MAX_FILTER_BATCH * 10 {
            return Err(Status::invalid_argument("too many in-progress chunk ids"));
        }
        let in_progress = req
            .in_progress
            .iter()
            .map(|id| convert::chunk_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        // A writer re-announces its earlier chunks (a new leader learns them so); one that
        // stalled past their pending time must not revive chunks that may be swept.
        {
            let state = self.state.read().expect("state lock poisoned");
            self.require_pending(&state.namespace, &in_progress)?;
        }
        for id in in_progress {
            self.pending.start(id);
        }
        // No read round (`read`): `require` above waited until this leader applied its
        // own term. A leader deposed without knowing it places the chunk from a bucket
        // and node list at most one election old, and the write's commit then goes to
        // the real leader, which admits only chunks pending in its own term or young
        // enough for the nodes' orphan grace (`require_pending`): an error to retry,
        // never an acknowledged write lost.
        let (redundancy, nodes) = {
            let state = self.state.read().expect("state lock poisoned");
            let ns = &state.namespace;
            ns.bucket(&req.bucket)
                .map(|b| (b.redundancy, ns.nodes().clone()))
                .map_err(status_from)?
        };
        let now = Instant::now();
        let candidates = {
            let liveness = self.liveness.lock().expect("liveness lock poisoned");
            placement_candidates(
                &nodes,
                |id| (liveness.state(id, now), liveness.free_bytes(id)),
                |id| req.exclude_nodes.contains(&id),
            )
        };
        let chunk = ChunkId::random();
        let chosen = place(&chunk, &candidates, redundancy.total_shards());
        let term = self.raft.metrics().borrow().current_term;
        self.pending.leading_since(term, now);
        self.pending.start(chunk);
        let min_targets = match req.min_targets {
            0 => redundancy.min_durable_shards(),
            n => n as usize,
        };
        if chosen.len() < min_targets {
            return Err(Status::failed_precondition(format!(
                "bucket {:?} uses {redundancy}: a write needs at least {} storage nodes up, only {} are usable",
                req.bucket,
                redundancy.min_durable_shards(),
                chosen.len()
            )));
        }
        let targets = chosen
            .iter()
            .map(|id| pm::NodeAddress {
                node_id: *id,
                addr: nodes[id].addr.clone(),
                down: false,
            })
            .collect();
        Ok(Response::new(pm::AllocateChunkResponse {
            chunk_id: chunk.as_bytes().to_vec().into(),
            redundancy: Some(redundancy.into()),
            targets,
        }))
    }

    pub(super) async fn commit_object(
        &self,
        req: Request<pm::CommitObjectRequest>,
    ) -> Result<Response<pm::CommitObjectResponse>, Status> {
        bucket_call!(self, req, "CommitObject" => commit_object, bucket: Access::Write);
        let req = req.into_inner();
        validate_bucket(&req.bucket).map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let chunks = req
            .chunks
            .into_iter()
            .map(<(ChunkId, ChunkMeta)>::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let attrs = attrs_from_proto(&req.blake3, req.content_type, req.metadata)?;
        let precondition = convert::precondition(req.precondition)?;
        let chunk_ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        {
            let state = self.state.read().expect("state lock poisoned");
            self.require_pending(&state.namespace, &chunk_ids)?;
        }
        let result = self
            .write(Command::CommitObject {
                bucket: req.bucket,
                key: req.key,
                size: req.size,
                chunks,
                attrs,
                precondition,
                mtime: now_secs(),
            })
            .await;
        // Committed or refused, these chunks are no longer a write in progress: refused
        // ones are orphans for the storage nodes' sweep to reclaim. An UNAVAILABLE answer
        // is not final (the client retries), so they stay in progress.
        let final_answer = match &result {
            Ok(_) => true,
            Err(status) => status.code() != tonic::Code::Unavailable,
        };
        if final_answer {
            self.pending.finish(&chunk_ids);
        }
        let result = result?;
        let generation = match result {
            CommandResult::Committed { generation } => generation,
            _ => 0,
        };
        Ok(Response::new(pm::CommitObjectResponse { generation }))
    }

    pub(super) async fn lookup_object(
        &self,
        req: Request<pm::LookupObjectRequest>,
    ) -> Result<Response<pm::LookupObjectResponse>, Status> {
        bucket_call!(self, req, "LookupObject" => lookup_object, bucket: Access::Read);
        let req = req.into_inner();
        let resp = self
            .read(|ns| {
                let view = ns.lookup(&req.bucket, &req.key).map_err(status_from)?;
                let extents = extents_to_proto(&view);
                let nodes = self.node_addresses(
                    ns,
                    view.chunks
                        .iter()
                        .flat_map(|(_, c)| c.shards.values().copied()),
                );
                Ok::<_, Status>(pm::LookupObjectResponse {
                    info: Some(pm::ObjectInfo {
                        key: view.entry.key,
                        size: view.entry.size,
                        generation: view.entry.generation,
                        mtime: view.entry.mtime,
                        blake3: view
                            .attrs
                            .blake3
                            .map(|h| h.0.to_vec().into())
                            .unwrap_or_default(),
                        content_type: view.attrs.content_type,
                        metadata: view.attrs.metadata.into_iter().collect(),
                    }),
                    extents,
                    chunks: view
                        .chunks
                        .iter()
                        .map(|(id, c)| pm::Chunk::from((id, c)))
                        .collect(),
                    nodes,
                    inline: view.inline.into(),
                })
            })
            .await??;
        Ok(Response::new(resp))
    }

    pub(super) async fn list_objects(
        &self,
        req: Request<pm::ListObjectsRequest>,
    ) -> Result<Response<pm::ListObjectsResponse>, Status> {
        bucket_call!(self, req, "ListObjects" => list_objects, bucket: Access::Read);
        let req = req.into_inner();
        if [
            &req.prefix,
            &req.start_after,
            &req.skip_prefix,
            &req.delimiter,
        ]
        .iter()
        .any(|s| s.len() > MAX_KEY_BYTES)
        {
            return Err(Status::invalid_argument(format!(
                "prefix, delimiter and page position are limited to {MAX_KEY_BYTES} bytes"
            )));
        }
        let limit = match req.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        } as usize;
        let query = ListQuery {
            prefix: &req.prefix,
            start_after: &req.start_after,
            skip_prefix: &req.skip_prefix,
            delimiter: &req.delimiter,
            limit,
        };
        let page = self
            .read(|ns| ns.list(&req.bucket, &query))
            .await?
            .map_err(status_from)?;
        Ok(Response::new(pm::ListObjectsResponse {
            objects: page
                .objects
                .into_iter()
                .map(|e| pm::ObjectInfo {
                    key: e.key,
                    size: e.size,
                    generation: e.generation,
                    mtime: e.mtime,
                    ..Default::default()
                })
                .collect(),
            truncated: page.truncated,
            common_prefixes: page.common_prefixes,
        }))
    }

    pub(super) async fn delete_object(
        &self,
        req: Request<pm::DeleteObjectRequest>,
    ) -> Result<Response<pm::DeleteObjectResponse>, Status> {
        bucket_call!(self, req, "DeleteObject" => delete_object, bucket: Access::Write);
        let req = req.into_inner();
        validate_bucket(&req.bucket).map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.write(Command::DeleteObject {
            bucket: req.bucket,
            key: req.key,
            if_generation: (req.if_generation_match != 0).then_some(req.if_generation_match),
            mtime: now_secs(),
        })
        .await?;
        Ok(Response::new(pm::DeleteObjectResponse {}))
    }

    pub(super) async fn delete_bucket(
        &self,
        req: Request<pm::DeleteBucketRequest>,
    ) -> Result<Response<pm::DeleteBucketResponse>, Status> {
        bucket_call!(self, req, "DeleteBucket" => delete_bucket, name: Access::Admin);
        let req = req.into_inner();
        validate_bucket(&req.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.write(Command::DeleteBucket { name: req.name }).await?;
        Ok(Response::new(pm::DeleteBucketResponse {}))
    }

    fn node_addresses(
        &self,
        ns: &Namespace,
        ids: impl IntoIterator<Item = NodeId>,
    ) -> Vec<pm::NodeAddress> {
        let now = Instant::now();
        let mut ids: Vec<NodeId> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| {
                ns.nodes().get(&id).map(|n| pm::NodeAddress {
                    node_id: id,
                    addr: n.addr.clone(),
                    down: self.node_state(id, now) == NodeState::Down,
                })
            })
            .collect()
    }
}
