//! The gRPC `RaftService`: hands peers' Raft messages (binary, `codec.rs`) to the local
//! openraft instance.

use cairn_proto::meta::raft_service_server::RaftService;
use cairn_proto::meta::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use cairn_net::{authorize, Role};

use crate::codec::{self, CodecError};
use crate::snapshot_stream;
use crate::types::Raft;

pub struct RaftServer {
    pub raft: Raft,
}

/// Checks that the caller is a metadata replica, then decodes the message. A message in
/// another format (a replica of another release) is refused as an invalid argument
/// naming the format, and logged at the first such message (Raft retries without end).
fn decode<T: DeserializeOwned>(req: Request<RaftPayload>, method: &str) -> Result<T, Status> {
    authorize(&req, method, &[Role::Meta])?;
    codec::decode(&req.into_inner().data).map_err(|e| {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if matches!(
            e,
            CodecError::LegacyJson | CodecError::UnknownVersion { .. }
        ) {
            WARNED.call_once(|| tracing::warn!(method, "refused a Raft message: {e}"));
        }
        Status::invalid_argument(format!("Raft {method} message refused: {e}"))
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data =
        codec::encode(value).map_err(|e| Status::internal(format!("encode Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { data: data.into() }))
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

    async fn stream_snapshot(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<RaftPayload>, Status> {
        authorize(&req, "StreamSnapshot", &[Role::Meta])?;
        let reply = snapshot_stream::receive(&self.raft, req.into_inner()).await?;
        encode(&reply)
    }
}
