//! Asking metadata replicas about themselves (`ReplicaStatus`). Unlike every other
//! metadata call, each goes to one named replica and is neither forwarded to the leader
//! nor retried on another replica: the point is to hear from every replica, followers
//! included (their resident memory, what they applied).

use std::time::Duration;

use cairn_proto::meta as pm;

use crate::error::{ClientError, Result};
use crate::meta_client::lazy_channel;
use crate::Client;

pub use cairn_proto::meta::ReplicaStatusResponse as ReplicaStatus;

/// How long one replica may take to answer before it counts as unreachable.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(5);

/// A replica of the metadata membership and its answer.
#[derive(Debug)]
pub struct ReplicaReport {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    pub status: Result<ReplicaStatus>,
}

impl Client {
    /// What the metadata replica at `addr` says about itself (one attempt, 5 s).
    pub async fn replica_status(&self, addr: &str) -> Result<ReplicaStatus> {
        let channel = lazy_channel(self.transport(), addr)?;
        let mut client = pm::meta_service_client::MetaServiceClient::new(channel);
        let mut request = tonic::Request::new(pm::ReplicaStatusRequest {});
        request.set_timeout(REPLICA_TIMEOUT);
        match tokio::time::timeout(REPLICA_TIMEOUT, client.replica_status(request)).await {
            Ok(answer) => Ok(answer?.into_inner()),
            Err(_) => Err(ClientError::Unavailable {
                message: format!(
                    "metadata replica {addr} did not answer within {REPLICA_TIMEOUT:?}"
                ),
            }),
        }
    }

    /// Asks every replica of `replicas` (`ClusterStatus::replicas`, the Raft membership)
    /// at once; a replica that cannot be reached has its error in its report.
    pub async fn replica_statuses(&self, replicas: &[pm::MetaReplica]) -> Vec<ReplicaReport> {
        let asks = replicas.iter().map(|r| async move {
            ReplicaReport {
                id: r.id,
                addr: r.addr.clone(),
                voter: r.voter,
                status: self.replica_status(&r.addr).await,
            }
        });
        futures::future::join_all(asks).await
    }
}
