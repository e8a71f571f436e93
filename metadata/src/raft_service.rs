//! The gRPC `RaftService`: hands peers' Raft messages (binary, `codec.rs`) to the local
//! openraft instance.
//!
//! A replica that just started refuses to vote for [`VoteWait::after_start`]: a follower
//! that acknowledged the leader refuses votes for a leader lease afterwards (openraft
//! keeps when it last heard the leader), but a restarted one has forgotten when that
//! was and would vote at once. The leader serves reads without a heartbeat round for a
//! while after a majority acknowledged it (`leadership.rs`); without this wait, a
//! follower that acknowledged it and restarted could help elect a second leader within
//! that time.

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
    pub votes: VoteWait,
}

/// When a replica starts voting.
pub struct VoteWait {
    started: std::time::Instant,
    /// No vote until this long after start.
    pub after_start: std::time::Duration,
}

impl VoteWait {
    pub fn new(after_start: std::time::Duration) -> VoteWait {
        VoteWait {
            started: std::time::Instant::now(),
            after_start,
        }
    }

    /// Why this replica does not vote yet, if it does not.
    fn refusal(&self, now: std::time::Instant) -> Option<String> {
        let up = now.saturating_duration_since(self.started);
        (up < self.after_start).then(|| {
            format!(
                "this metadata replica started {} ms ago and votes only {} ms after its start \
                 (so that it cannot elect a second leader while the last one's lease lasts)",
                up.as_millis(),
                self.after_start.as_millis()
            )
        })
    }
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
        if let Some(why) = self.votes.refusal(std::time::Instant::now()) {
            return Err(Status::unavailable(why));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_replica_votes_only_once_the_wait_after_its_start_is_over() {
        let votes = VoteWait::new(Duration::from_millis(500));
        let start = votes.started;
        assert!(votes.refusal(start).is_some());
        assert!(votes.refusal(start + Duration::from_millis(499)).is_some());
        assert!(votes.refusal(start + Duration::from_millis(500)).is_none());
        assert!(votes.refusal(start + Duration::from_secs(60)).is_none());
    }
}
