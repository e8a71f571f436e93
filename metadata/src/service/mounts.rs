//! The mounts' filesystem protocol (`MetaService.FsCall`) on the leader: sessions and
//! their leases, changes through Raft, reads at the leader's read index.
//!
//! The RPC entry (`fs_call`: role, leader, the caller's grants, JSON decoding) and what serves
//! the decoded request share this one file: the entry is a few lines and its only callee
//! is `serve_fs`, so the whole audience (mounts) reads top to bottom in one place, like
//! the other audiences' files. The filesystem semantics themselves are in
//! `namespace/fs.rs`. Only the shared preamble and Raft plumbing of `service.rs`; nothing
//! of the other audiences.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_common::fs::{
    FsErrorKind, FsFailure, FsQuery, FsReply, FsRequest, FsResult, FsStat, NodeAddr,
};
use cairn_common::ChunkId;
use cairn_proto::meta as pm;
use tonic::{Request, Response, Status};

use cairn_net::{authorize, Caller};

use super::{MetaServer, MOUNTS};
use crate::access;
use crate::fs_access;
use crate::liveness::NodeState;
use crate::namespace::grants::Access;
use crate::namespace::{default_redundancy, Command, CommandResult, Namespace};

/// Longest session name (a mount's description of itself, for logs).
const MAX_SESSION_NAME: usize = 256;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn fenced(session: u64) -> FsFailure {
    FsFailure::new(
        FsErrorKind::Fenced,
        format!("session {session} is not open (its lease expired or it was closed)"),
    )
}

impl MetaServer {
    pub(super) async fn fs_call(
        &self,
        req: Request<pm::FsCallMessage>,
    ) -> Result<Response<pm::FsCallMessage>, Status> {
        authorize(&req, "FsCall", MOUNTS)?;
        forward_unless_leader!(self, req, fs_call);
        // A cluster admin's mount may touch every bucket; anyone else's needs grants.
        self.caught_up().await?;
        let restricted = {
            let state = self.state.read().expect("state lock poisoned");
            let caller = access::caller(&state.namespace, &req)?;
            (!self.admins.is_admin(&caller)).then_some(caller)
        };
        let request: cairn_common::fs::FsRequest = serde_json::from_slice(&req.into_inner().json)
            .map_err(|e| {
            Status::invalid_argument(format!("malformed filesystem request: {e}"))
        })?;
        let result = match restricted {
            None => self.serve_fs(request).await?,
            Some(caller) => self.serve_fs_granted(request, &caller).await?,
        };
        let json = serde_json::to_vec(&result)
            .map_err(|e| Status::internal(format!("encode filesystem reply: {e}")))?;
        Ok(Response::new(pm::FsCallMessage { json: json.into() }))
    }

    /// Serves one request of a user who is not a cluster admin: only on the buckets the
    /// user is granted (`fs_access.rs`).
    async fn serve_fs_granted(
        &self,
        request: FsRequest,
        caller: &Caller,
    ) -> Result<FsResult, Status> {
        let may = |ns: &Namespace, bucket: &str, need: Access| {
            self.admins.allows(ns, caller, bucket, need)
        };
        {
            let state = self.state.read().expect("state lock poisoned");
            let ns = &state.namespace;
            if let Err(refused) = fs_access::check(ns, &request, |b, need| may(ns, b, need)) {
                tracing::info!(?caller, error = %refused, "filesystem request refused");
                return Ok(Err(refused));
            }
        }
        let lists_root = fs_access::lists_root(&request);
        let mut result = self.serve_fs(request).await?;
        if let (true, Ok(reply)) = (lists_root, &mut result) {
            let state = self.state.read().expect("state lock poisoned");
            let ns = &state.namespace;
            fs_access::filter_root_listing(reply, |b, need| may(ns, b, need));
        }
        Ok(result)
    }

    /// Serves one request; a `Status` only for transport-level trouble (no leader,
    /// a failed Raft write), which the mount retries.
    async fn serve_fs(&self, request: FsRequest) -> Result<FsResult, Status> {
        match request {
            FsRequest::OpenSession { name } => {
                if name.len() > MAX_SESSION_NAME {
                    return Ok(Err(FsFailure::new(
                        FsErrorKind::InvalidArgument,
                        "session name too long",
                    )));
                }
                let result = self
                    .fs_write(Command::OpenSession {
                        name,
                        now_ns: now_ns(),
                    })
                    .await?;
                let mut leases = self.leases.lock().expect("lease lock poisoned");
                Ok(result.map(|reply| match reply {
                    FsReply::Session { id, .. } => {
                        leases.renew(id, Instant::now());
                        tracing::info!(session = id, "mount session opened");
                        FsReply::Session {
                            id,
                            lease_ms: leases.ttl().as_millis() as u64,
                        }
                    }
                    other => other,
                }))
            }
            FsRequest::RenewSession { session } => {
                let open = self.read(|ns| ns.session_is_open(session)).await?;
                if !open {
                    return Ok(Err(fenced(session)));
                }
                self.leases
                    .lock()
                    .expect("lease lock poisoned")
                    .renew(session, Instant::now());
                Ok(Ok(FsReply::Done))
            }
            FsRequest::CloseSession { session } => {
                self.write(Command::EndSession { session }).await?;
                self.leases
                    .lock()
                    .expect("lease lock poisoned")
                    .forget(session);
                tracing::info!(session, "mount session closed");
                Ok(Ok(FsReply::Done))
            }
            FsRequest::Change {
                session,
                change,
                seq,
            } => {
                // A retry of a change applied already (its answer was lost, e.g. with a
                // leader): the first answer, without another Raft write. The state machine
                // answers the same for a retry that gets past this check.
                {
                    let state = self.state.read().expect("state lock poisoned");
                    if let Some(first) = state.namespace.first_answer(session, seq) {
                        let mut first = first.clone();
                        if let Ok(reply) = &mut first {
                            self.add_node_addresses(&state.namespace, reply, Instant::now());
                        }
                        return Ok(first);
                    }
                }
                let written: Vec<ChunkId> = match &change {
                    cairn_common::fs::FsChange::Write { chunks, .. }
                    | cairn_common::fs::FsChange::Compact { chunks, .. } => {
                        chunks.iter().map(|(id, _)| *id).collect()
                    }
                    _ => Vec::new(),
                };
                {
                    let state = self.state.read().expect("state lock poisoned");
                    if let Err(status) = self.require_pending(&state.namespace, &written) {
                        return Ok(Err(FsFailure::new(
                            FsErrorKind::Changed,
                            status.message().to_string(),
                        )));
                    }
                }
                let result = self
                    .fs_write(Command::Fs {
                        session,
                        change,
                        now_ns: now_ns(),
                        seq,
                    })
                    .await;
                // Committed or refused, these chunks are no longer a write in progress.
                if result.is_ok() {
                    self.pending.finish(&written);
                }
                let mut result = result?;
                if let Ok(reply @ FsReply::Extents(_)) = &mut result {
                    let state = self.state.read().expect("state lock poisoned");
                    self.add_node_addresses(&state.namespace, reply, Instant::now());
                }
                Ok(result)
            }
            FsRequest::Query { session, query } => self.fs_query(session, query).await,
        }
    }

    async fn fs_query(&self, session: u64, query: FsQuery) -> Result<FsResult, Status> {
        if query == FsQuery::StatFs {
            let (open, nodes, inodes) = self
                .read(|ns| {
                    (
                        ns.session_is_open(session),
                        ns.nodes().keys().copied().collect::<Vec<_>>(),
                        ns.inode_count(),
                    )
                })
                .await?;
            if !open {
                return Ok(Err(fenced(session)));
            }
            let liveness = self.liveness.lock().expect("liveness lock poisoned");
            let (capacity_bytes, used) = nodes.iter().filter_map(|id| liveness.usage(*id)).fold(
                (0u64, 0u64),
                |(c, u), usage| {
                    (
                        c.saturating_add(usage.capacity_bytes),
                        u.saturating_add(usage.used_bytes),
                    )
                },
            );
            // What can be stored, not raw disk: with the root's default redundancy (that of
            // a bucket made by `mkdir` there), ec 4+2 holds 4 bytes of data in 6 of disk.
            let redundancy = default_redundancy(nodes.len());
            return Ok(Ok(FsReply::Stat(FsStat {
                capacity_bytes: redundancy.storable_bytes(capacity_bytes),
                free_bytes: redundancy.storable_bytes(capacity_bytes.saturating_sub(used)),
                inodes,
                inodes_free: cairn_common::fs::UNLIMITED_INODES,
            })));
        }
        let now = Instant::now();
        self.read(|ns| {
            if !ns.session_is_open(session) {
                return Err(fenced(session));
            }
            let mut reply = ns.fs_query(session, query)?;
            self.add_node_addresses(ns, &mut reply, now);
            Ok(reply)
        })
        .await
    }

    /// Fills in where the nodes of an extent map's chunks are (and whether they are down).
    fn add_node_addresses(
        &self,
        ns: &crate::namespace::Namespace,
        reply: &mut FsReply,
        now: Instant,
    ) {
        let FsReply::Extents(map) = reply else {
            return;
        };
        let mut ids: Vec<u64> = map
            .chunks
            .iter()
            .flat_map(|(_, c)| c.shards.values().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        map.nodes = ids
            .into_iter()
            .filter_map(|id| {
                ns.nodes().get(&id).map(|n| NodeAddr {
                    id,
                    addr: n.addr.clone(),
                    down: self.node_state(id, now) == NodeState::Down,
                })
            })
            .collect();
    }

    /// Applies a filesystem command; its refusals are in the result, not the status.
    async fn fs_write(&self, cmd: Command) -> Result<FsResult, Status> {
        match self.write(cmd).await? {
            CommandResult::Fs(result) => Ok(result),
            other => Err(Status::internal(format!(
                "unexpected result of a filesystem command: {other:?}"
            ))),
        }
    }
}
