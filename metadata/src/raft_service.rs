//! The gRPC `RaftService`: hands peers' Raft messages to the local openraft instance.

use cairn_proto::meta::raft_service_server::RaftService;
use cairn_proto::meta::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use cairn_net::{authorize, Role};

use crate::types::Raft;

pub struct RaftServer {
    pub raft: Raft,
}

/// Checks that the caller is a metadata replica, then decodes the message.
fn decode<T: DeserializeOwned>(req: Request<RaftPayload>, method: &str) -> Result<T, Status> {
    authorize(&req, method, &[Role::Meta])?;
    serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let json = serde_json::to_vec(value)
        .map_err(|e| Status::internal(format!("encode Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { json: json.into() }))
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req, "AppendEntries")?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req, "Vote")?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req, "InstallSnapshot")?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
