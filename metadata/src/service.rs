//! The gRPC `MetaService`. Every replica accepts every call: a follower forwards it to
//! the leader (once; a forwarded call that lands on a non-leader answers UNAVAILABLE so
//! the client retries). On the leader, writes go through `Raft::client_write`, reads wait
//! for the leader's read index (`ensure_linearizable`) and then read the applied state.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_common::failpoint;
use cairn_common::names::{validate_bucket, validate_key, MAX_KEY_BYTES};
use cairn_common::placement::{place, Candidate};
use cairn_common::{ChunkId, NodeId};
use cairn_proto::meta as pm;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::meta_service_server::MetaService;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::convert::{
    attrs_from_proto, chunk_from_proto, chunk_id_from_proto, chunk_to_proto, extents_to_proto,
    precondition_from_proto, redundancy_from_proto, redundancy_to_proto, status_from,
};
use crate::leases::Leases;
use crate::liveness::{Liveness, NodeState, Usage};
use crate::namespace::{ListQuery, Namespace};
use crate::network::lazy_channel;
use crate::pending::PendingChunks;
use crate::repair::RepairStats;
use crate::state_machine::SharedState;
use crate::types::{Command, CommandResult, Raft};
use cairn_net::{authorize, Role};

use crate::access::Admins;
use crate::namespace::grants::Access;
use crate::namespace::tokens::TokenRecord;

mod fs;

const FORWARDED: &str = "x-cairn-forwarded";
/// Free space assumed for a node whose heartbeat the leader has not seen yet.
const UNKNOWN_FREE_BYTES: u64 = 1 << 40;
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
pub const MAX_LIST_LIMIT: u32 = 10_000;
/// Most chunk ids one FilterUnknownChunks call may ask about.
pub const MAX_FILTER_BATCH: usize = 10_000;

pub struct MetaServer {
    pub id: u64,
    pub raft: Raft,
    pub state: SharedState,
    pub liveness: Arc<Mutex<Liveness>>,
    repair: Arc<RepairStats>,
    pending: PendingChunks,
    leases: Arc<Mutex<Leases>>,
    peers: Mutex<HashMap<String, MetaServiceClient<Channel>>>,
    /// This replica's identity, for forwarding calls to the leader.
    transport: cairn_net::Transport,
    admins: Admins,
}

enum Route {
    Local,
    Forward(MetaServiceClient<Channel>),
}

/// Forwards the call to the leader unless this replica is the leader.
macro_rules! forward_unless_leader {
    ($self:ident, $req:ident, $method:ident) => {
        ::metrics::counter!("cairn_meta_requests_total", "method" => stringify!($method))
            .increment(1);
        let $req = match $self.route(&$req)? {
            Route::Local => $req,
            Route::Forward(mut client) => {
                // The leader checks grants (and resolves tokens): it must know whose
                // call this is.
                let caller = cairn_net::caller_of(&$req);
                let mut fwd = Request::new($req.into_inner());
                fwd.metadata_mut()
                    .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
                cairn_net::name_caller(fwd.metadata_mut(), &caller)?;
                return client.$method(fwd).await;
            }
        };
        let _ = &$req;
    };
}

fn membership_status(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Status::unavailable("metadata leadership changed; retry")
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(format!("membership change refused: {e}"))
        }
        e => Status::unavailable(format!("membership change failed: {e}")),
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl MetaServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        raft: Raft,
        state: SharedState,
        liveness: Arc<Mutex<Liveness>>,
        repair: Arc<RepairStats>,
        pending_ttl: std::time::Duration,
        leases: Arc<Mutex<Leases>>,
        transport: cairn_net::Transport,
    ) -> Self {
        MetaServer {
            id,
            raft,
            state,
            liveness,
            repair,
            pending: PendingChunks::new(pending_ttl),
            leases,
            peers: Mutex::new(HashMap::new()),
            transport,
            admins: Admins::default(),
        }
    }

    /// Names the cluster admins (see `access.rs`); without this call there are none.
    pub fn with_admins(mut self, admins: Admins) -> Self {
        self.admins = admins;
        self
    }

    /// Refuses unless the caller has `need` on `bucket` (see `access.rs`).
    #[allow(clippy::result_large_err)]
    async fn require<T>(&self, req: &Request<T>, bucket: &str, need: Access) -> Result<(), Status> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock poisoned");
        self.admins.require(&state.namespace, req, bucket, need)
    }

    /// Refuses unless the caller is a cluster admin (see `access.rs`).
    pub(crate) async fn require_admin<T>(
        &self,
        req: &Request<T>,
        what: &str,
    ) -> Result<(), Status> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock poisoned");
        self.admins.require_admin(&state.namespace, req, what)
    }

    /// Waits until this leader has applied an entry of its own term: everything committed
    /// before it was elected (a revoked token or grant among it) is then applied, so an
    /// access check never sees older state than the last acknowledged change. At once in
    /// steady state; just after an election, until the leader's first entry commits.
    async fn caught_up(&self) -> Result<(), Status> {
        let current = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term)
        };
        if current {
            return Ok(());
        }
        self.raft
            .ensure_linearizable()
            .await
            .map(drop)
            .map_err(|e| Status::unavailable(format!("metadata leader check failed: {e}; retry")))
    }

    fn route<T>(&self, req: &Request<T>) -> Result<Route, Status> {
        let (leader, addr) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let leader = m.current_leader;
            let addr = leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (leader, addr)
        };
        match (leader, addr) {
            (Some(l), _) if l == self.id => Ok(Route::Local),
            (Some(l), Some(addr)) => {
                if req.metadata().contains_key(FORWARDED) {
                    return Err(Status::unavailable(format!(
                        "metadata replica {} is not the leader (it believes {l} is); retry",
                        self.id
                    )));
                }
                let mut peers = self.peers.lock().expect("peer cache lock poisoned");
                let client = peers.entry(addr.clone()).or_insert_with(|| {
                    MetaServiceClient::new(lazy_channel(&self.transport, &addr))
                        .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
                });
                Ok(Route::Forward(client.clone()))
            }
            _ => Err(Status::unavailable(
                "no metadata leader is elected yet; retry shortly",
            )),
        }
    }

    async fn write(&self, cmd: Command) -> Result<CommandResult, Status> {
        let written = self.raft.client_write(cmd).await;
        if written.is_ok() {
            failpoint::hit(failpoint::META_COMMIT_BEFORE_REPLY)
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        match written {
            Ok(resp) => match resp.data {
                CommandResult::Rejected(e) => Err(status_from(e)),
                other => Ok(other),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(
                Status::unavailable("metadata leadership changed during the write; retry"),
            ),
            Err(e) => Err(Status::unavailable(format!("metadata write failed: {e}"))),
        }
    }

    /// Runs `f` on the applied state once it includes every write committed before this
    /// call (the leader's read index).
    async fn read<T>(&self, f: impl FnOnce(&Namespace) -> T) -> Result<T, Status> {
        self.raft.ensure_linearizable().await.map_err(|e| {
            Status::unavailable(format!("metadata leader check failed: {e}; retry"))
        })?;
        let state = self.state.read().expect("state lock poisoned");
        Ok(f(&state.namespace))
    }

    fn node_state(&self, node: NodeId, now: Instant) -> NodeState {
        self.liveness
            .lock()
            .expect("liveness lock poisoned")
            .state(node, now)
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

/// Who may call what. Metadata replicas may call everything: a follower forwards calls
/// to the leader under its own certificate, after checking the caller's role itself.
const CLIENTS: &[Role] = &[Role::Client, Role::Gateway, Role::Meta];
const NODES: &[Role] = &[Role::Node, Role::Meta];
const CLIENTS_AND_NODES: &[Role] = &[Role::Client, Role::Gateway, Role::Node, Role::Meta];
const ANYONE: &[Role] = &[Role::Client, Role::Gateway, Role::Node, Role::Meta];

#[tonic::async_trait]
impl MetaService for MetaServer {
    async fn create_bucket(
        &self,
        req: Request<pm::CreateBucketRequest>,
    ) -> Result<Response<pm::CreateBucketResponse>, Status> {
        authorize(&req, "CreateBucket", CLIENTS)?;
        forward_unless_leader!(self, req, create_bucket);
        self.require_admin(&req, "create buckets").await?;
        let req = req.into_inner();
        validate_bucket(&req.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let redundancy = redundancy_from_proto(req.redundancy)?;
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

    async fn list_buckets(
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
                        .filter(|(name, _)| self.admins.may_see(ns, &caller, name))
                        .map(|(name, b)| pm::Bucket {
                            name: name.clone(),
                            redundancy: Some(redundancy_to_proto(b.redundancy)),
                        })
                        .collect(),
                )
            })
            .await??;
        Ok(Response::new(pm::ListBucketsResponse { buckets }))
    }

    async fn allocate_chunk(
        &self,
        req: Request<pm::AllocateChunkRequest>,
    ) -> Result<Response<pm::AllocateChunkResponse>, Status> {
        authorize(&req, "AllocateChunk", CLIENTS)?;
        forward_unless_leader!(self, req, allocate_chunk);
        self.require(&req, &req.get_ref().bucket, Access::Write)
            .await?;
        let req = req.into_inner();
        if req.in_progress.len() > MAX_FILTER_BATCH * 10 {
            return Err(Status::invalid_argument("too many in-progress chunk ids"));
        }
        for id in &req.in_progress {
            self.pending.start(chunk_id_from_proto(id)?);
        }
        let (redundancy, nodes) = self
            .read(|ns| {
                ns.bucket(&req.bucket)
                    .map(|b| (b.redundancy, ns.nodes().clone()))
                    .map_err(status_from)
            })
            .await??;
        let now = Instant::now();
        let candidates: Vec<Candidate> = {
            let liveness = self.liveness.lock().expect("liveness lock poisoned");
            nodes
                .iter()
                .filter(|(id, n)| !req.exclude_nodes.contains(id) && !n.draining)
                .filter(|(id, _)| liveness.state(**id, now) == NodeState::Up)
                .map(|(id, n)| Candidate {
                    id: *id,
                    zone: n.zone.clone(),
                    free_bytes: liveness
                        .usage(*id)
                        .map(|u| u.capacity_bytes.saturating_sub(u.used_bytes))
                        .unwrap_or(UNKNOWN_FREE_BYTES)
                        .saturating_mul(u64::from(n.weight_pct))
                        / 100,
                })
                .collect()
        };
        let chunk = ChunkId::random();
        let chosen = place(&chunk, &candidates, redundancy.total_shards());
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
            redundancy: Some(redundancy_to_proto(redundancy)),
            targets,
        }))
    }

    async fn commit_object(
        &self,
        req: Request<pm::CommitObjectRequest>,
    ) -> Result<Response<pm::CommitObjectResponse>, Status> {
        authorize(&req, "CommitObject", CLIENTS)?;
        forward_unless_leader!(self, req, commit_object);
        self.require(&req, &req.get_ref().bucket, Access::Write)
            .await?;
        let req = req.into_inner();
        validate_bucket(&req.bucket).map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let chunks = req
            .chunks
            .into_iter()
            .map(chunk_from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let attrs = attrs_from_proto(&req.blake3, req.content_type, req.metadata)?;
        let precondition = precondition_from_proto(req.precondition)?;
        let chunk_ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
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

    async fn lookup_object(
        &self,
        req: Request<pm::LookupObjectRequest>,
    ) -> Result<Response<pm::LookupObjectResponse>, Status> {
        authorize(&req, "LookupObject", CLIENTS)?;
        forward_unless_leader!(self, req, lookup_object);
        self.require(&req, &req.get_ref().bucket, Access::Read)
            .await?;
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
                        .map(|(id, c)| chunk_to_proto(id, c))
                        .collect(),
                    nodes,
                })
            })
            .await??;
        Ok(Response::new(resp))
    }

    async fn list_objects(
        &self,
        req: Request<pm::ListObjectsRequest>,
    ) -> Result<Response<pm::ListObjectsResponse>, Status> {
        authorize(&req, "ListObjects", CLIENTS)?;
        forward_unless_leader!(self, req, list_objects);
        self.require(&req, &req.get_ref().bucket, Access::Read)
            .await?;
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

    async fn delete_object(
        &self,
        req: Request<pm::DeleteObjectRequest>,
    ) -> Result<Response<pm::DeleteObjectResponse>, Status> {
        authorize(&req, "DeleteObject", CLIENTS)?;
        forward_unless_leader!(self, req, delete_object);
        self.require(&req, &req.get_ref().bucket, Access::Write)
            .await?;
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

    async fn delete_bucket(
        &self,
        req: Request<pm::DeleteBucketRequest>,
    ) -> Result<Response<pm::DeleteBucketResponse>, Status> {
        authorize(&req, "DeleteBucket", CLIENTS)?;
        forward_unless_leader!(self, req, delete_bucket);
        self.require(&req, &req.get_ref().name, Access::Admin)
            .await?;
        let req = req.into_inner();
        validate_bucket(&req.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.write(Command::DeleteBucket { name: req.name }).await?;
        Ok(Response::new(pm::DeleteBucketResponse {}))
    }

    async fn filter_unknown_chunks(
        &self,
        req: Request<pm::FilterUnknownChunksRequest>,
    ) -> Result<Response<pm::FilterUnknownChunksResponse>, Status> {
        authorize(&req, "FilterUnknownChunks", NODES)?;
        forward_unless_leader!(self, req, filter_unknown_chunks);
        let req = req.into_inner();
        if req.chunk_ids.len() > MAX_FILTER_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_FILTER_BATCH} chunk ids per call"
            )));
        }
        let ids = req
            .chunk_ids
            .iter()
            .map(|b| chunk_id_from_proto(b))
            .collect::<Result<Vec<_>, _>>()?;
        let unknown = self
            .read(|ns| {
                ids.iter()
                    .filter(|id| !ns.chunk_known(id) && !self.pending.contains(id))
                    .map(|id| id.as_bytes().to_vec().into())
                    .collect()
            })
            .await?;
        Ok(Response::new(pm::FilterUnknownChunksResponse { unknown }))
    }

    async fn report_shard_lost(
        &self,
        req: Request<pm::ReportShardLostRequest>,
    ) -> Result<Response<pm::ReportShardLostResponse>, Status> {
        authorize(&req, "ReportShardLost", CLIENTS_AND_NODES)?;
        forward_unless_leader!(self, req, report_shard_lost);
        let req = req.into_inner();
        let chunk = chunk_id_from_proto(&req.chunk_id)?;
        tracing::warn!(%chunk, index = req.index, node = req.node_id, "shard reported lost or corrupt");
        self.write(Command::ShardLost {
            chunk,
            index: req.index,
            node: req.node_id,
        })
        .await?;
        Ok(Response::new(pm::ReportShardLostResponse {}))
    }

    async fn register_node(
        &self,
        req: Request<pm::RegisterNodeRequest>,
    ) -> Result<Response<pm::RegisterNodeResponse>, Status> {
        authorize(&req, "RegisterNode", NODES)?;
        forward_unless_leader!(self, req, register_node);
        let req = req.into_inner();
        if req.node_id == 0 {
            return Err(Status::invalid_argument("node id 0 is reserved"));
        }
        if req.addr.is_empty() {
            return Err(Status::invalid_argument("node address is empty"));
        }
        self.write(Command::RegisterNode {
            id: req.node_id,
            addr: req.addr.clone(),
            zone: req.zone,
        })
        .await?;
        self.liveness
            .lock()
            .expect("liveness lock poisoned")
            .record(
                req.node_id,
                Usage {
                    capacity_bytes: req.capacity_bytes,
                    used_bytes: req.used_bytes,
                    ..Usage::default()
                },
                Instant::now(),
            );
        tracing::info!(node = req.node_id, addr = %req.addr, "storage node registered");
        Ok(Response::new(pm::RegisterNodeResponse {}))
    }

    async fn heartbeat(
        &self,
        req: Request<pm::HeartbeatRequest>,
    ) -> Result<Response<pm::HeartbeatResponse>, Status> {
        authorize(&req, "Heartbeat", NODES)?;
        forward_unless_leader!(self, req, heartbeat);
        let req = req.into_inner();
        let known = {
            let state = self.state.read().expect("state lock poisoned");
            state.namespace.nodes().contains_key(&req.node_id)
        };
        if !known {
            return Err(Status::not_found(format!(
                "storage node {} is not registered",
                req.node_id
            )));
        }
        self.liveness
            .lock()
            .expect("liveness lock poisoned")
            .record(
                req.node_id,
                Usage {
                    capacity_bytes: req.capacity_bytes,
                    used_bytes: req.used_bytes,
                    shard_count: req.shard_count,
                    quarantined_count: req.quarantined_count,
                },
                Instant::now(),
            );
        Ok(Response::new(pm::HeartbeatResponse {}))
    }

    async fn cluster_status(
        &self,
        req: Request<pm::ClusterStatusRequest>,
    ) -> Result<Response<pm::ClusterStatusResponse>, Status> {
        authorize(&req, "ClusterStatus", ANYONE)?;
        forward_unless_leader!(self, req, cluster_status);
        let (counts, nodes, placed) = self
            .read(|ns| (ns.counts(), ns.nodes().clone(), ns.shards_per_node()))
            .await?;
        let now = Instant::now();
        let nodes = {
            let liveness = self.liveness.lock().expect("liveness lock poisoned");
            nodes
                .into_iter()
                .map(|(id, n)| {
                    let usage = liveness.usage(id).unwrap_or_default();
                    pm::NodeStatus {
                        node_id: id,
                        addr: n.addr,
                        zone: n.zone,
                        state: liveness.state(id, now).as_str().to_string(),
                        capacity_bytes: usage.capacity_bytes,
                        used_bytes: usage.used_bytes,
                        shard_count: usage.shard_count,
                        quarantined_count: usage.quarantined_count,
                        last_heartbeat_ms: liveness
                            .since_last(id, now)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0),
                        draining: n.draining,
                        weight_pct: n.weight_pct,
                        placed_shards: placed.get(&id).copied().unwrap_or(0),
                    }
                })
                .collect()
        };
        let (term, replicas) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            let replicas = membership
                .nodes()
                .map(|(id, node)| pm::MetaReplica {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                })
                .collect();
            (m.current_term, replicas)
        };
        Ok(Response::new(pm::ClusterStatusResponse {
            leader_id: self.id,
            term,
            replicas,
            nodes,
            buckets: counts.buckets,
            objects: counts.objects,
            chunks: counts.chunks,
            degraded_chunks: counts.degraded_chunks,
            pending_gc_shards: counts.pending_gc,
            repair_queue: self.repair.queue.load(Ordering::Relaxed),
            repaired_chunks: self.repair.repaired_chunks.load(Ordering::Relaxed),
            repaired_bytes: self.repair.repaired_bytes.load(Ordering::Relaxed),
            moved_shards: self.repair.moved_shards.load(Ordering::Relaxed),
            repair_bytes_per_sec: self.repair.bytes_per_sec.load(Ordering::Relaxed),
            repair_rate_bytes_per_sec: self.repair.rate_bytes_per_sec.load(Ordering::Relaxed),
            repair_eta_secs: self.repair.eta_secs(),
        }))
    }

    async fn add_replica(
        &self,
        req: Request<pm::AddReplicaRequest>,
    ) -> Result<Response<pm::AddReplicaResponse>, Status> {
        authorize(&req, "AddReplica", CLIENTS)?;
        forward_unless_leader!(self, req, add_replica);
        self.require_admin(&req, "change metadata membership")
            .await?;
        let req = req.into_inner();
        if req.id == 0 || req.addr.is_empty() {
            return Err(Status::invalid_argument(
                "a replica needs a non-zero id and an address",
            ));
        }
        let known = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().get_node(&req.id).cloned()
        };
        if let Some(node) = known {
            if node.addr != req.addr {
                return Err(Status::already_exists(format!(
                    "metadata replica {} is already a member at {}",
                    req.id, node.addr
                )));
            }
        }
        tracing::info!(id = req.id, addr = %req.addr, "adding metadata replica");
        self.raft
            .add_learner(req.id, BasicNode { addr: req.addr }, true)
            .await
            .map_err(membership_status)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([req.id].into()), false)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(pm::AddReplicaResponse {}))
    }

    async fn remove_replica(
        &self,
        req: Request<pm::RemoveReplicaRequest>,
    ) -> Result<Response<pm::RemoveReplicaResponse>, Status> {
        authorize(&req, "RemoveReplica", CLIENTS)?;
        forward_unless_leader!(self, req, remove_replica);
        self.require_admin(&req, "change metadata membership")
            .await?;
        let req = req.into_inner();
        let voters: Vec<u64> = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().voter_ids().collect()
        };
        if !voters.contains(&req.id) {
            return Err(Status::not_found(format!(
                "metadata replica {} is not a voter",
                req.id
            )));
        }
        if voters.len() == 1 {
            return Err(Status::failed_precondition(
                "cannot remove the last metadata replica",
            ));
        }
        tracing::info!(id = req.id, "removing metadata replica");
        self.raft
            .change_membership(ChangeMembers::RemoveVoters([req.id].into()), false)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(pm::RemoveReplicaResponse {}))
    }

    async fn set_node_draining(
        &self,
        req: Request<pm::SetNodeDrainingRequest>,
    ) -> Result<Response<pm::SetNodeDrainingResponse>, Status> {
        authorize(&req, "SetNodeDraining", CLIENTS)?;
        forward_unless_leader!(self, req, set_node_draining);
        self.require_admin(&req, "drain nodes").await?;
        let req = req.into_inner();
        tracing::info!(
            node = req.node_id,
            draining = req.draining,
            "node drain changed"
        );
        self.write(Command::SetDraining {
            node: req.node_id,
            draining: req.draining,
        })
        .await?;
        Ok(Response::new(pm::SetNodeDrainingResponse {}))
    }

    async fn remove_node(
        &self,
        req: Request<pm::RemoveNodeRequest>,
    ) -> Result<Response<pm::RemoveNodeResponse>, Status> {
        authorize(&req, "RemoveNode", CLIENTS)?;
        forward_unless_leader!(self, req, remove_node);
        self.require_admin(&req, "remove nodes").await?;
        let req = req.into_inner();
        self.write(Command::RemoveNode { node: req.node_id })
            .await?;
        tracing::info!(node = req.node_id, "storage node removed");
        Ok(Response::new(pm::RemoveNodeResponse {}))
    }

    async fn set_grant(
        &self,
        req: Request<pm::SetGrantRequest>,
    ) -> Result<Response<pm::SetGrantResponse>, Status> {
        authorize(&req, "SetGrant", CLIENTS)?;
        forward_unless_leader!(self, req, set_grant);
        self.require(&req, &req.get_ref().bucket, Access::Admin)
            .await?;
        let r = req.into_inner();
        let access = Access::parse(&r.access).map_err(Status::invalid_argument)?;
        if r.user.is_empty() || r.user.len() > 256 {
            return Err(Status::invalid_argument("user must be 1-256 bytes"));
        }
        self.write(Command::SetGrant {
            bucket: r.bucket,
            user: r.user,
            access,
        })
        .await?;
        Ok(Response::new(pm::SetGrantResponse {}))
    }

    async fn add_token(
        &self,
        req: Request<pm::AddTokenRequest>,
    ) -> Result<Response<pm::AddTokenResponse>, Status> {
        authorize(&req, "AddToken", CLIENTS)?;
        forward_unless_leader!(self, req, add_token);
        self.require_admin(&req, "make API tokens").await?;
        let r = req.into_inner();
        if !cairn_common::token::is_token_id(&r.id) {
            return Err(Status::invalid_argument(
                "a token id is 16 lowercase hex digits",
            ));
        }
        if r.user.is_empty() || r.user.len() > 256 {
            return Err(Status::invalid_argument("user must be 1-256 bytes"));
        }
        let hash: [u8; 32] = r
            .secret_hash
            .as_ref()
            .try_into()
            .map_err(|_| Status::invalid_argument("a token's secret hash is 32 bytes"))?;
        self.write(Command::AddToken {
            id: r.id.clone(),
            record: TokenRecord {
                user: r.user.clone(),
                hash,
                created: now_secs(),
            },
        })
        .await?;
        tracing::info!(token_id = r.id, user = r.user, "API token added");
        Ok(Response::new(pm::AddTokenResponse {}))
    }

    async fn list_tokens(
        &self,
        req: Request<pm::ListTokensRequest>,
    ) -> Result<Response<pm::ListTokensResponse>, Status> {
        authorize(&req, "ListTokens", CLIENTS)?;
        forward_unless_leader!(self, req, list_tokens);
        self.require_admin(&req, "list API tokens").await?;
        let tokens = self
            .read(|ns| {
                ns.tokens()
                    .map(|(id, t)| pm::TokenInfo {
                        id: id.clone(),
                        user: t.user.clone(),
                        created: t.created,
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(pm::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<pm::RevokeTokenRequest>,
    ) -> Result<Response<pm::RevokeTokenResponse>, Status> {
        authorize(&req, "RevokeToken", CLIENTS)?;
        forward_unless_leader!(self, req, revoke_token);
        self.require_admin(&req, "revoke API tokens").await?;
        let id = req.into_inner().id;
        self.write(Command::RevokeToken { id: id.clone() }).await?;
        tracing::info!(token_id = id, "API token revoked");
        Ok(Response::new(pm::RevokeTokenResponse {}))
    }

    async fn set_repair_throttle(
        &self,
        req: Request<pm::SetRepairThrottleRequest>,
    ) -> Result<Response<pm::SetRepairThrottleResponse>, Status> {
        authorize(&req, "SetRepairThrottle", CLIENTS)?;
        forward_unless_leader!(self, req, set_repair_throttle);
        self.require_admin(&req, "set the repair throttle").await?;
        let bytes_per_sec = req.into_inner().bytes_per_sec;
        if bytes_per_sec < (1 << 20) {
            return Err(Status::invalid_argument(
                "the repair throttle must be at least 1 MiB/s",
            ));
        }
        self.write(Command::SetRepairThrottle { bytes_per_sec })
            .await?;
        tracing::info!(bytes_per_sec, "repair throttle changed");
        Ok(Response::new(pm::SetRepairThrottleResponse {}))
    }

    async fn set_node_weight(
        &self,
        req: Request<pm::SetNodeWeightRequest>,
    ) -> Result<Response<pm::SetNodeWeightResponse>, Status> {
        authorize(&req, "SetNodeWeight", CLIENTS)?;
        forward_unless_leader!(self, req, set_node_weight);
        self.require_admin(&req, "weight nodes").await?;
        let req = req.into_inner();
        if !(1..=10_000).contains(&req.weight_pct) {
            return Err(Status::invalid_argument(
                "a weight must be between 1% and 10000%",
            ));
        }
        self.write(Command::SetNodeWeight {
            node: req.node_id,
            weight_pct: req.weight_pct,
        })
        .await?;
        Ok(Response::new(pm::SetNodeWeightResponse {}))
    }

    async fn rebalance_plan(
        &self,
        req: Request<pm::RebalancePlanRequest>,
    ) -> Result<Response<pm::RebalancePlanResponse>, Status> {
        authorize(&req, "RebalancePlan", CLIENTS)?;
        forward_unless_leader!(self, req, rebalance_plan);
        self.require_admin(&req, "plan rebalancing").await?;
        let (nodes, placed) = self
            .read(|ns| (ns.nodes().clone(), ns.shards_per_node()))
            .await?;
        let now = Instant::now();
        let eligible: std::collections::BTreeMap<u64, (u64, u32)> = nodes
            .iter()
            .filter(|(id, n)| !n.draining && self.node_state(**id, now) == NodeState::Up)
            .map(|(id, n)| (*id, (placed.get(id).copied().unwrap_or(0), n.weight_pct)))
            .collect();
        let moves = crate::rebalance::plan_moves(&eligible, 10_000_000);
        let mut after: std::collections::BTreeMap<u64, u64> =
            eligible.iter().map(|(n, (c, _))| (*n, *c)).collect();
        for (from, to) in &moves {
            *after.entry(*from).or_default() -= 1;
            *after.entry(*to).or_default() += 1;
        }
        let tolerance = crate::rebalance::tolerance(&after);
        Ok(Response::new(pm::RebalancePlanResponse {
            moves: moves.len() as u64,
            nodes: eligible
                .iter()
                .map(|(n, (c, w))| pm::RebalanceTarget {
                    node_id: *n,
                    weight_pct: *w,
                    placed_shards: *c,
                    after_shards: after[n],
                })
                .collect(),
            tolerance,
        }))
    }

    async fn fs_call(
        &self,
        req: Request<pm::FsCallMessage>,
    ) -> Result<Response<pm::FsCallMessage>, Status> {
        authorize(&req, "FsCall", CLIENTS)?;
        forward_unless_leader!(self, req, fs_call);
        self.require_admin(&req, "use the filesystem protocol (mounts)")
            .await?;
        let request: cairn_common::fs::FsRequest = serde_json::from_slice(&req.into_inner().json)
            .map_err(|e| {
            Status::invalid_argument(format!("malformed filesystem request: {e}"))
        })?;
        let result = self.serve_fs(request).await?;
        let json = serde_json::to_vec(&result)
            .map_err(|e| Status::internal(format!("encode filesystem reply: {e}")))?;
        Ok(Response::new(pm::FsCallMessage { json: json.into() }))
    }
}
