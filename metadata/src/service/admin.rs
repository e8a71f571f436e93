//! Cluster administration: `ClusterStatus` and `ReplicaStatus` (anyone), and for cluster
//! admins only the metadata membership (add/remove replica), storage nodes' draining,
//! removal and weight, the repair throttle and the rebalance plan.
//!
//! Only the shared preamble and Raft plumbing of `service.rs`; nothing of the other
//! audiences.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cairn_net::authorize;
use cairn_proto::meta as pm;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};

use super::{MetaServer, ANYONE};
use crate::liveness::NodeState;
use crate::namespace::{Command, InlineLimits};

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

impl MetaServer {
    pub(super) async fn cluster_status(
        &self,
        req: Request<pm::ClusterStatusRequest>,
    ) -> Result<Response<pm::ClusterStatusResponse>, Status> {
        authorize(&req, "ClusterStatus", ANYONE)?;
        forward_unless_leader!(self, req, cluster_status);
        let ((counts, inline_bytes, inline_limits), nodes, placed) = self
            .read(|ns| {
                (
                    (ns.counts(), ns.inline_bytes_used(), ns.inline_limits()),
                    ns.nodes().clone(),
                    ns.shards_per_node(),
                )
            })
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
                        version: liveness.version(id).unwrap_or_default().to_string(),
                    }
                })
                .collect()
        };
        let (term, _, replicas) = self.membership_view();
        Ok(Response::new(pm::ClusterStatusResponse {
            leader_id: self.id,
            term,
            replicas,
            nodes,
            buckets: counts.buckets,
            inodes: counts.inodes,
            inline_bytes,
            inline_max_bytes: inline_limits.max_bytes,
            inline_budget_bytes: inline_limits.budget_bytes,
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
            repair_limit: self.repair.limit().describe().to_string(),
        }))
    }

    /// This replica's own figures, answered here (never forwarded) so that a client can
    /// ask each replica in turn, followers included.
    pub(super) async fn replica_status(
        &self,
        req: Request<pm::ReplicaStatusRequest>,
    ) -> Result<Response<pm::ReplicaStatusResponse>, Status> {
        authorize(&req, "ReplicaStatus", ANYONE)?;
        metrics::counter!("cairn_meta_requests_total", "method" => "replica_status").increment(1);
        let (leader_id, term, last_applied_index) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (
                m.current_leader.unwrap_or(0),
                m.current_term,
                m.last_applied.map_or(0, |l| l.index),
            )
        };
        Ok(Response::new(pm::ReplicaStatusResponse {
            replica_id: self.id,
            leader_id,
            term,
            last_applied_index,
            resident_bytes: crate::resident::resident_bytes().unwrap_or(0),
            version: cairn_common::RELEASE.to_string(),
        }))
    }

    pub(super) async fn add_replica(
        &self,
        req: Request<pm::AddReplicaRequest>,
    ) -> Result<Response<pm::AddReplicaResponse>, Status> {
        admin_call!(self, req, "AddReplica" => add_replica, "change metadata membership");
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

    /// The membership as this replica knows it (never forwarded: a replica cut off
    /// from the others still names them, and the caller tries them).
    pub(super) async fn list_replicas(
        &self,
        req: Request<pm::ListReplicasRequest>,
    ) -> Result<Response<pm::ListReplicasResponse>, Status> {
        authorize(&req, "ListReplicas", super::EVERY_ROLE)?;
        let (_, leader_id, replicas) = self.membership_view();
        Ok(Response::new(pm::ListReplicasResponse {
            replicas,
            leader_id,
        }))
    }

    /// The current term, the leader this replica knows of (0: none) and the membership.
    fn membership_view(&self) -> (u64, u64, Vec<pm::MetaReplica>) {
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
        (m.current_term, m.current_leader.unwrap_or(0), replicas)
    }

    pub(super) async fn state_digest(
        &self,
        req: Request<pm::StateDigestRequest>,
    ) -> Result<Response<pm::StateDigestResponse>, Status> {
        ::cairn_net::authorize(&req, "StateDigest", super::CLIENTS)?;
        self.require_admin(&req, "read the state digest").await?;
        let db = crate::state_machine::live_db(&self.state);
        let (applied, digest) = tokio::task::spawn_blocking(move || db.digest())
            .await
            .map_err(|e| Status::internal(format!("digest task: {e}")))?;
        Ok(Response::new(pm::StateDigestResponse {
            applied_index: applied.map_or(0, |id| id.index),
            applied_term: applied.map_or(0, |id| id.leader_id.term),
            digest: digest.to_hex().to_string(),
        }))
    }

    pub(super) async fn remove_replica(
        &self,
        req: Request<pm::RemoveReplicaRequest>,
    ) -> Result<Response<pm::RemoveReplicaResponse>, Status> {
        admin_call!(self, req, "RemoveReplica" => remove_replica, "change metadata membership");
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

    pub(super) async fn set_node_draining(
        &self,
        req: Request<pm::SetNodeDrainingRequest>,
    ) -> Result<Response<pm::SetNodeDrainingResponse>, Status> {
        admin_call!(self, req, "SetNodeDraining" => set_node_draining, "drain nodes");
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

    pub(super) async fn remove_node(
        &self,
        req: Request<pm::RemoveNodeRequest>,
    ) -> Result<Response<pm::RemoveNodeResponse>, Status> {
        admin_call!(self, req, "RemoveNode" => remove_node, "remove nodes");
        let req = req.into_inner();
        self.write(Command::RemoveNode { node: req.node_id })
            .await?;
        tracing::info!(node = req.node_id, "storage node removed");
        Ok(Response::new(pm::RemoveNodeResponse {}))
    }

    pub(super) async fn set_repair_throttle(
        &self,
        req: Request<pm::SetRepairThrottleRequest>,
    ) -> Result<Response<pm::SetRepairThrottleResponse>, Status> {
        admin_call!(self, req, "SetRepairThrottle" => set_repair_throttle,
            "set the repair throttle");
        let bytes_per_sec = req.into_inner().bytes_per_sec;
        if bytes_per_sec != 0 && bytes_per_sec < (1 << 20) {
            return Err(Status::invalid_argument(
                "the repair throttle must be at least 1 MiB/s (or 0 for none)",
            ));
        }
        self.write(Command::SetRepairThrottle { bytes_per_sec })
            .await?;
        tracing::info!(bytes_per_sec, "repair throttle changed");
        Ok(Response::new(pm::SetRepairThrottleResponse {}))
    }

    pub(super) async fn set_inline_limits(
        &self,
        req: Request<pm::SetInlineLimitsRequest>,
    ) -> Result<Response<pm::SetInlineLimitsResponse>, Status> {
        admin_call!(self, req, "SetInlineLimits" => set_inline_limits,
            "set the inline limits");
        let req = req.into_inner();
        let limits = InlineLimits {
            max_bytes: req.max_bytes,
            budget_bytes: req.budget_bytes,
        };
        if let Some(problem) = limits.problem() {
            return Err(Status::invalid_argument(problem));
        }
        self.write(Command::SetInlineLimits(limits)).await?;
        tracing::info!(
            max_bytes = limits.max_bytes,
            budget_bytes = limits.budget_bytes,
            "inline limits changed"
        );
        Ok(Response::new(pm::SetInlineLimitsResponse {}))
    }

    pub(super) async fn set_node_weight(
        &self,
        req: Request<pm::SetNodeWeightRequest>,
    ) -> Result<Response<pm::SetNodeWeightResponse>, Status> {
        admin_call!(self, req, "SetNodeWeight" => set_node_weight, "weight nodes");
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

    pub(super) async fn rebalance_plan(
        &self,
        req: Request<pm::RebalancePlanRequest>,
    ) -> Result<Response<pm::RebalancePlanResponse>, Status> {
        admin_call!(self, req, "RebalancePlan" => rebalance_plan, "plan rebalancing");
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
}
