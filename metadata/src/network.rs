//! Raft traffic between replicas: the openraft network client over the gRPC
//! `RaftService`, whose payloads are openraft's own types in the binary format of
//! `codec.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use cairn_net::Transport;

use cairn_proto::meta::raft_service_client::RaftServiceClient;
use cairn_proto::meta::RaftPayload;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, OptionalSend, Snapshot, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::snapshot_stream;
use crate::types::TypeConfig;

/// Largest Raft message (a batch of log entries), bigger than client messages.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Most bytes of log entries in one AppendEntries RPC. openraft sends up to 300 entries
/// per RPC and gives it the heartbeat interval (150 ms by default); bulk-create entries
/// are about a megabyte each, so 300 of them would pass [`MAX_RAFT_MESSAGE_BYTES`] and
/// fail alike on every retry. (A replica catching up through such a log still logs
/// heartbeat timeouts: this bound did not change that, BENCHMARKS.md.)
pub const APPEND_BYTES_BUDGET: usize = 4 * 1024 * 1024;

/// How many of `entries` to send instead when their encoding of `bytes` is over
/// [`APPEND_BYTES_BUDGET`] (openraft then sends that many, for the next few RPCs);
/// `None` if they fit, or if one entry is all there is.
fn entries_that_fit(entries: usize, bytes: usize) -> Option<u64> {
    if bytes <= APPEND_BYTES_BUDGET || entries <= 1 {
        return None;
    }
    let fits = (entries as u128 * APPEND_BYTES_BUDGET as u128 / bytes as u128) as u64;
    Some(fits.max(1))
}

/// Makes the Raft clients of one replica, over its transport.
pub struct Network {
    transport: Transport,
    channels: HashMap<String, Channel>,
}

impl Network {
    pub fn new(transport: Transport) -> Network {
        Network {
            transport,
            channels: HashMap::new(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let channel = self
            .channels
            .entry(node.addr.clone())
            .or_insert_with(|| lazy_channel(&self.transport, &node.addr))
            .clone();
        PeerClient {
            target,
            client: RaftServiceClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
        }
    }
}

/// A channel over `transport` that connects on first use (and reconnects after failures).
pub fn lazy_channel(transport: &Transport, addr: &str) -> Channel {
    match transport.channel(addr, |e| e.connect_timeout(Duration::from_secs(1))) {
        Ok(channel) => channel,
        // An address that is not even a URI: every call fails as unreachable.
        Err(_) => Endpoint::from_static("http://0.0.0.0:1").connect_lazy(),
    }
}

pub struct PeerClient {
    target: u64,
    client: RaftServiceClient<Channel>,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        which: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(which, data, option).await
    }

    async fn send<Resp, E>(
        &mut self,
        which: Rpc,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut request = tonic::Request::new(RaftPayload { data: data.into() });
        request.set_timeout(option.hard_ttl());
        let response = match which {
            Rpc::Append => self.client.append_entries(request).await,
            Rpc::Vote => self.client.vote(request).await,
        };
        let payload = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        RPCError::Unreachable(Unreachable::new(&status))
                    }
                    _ => RPCError::Network(NetworkError::new(&status)),
                })
            }
        };
        let result: Result<Resp, RaftError<u64, E>> =
            codec::decode(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        let data = codec::encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if let Some(fits) = entries_that_fit(rpc.entries.len(), data.len()) {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fits),
            ));
        }
        self.send(Rpc::Append, data, &option).await
    }

    /// Never called: `full_snapshot` sends snapshots whole.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        Err(RPCError::Network(NetworkError::new(&AnyError::error(
            "snapshots are sent whole (StreamSnapshot), not in install RPCs",
        ))))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let timeout = option.hard_ttl();
        snapshot_stream::send(
            &mut self.client,
            self.target,
            vote,
            snapshot,
            cancel,
            timeout,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_over_the_budget_ask_for_fewer_entries() {
        assert_eq!(entries_that_fit(300, APPEND_BYTES_BUDGET), None);
        assert_eq!(
            entries_that_fit(1, 50 * APPEND_BYTES_BUDGET),
            None,
            "one goes alone"
        );
        // 300 entries of a megabyte: four fit.
        assert_eq!(entries_that_fit(300, 300 << 20), Some(4));
        assert_eq!(entries_that_fit(2, 3 * APPEND_BYTES_BUDGET), Some(1));
        assert_eq!(entries_that_fit(10, APPEND_BYTES_BUDGET + 1), Some(9));
    }
}
