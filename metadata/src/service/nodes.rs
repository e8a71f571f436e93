//! What storage nodes call: registering and heartbeats (which feed `Liveness`), the
//! orphan sweep's `FilterUnknownChunks`, and `ReportShardLost`. Readers report lost
//! shards too (clients, gateways, a node's object service: hence `CLIENTS_AND_NODES`);
//! it lives here because it is about where shards are, not about a bucket: no grant is
//! checked.
//!
//! Only the shared preamble and Raft plumbing of `service.rs`; nothing of the other
//! audiences.

use std::time::Instant;

use cairn_net::authorize;
use cairn_proto::meta as pm;
use tonic::{Request, Response, Status};

use super::{MetaServer, CLIENTS_AND_NODES, MAX_FILTER_BATCH, NODES};
use crate::liveness::Usage;
use crate::namespace::{Command, NamespaceError};
use cairn_common::DiskId;
use cairn_proto::convert::chunk_id;

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

    pub(super) async fn report_shard_lost(
        &self,
        req: Request<pm::ReportShardLostRequest>,
    ) -> Result<Response<pm::ReportShardLostResponse>, Status> {
        authorize(&req, "ReportShardLost", CLIENTS_AND_NODES)?;
        forward_unless_leader!(self, req, report_shard_lost);
        let req = req.into_inner();
        let chunk = chunk_id(&req.chunk_id)?;
        tracing::warn!(%chunk, index = req.index, node = req.node_id, "shard reported lost or corrupt");
        self.write(Command::ShardLost {
            chunk,
            index: req.index,
            node: req.node_id,
        })
        .await?;
        Ok(Response::new(pm::ReportShardLostResponse {}))
    }

    pub(super) async fn register_node(
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
        authorize(&req, "Heartbeat", NODES)?;
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
}
