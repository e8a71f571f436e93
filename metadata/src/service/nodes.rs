//! What storage nodes call: registering and heartbeats (which feed `Liveness`), the
//! orphan sweep's `FilterUnknownChunks`, and `ReportShardLost`. Readers report lost
//! shards too (clients, gateways, mounts: hence `READERS`, with a read grant on
//! the bucket they read); it lives here because it is about where shards are.
//!
//! Only the shared preamble and Raft plumbing of `service.rs`; nothing of the other
//! audiences.

use std::time::Instant;

use cairn_net::{authorize, Role};
use cairn_proto::meta as pm;
use cairn_shard_io::ShardSource;
use tonic::{Request, Response, Status};

use super::{MetaServer, MAX_FILTER_BATCH, NODES, NODES_AND_GATEWAYS, READERS};
use crate::liveness::Usage;
use crate::namespace::grants::Access;
use crate::namespace::{Command, NamespaceError};
use cairn_common::DiskId;
use cairn_proto::convert::chunk_id;

/// A storage node registers and heartbeats only under its own certificate, `node-ID`
/// (the name a node always presents): a process claiming another node's id (a copied
/// configuration, a wrong id) is refused before anything is recorded, with
/// FAILED_PRECONDITION, which stops it. A replica forwarding a node's call checked it
/// before forwarding; without TLS there is no certificate to check.
#[allow(clippy::result_large_err)]
fn require_own_certificate(caller: Option<(Role, String)>, node: u64) -> Result<(), Status> {
    match caller {
        Some((Role::Node, name)) if name != format!("node-{node}") => {
            Err(Status::failed_precondition(format!(
                "certificate {name:?} cannot act for storage node {node}: a node acts only \
                 under its own certificate, node-{node}; check the node's id and its TLS \
                 directory"
            )))
        }
        _ => Ok(()),
    }
}

/// The disk id a node presents: empty from nodes older than disk ids.
fn presented_disk(bytes: &[u8]) -> Result<Option<DiskId>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    DiskId::from_slice(bytes)
        .map(Some)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

impl MetaServer {
    pub(super) async fn filter_unknown_chunks(
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
            .map(|b| chunk_id(b))
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

    /// A reader's report of a missing or corrupt shard. A storage node reports its own
    /// shards (scrub, through its gateway certificate) without naming a bucket; anyone else names the bucket the chunk was
    /// read from and must be allowed to read it. Either way the report is only a claim:
    /// the placement is dropped (and the chunk rebuilt) only when the node holding the
    /// shard confirms it missing or corrupt, so neither a false report nor a reused node
    /// address can make a chunk unreadable.
    pub(super) async fn report_shard_lost(
        &self,
        req: Request<pm::ReportShardLostRequest>,
    ) -> Result<Response<pm::ReportShardLostResponse>, Status> {
        // A node's own reports come from its scrub, which calls through the node's
        // gateway certificate.
        let roles = if req.get_ref().bucket.is_empty() {
            NODES_AND_GATEWAYS
        } else {
            READERS
        };
        authorize(&req, "ReportShardLost", roles)?;
        forward_unless_leader!(self, req, report_shard_lost);
        if !req.get_ref().bucket.is_empty() {
            self.require(&req, &req.get_ref().bucket, Access::Read)
                .await?;
        }
        let req = req.into_inner();
        let chunk = chunk_id(&req.chunk_id)?;
        let (index, node) = (req.index, req.node_id);
        let placed = self
            .read(|ns| {
                let meta = ns.chunk(&chunk)?;
                let addr = ns.nodes().get(&node)?.addr.clone();
                (meta.shards.get(&index) == Some(&node)).then(|| (meta.clone(), addr))
            })
            .await?;
        let Some((meta, addr)) = placed else {
            // Not (or no longer) where the reporter thought: nothing to drop.
            return Ok(Response::new(pm::ReportShardLostResponse {
                dropped: false,
            }));
        };
        let _verifying = self.verifications.try_acquire().map_err(|_| {
            Status::unavailable("too many lost-shard reports are being checked; retry")
        })?;
        let source = ShardSource { index, node, addr };
        match self.pool.read_verified_shard(chunk, &meta, &source).await {
            Ok(_) => {
                tracing::info!(%chunk, index, node, "a shard reported lost is intact on its node: kept");
                return Ok(Response::new(pm::ReportShardLostResponse {
                    dropped: false,
                }));
            }
            Err(e) if !e.is_lost() => {
                // The node is down or slow: liveness and repair deal with that.
                tracing::info!(%chunk, index, node, error = %e, "could not check a shard reported lost: kept");
                return Ok(Response::new(pm::ReportShardLostResponse {
                    dropped: false,
                }));
            }
            Err(e) => tracing::warn!(%chunk, index, node, error = %e, "shard confirmed lost"),
        }
        self.write(Command::ShardLost { chunk, index, node })
            .await?;
        Ok(Response::new(pm::ReportShardLostResponse { dropped: true }))
    }

    pub(super) async fn register_node(
        &self,
        req: Request<pm::RegisterNodeRequest>,
    ) -> Result<Response<pm::RegisterNodeResponse>, Status> {
        let caller = authorize(&req, "RegisterNode", NODES)?;
        require_own_certificate(caller, req.get_ref().node_id)?;
        forward_unless_leader!(self, req, register_node);
        let req = req.into_inner();
        if req.node_id == 0 {
            return Err(Status::invalid_argument("node id 0 is reserved"));
        }
        if req.addr.is_empty() {
            return Err(Status::invalid_argument("node address is empty"));
        }
        let disk = presented_disk(&req.disk_id)?;
        // Only for the log: how many shards a replacement forgets (the decision is the
        // state machine's, in apply).
        let forgotten = {
            let state = self.state.read().expect("state lock poisoned");
            let ns = &state.namespace;
            match (ns.disk_of(req.node_id), disk) {
                (Some(registered), Some(presented))
                    if registered != presented && req.replace_empty =>
                {
                    Some(ns.shards_per_node().get(&req.node_id).copied().unwrap_or(0))
                }
                _ => None,
            }
        };
        let registered = self
            .write(Command::RegisterNode {
                id: req.node_id,
                addr: req.addr.clone(),
                zone: req.zone,
                disk,
                replace_empty: req.replace_empty,
            })
            .await;
        if let Err(status) = &registered {
            if status.code() == tonic::Code::FailedPrecondition {
                tracing::warn!(node = req.node_id, addr = %req.addr, reason = status.message(), "storage node refused");
            }
        }
        registered?;
        if let Some(shards) = forgotten {
            tracing::warn!(
                node = req.node_id,
                shards,
                "storage node replaced by an empty data directory (--replace-empty): its shards are forgotten and rebuilt"
            );
        }
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

    pub(super) async fn heartbeat(
        &self,
        req: Request<pm::HeartbeatRequest>,
    ) -> Result<Response<pm::HeartbeatResponse>, Status> {
        let caller = authorize(&req, "Heartbeat", NODES)?;
        require_own_certificate(caller, req.get_ref().node_id)?;
        forward_unless_leader!(self, req, heartbeat);
        let req = req.into_inner();
        let presented = presented_disk(&req.disk_id)?;
        let registered = {
            let state = self.state.read().expect("state lock poisoned");
            let ns = &state.namespace;
            ns.nodes()
                .contains_key(&req.node_id)
                .then(|| ns.disk_of(req.node_id))
        };
        match (registered, presented) {
            (None, _) => {
                return Err(Status::not_found(format!(
                    "storage node {} is not registered",
                    req.node_id
                )))
            }
            // Another process now holds this node id with another data directory (it
            // registered with --replace-empty): this one must stop.
            (Some(Some(registered)), Some(presented)) if registered != presented => {
                return Err(crate::convert::status_from(NamespaceError::WrongDisk {
                    node: req.node_id,
                    registered,
                    presented,
                }))
            }
            _ => {}
        }
        {
            let mut liveness = self.liveness.lock().expect("liveness lock poisoned");
            liveness.record(
                req.node_id,
                Usage {
                    capacity_bytes: req.capacity_bytes,
                    used_bytes: req.used_bytes,
                    shard_count: req.shard_count,
                    quarantined_count: req.quarantined_count,
                },
                Instant::now(),
            );
            liveness.record_version(req.node_id, &req.version);
        }
        Ok(Response::new(pm::HeartbeatResponse {}))
    }
}
