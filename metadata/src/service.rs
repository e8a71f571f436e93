//! The gRPC `MetaService`. Every replica accepts every call: a follower forwards it to
//! the leader (once; a forwarded call that lands on a non-leader answers UNAVAILABLE so
//! the client retries). On the leader, writes go through `Raft::client_write`, reads wait
//! for the leader's read index (at once under its lease, `leadership.rs`) and then read
//! the applied state.
//!
//! This file holds what every call shares: the server, the preamble (forward to the
//! leader, roles, grants, `caught_up`), Raft writes and linearizable reads, and the one
//! `impl MetaService`, which only dispatches each RPC to the inherent method of the same
//! name in the file of the audience that calls it:
//! - `objects`: buckets and objects (clients, gateways);
//! - `nodes`: what storage nodes call (registration, heartbeats, orphan sweep, lost shards);
//! - `admin`: cluster status and administration, metadata membership;
//! - `grants`: bucket grants and API tokens;
//! - `mounts`: the mounts' filesystem protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_common::failpoint;
use cairn_common::{ChunkId, NodeId};
use cairn_proto::meta as pm;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::meta_service_server::MetaService;
use cairn_shard_io::NodePool;
use openraft::error::{ClientWriteError, RaftError};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::convert::status_from;
use crate::group_commit::{GroupCommit, WriteError};
use crate::leadership::{self, QuorumCheck};
use crate::leases::Leases;
use crate::liveness::{Liveness, NodeState};
use crate::namespace::Namespace;
use crate::namespace::{Command, CommandResult};
use crate::network::lazy_channel;
use crate::pending::PendingChunks;
use crate::repair::RepairStats;
use crate::state_machine::SharedState;
use crate::types::Raft;
use cairn_net::Role;

use crate::access::Admins;
use crate::namespace::grants::Access;

const FORWARDED: &str = "x-cairn-forwarded";
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
    /// Storage node connections, for checking shards reported lost.
    pool: NodePool,
    /// Bounds the lost-shard reports being checked at once (each reads a shard).
    verifications: tokio::sync::Semaphore,
    /// Whether this replica, when it believes it leads, has a majority behind it.
    quorum: QuorumCheck,
    /// Client writes, batched into shared log entries.
    writes: GroupCommit,
}

/// Lost-shard reports checked at once; more are asked to retry.
const MAX_VERIFICATIONS: usize = 8;

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
            $crate::service::Route::Local => {
                $self.require_quorum().await?;
                $req
            }
            $crate::service::Route::Forward(mut client) => {
                // The leader checks grants (and resolves tokens): it must know whose
                // call this is.
                let caller = ::cairn_net::caller_of(&$req);
                let mut fwd = ::tonic::Request::new($req.into_inner());
                fwd.metadata_mut().insert(
                    $crate::service::FORWARDED,
                    ::tonic::metadata::MetadataValue::from_static("1"),
                );
                ::cairn_net::name_caller(fwd.metadata_mut(), &caller)?;
                return client.$method(fwd).await;
            }
        };
        let _ = &$req;
    };
}

/// The preamble of a cluster admin's call `"Rpc" => method`: a client's role, forwarded
/// to the leader unless this replica is it, then the caller must be a cluster admin
/// (`$what` names what is refused otherwise).
macro_rules! admin_call {
    ($self:ident, $req:ident, $rpc:literal => $method:ident, $what:literal) => {
        ::cairn_net::authorize(&$req, $rpc, $crate::service::CLIENTS)?;
        forward_unless_leader!($self, $req, $method);
        $self.require_admin(&$req, $what).await?;
    };
}

/// The preamble of a call `"Rpc" => method` on one bucket: a client's role (or one of
/// `$roles`), forwarded to the leader unless this replica is it, then the caller needs
/// `$need` on the bucket the request's field `$bucket` names.
macro_rules! bucket_call {
    ($self:ident, $req:ident, $rpc:literal => $method:ident, $bucket:ident: $need:expr) => {
        bucket_call!($self, $req, $rpc => $method, $crate::service::CLIENTS, $bucket: $need)
    };
    ($self:ident, $req:ident, $rpc:literal => $method:ident, $roles:expr, $bucket:ident: $need:expr) => {
        ::cairn_net::authorize(&$req, $rpc, $roles)?;
        forward_unless_leader!($self, $req, $method);
        $self.require(&$req, &$req.get_ref().$bucket, $need).await?;
    };
}

// Declared after the macros, which are in scope only below their definitions: the
// audience files use them.
mod admin;
mod backup;
mod grants;
mod mounts;
mod nodes;
mod objects;

pub use objects::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};

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
        let election = Duration::from_millis(raft.config().election_timeout_min);
        MetaServer {
            id,
            quorum: QuorumCheck::new(raft.clone(), id, leadership::confirmation_lasts(election)),
            writes: GroupCommit::start(raft.clone()),
            raft,
            state,
            liveness,
            repair,
            pending: PendingChunks::new(pending_ttl),
            leases,
            peers: Mutex::new(HashMap::new()),
            pool: NodePool::new(transport.clone()),
            transport,
            admins: Admins::default(),
            verifications: tokio::sync::Semaphore::new(MAX_VERIFICATIONS),
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

    /// Refuses a call this replica would serve as leader unless a majority of replicas
    /// acknowledges it (see `leadership.rs`): a leader cut off from the others answers
    /// UNAVAILABLE, and callers (storage nodes' heartbeats among them) turn to another
    /// replica, which forwards them to the leader the majority elected.
    async fn require_quorum(&self) -> Result<(), Status> {
        if self.quorum.confirm().await {
            return Ok(());
        }
        Err(Status::unavailable(format!(
            "metadata replica {} cannot reach a majority of the replicas; retry another",
            self.id
        )))
    }

    /// Commits `cmd` through the group commit (`group_commit.rs`) and returns its
    /// result once applied; a refusal is an error status.
    async fn write(&self, cmd: Command) -> Result<CommandResult, Status> {
        let written = self.writes.write(cmd).await;
        if written.is_ok() {
            failpoint::hit(failpoint::META_COMMIT_BEFORE_REPLY)
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        match written {
            Ok(CommandResult::Rejected(e)) => Err(status_from(e)),
            Ok(other) => Ok(other),
            Err(WriteError::Raft(e))
                if matches!(
                    *e,
                    RaftError::APIError(ClientWriteError::ForwardToLeader(_))
                ) =>
            {
                Err(Status::unavailable(
                    "metadata leadership changed during the write; retry",
                ))
            }
            Err(e @ WriteError::ResultCount { .. }) => Err(Status::internal(e.to_string())),
            Err(e) => Err(Status::unavailable(format!("metadata write failed: {e}"))),
        }
    }

    /// Runs `f` on the applied state once it includes every write committed before this
    /// call: under the leader's lease, or after a heartbeat round (`QuorumCheck::read_index`).
    async fn read<T>(&self, f: impl FnOnce(&Namespace) -> T) -> Result<T, Status> {
        self.quorum.read_index().await.map_err(|e| {
            Status::unavailable(format!("metadata leader check failed: {e}; retry"))
        })?;
        let state = self.state.read().expect("state lock poisoned");
        Ok(f(&state.namespace))
    }

    /// Refuses a write that would commit `chunks` the namespace has never held if their
    /// pending time ran out (see `PendingChunks::admits`): the storage nodes' orphan
    /// sweep may have deleted their shards, and acknowledging the write would lose it.
    /// Chunks the namespace holds or held are a retry, which the state machine answers.
    #[allow(clippy::result_large_err)]
    fn require_pending<'a>(
        &self,
        ns: &Namespace,
        chunks: impl IntoIterator<Item = &'a ChunkId>,
    ) -> Result<(), Status> {
        let term = self.raft.metrics().borrow().current_term;
        for id in chunks {
            if ns.chunk_known(id) || ns.chunk_released(id) || self.pending.admits(id, term) {
                continue;
            }
            return Err(Status::failed_precondition(format!(
                "chunk {id} was allocated more than {:?} ago (the pending-chunk ttl) and the \
                 storage nodes may have reclaimed its shards; write the data again",
                self.pending.ttl()
            )));
        }
        Ok(())
    }

    fn node_state(&self, node: NodeId, now: Instant) -> NodeState {
        self.liveness
            .lock()
            .expect("liveness lock poisoned")
            .state(node, now)
    }
}

/// Who may call what. Metadata replicas may call everything: a follower forwards calls
/// to the leader under its own certificate, after checking the caller's role itself.
const CLIENTS: &[Role] = &[Role::Client, Role::Gateway, Role::Meta];
const NODES: &[Role] = &[Role::Node, Role::Meta];
const NODES_AND_GATEWAYS: &[Role] = &[Role::Node, Role::Gateway, Role::Meta];
/// The filesystem protocol: mounts, and clients (a cluster admin's mount, tools).
const MOUNTS: &[Role] = &[Role::Client, Role::Mount, Role::Meta];
/// What a mount's writes need besides the filesystem protocol (chunk allocation).
const CLIENTS_AND_MOUNTS: &[Role] = &[Role::Client, Role::Gateway, Role::Mount, Role::Meta];
/// Lost-shard reports: every reader.
const READERS: &[Role] = &[
    Role::Client,
    Role::Gateway,
    Role::Mount,
    Role::Node,
    Role::Meta,
];
/// Every role: what any component needs to find the replicas.
const EVERY_ROLE: &[Role] = READERS;
/// Everyone but mounts, which may use nothing beyond the filesystem protocol.
const ANYONE: &[Role] = &[Role::Client, Role::Gateway, Role::Node, Role::Meta];

/// Writes the one `impl MetaService`: each RPC calls the inherent method of the same name
/// in its audience's file.
/// Server-streaming RPCs follow the unary ones after `@streams`, as `name(Request) ->
/// stream Item as StreamType;`, each answered by an inherent method returning the stream.
macro_rules! dispatch {
    ($($method:ident($request:ident) -> $response:ident;)*
     $(@streams $($smethod:ident($srequest:ident) -> stream $sitem:ident as $stype:ident;)*)?) => {
        #[tonic::async_trait]
        impl MetaService for MetaServer {
            $(
                async fn $method(
                    &self,
                    req: Request<pm::$request>,
                ) -> Result<Response<pm::$response>, Status> {
                    self.$method(req).await
                }
            )*
            $($(
                type $stype = std::pin::Pin<Box<
                    dyn futures::Stream<Item = Result<pm::$sitem, Status>> + Send + 'static,
                >>;
                async fn $smethod(
                    &self,
                    req: Request<pm::$srequest>,
                ) -> Result<Response<Self::$stype>, Status> {
                    self.$smethod(req).await
                }
            )*)?
        }

        // Were an inherent method missing, `self.$method` above would name the trait
        // method itself and recurse forever. The trait is not in scope in this child
        // module, so `MetaServer::$method` names only an inherent method there: a missing
        // one fails to compile.
        mod inherent_methods {
            const _: () = {
                $(let _ = super::MetaServer::$method;)*
                $($(let _ = super::MetaServer::$smethod;)*)?
            };
        }
    };
}

dispatch! {
    // objects.rs
    create_bucket(CreateBucketRequest) -> CreateBucketResponse;
    list_buckets(ListBucketsRequest) -> ListBucketsResponse;
    allocate_chunk(AllocateChunkRequest) -> AllocateChunkResponse;
    commit_object(CommitObjectRequest) -> CommitObjectResponse;
    lookup_object(LookupObjectRequest) -> LookupObjectResponse;
    list_objects(ListObjectsRequest) -> ListObjectsResponse;
    delete_object(DeleteObjectRequest) -> DeleteObjectResponse;
    delete_bucket(DeleteBucketRequest) -> DeleteBucketResponse;
    // nodes.rs
    register_node(RegisterNodeRequest) -> RegisterNodeResponse;
    heartbeat(HeartbeatRequest) -> HeartbeatResponse;
    filter_unknown_chunks(FilterUnknownChunksRequest) -> FilterUnknownChunksResponse;
    report_shard_lost(ReportShardLostRequest) -> ReportShardLostResponse;
    // admin.rs
    cluster_status(ClusterStatusRequest) -> ClusterStatusResponse;
    replica_status(ReplicaStatusRequest) -> ReplicaStatusResponse;
    add_replica(AddReplicaRequest) -> AddReplicaResponse;
    remove_replica(RemoveReplicaRequest) -> RemoveReplicaResponse;
    set_node_draining(SetNodeDrainingRequest) -> SetNodeDrainingResponse;
    remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    set_node_weight(SetNodeWeightRequest) -> SetNodeWeightResponse;
    rebalance_plan(RebalancePlanRequest) -> RebalancePlanResponse;
    set_repair_throttle(SetRepairThrottleRequest) -> SetRepairThrottleResponse;
    set_inline_limits(SetInlineLimitsRequest) -> SetInlineLimitsResponse;
    // grants.rs
    set_grant(SetGrantRequest) -> SetGrantResponse;
    add_token(AddTokenRequest) -> AddTokenResponse;
    list_tokens(ListTokensRequest) -> ListTokensResponse;
    revoke_token(RevokeTokenRequest) -> RevokeTokenResponse;
    // mounts.rs
    fs_call(FsCallMessage) -> FsCallMessage;
    // admin.rs
    state_digest(StateDigestRequest) -> StateDigestResponse;
    list_replicas(ListReplicasRequest) -> ListReplicasResponse;
    @streams
    // backup.rs
    backup(BackupRequest) -> stream BackupChunk as BackupStream;
}
