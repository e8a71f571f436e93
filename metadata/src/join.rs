//! Joining an existing metadata cluster: a new replica with an empty log asks the
//! cluster (any replica; followers forward) to add it, retrying until it is a voter or
//! the replica shuts down. The leader streams it the log or a snapshot meanwhile.

use std::time::Duration;

use cairn_proto::meta::meta_service_client::MetaServiceClient;
use cairn_proto::meta::AddReplicaRequest;
use tokio_util::sync::CancellationToken;

use crate::network::lazy_channel;

pub async fn ask_to_join(
    id: u64,
    addr: String,
    cluster: Vec<String>,
    transport: cairn_net::Transport,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    for attempt in 0u64.. {
        let target = &cluster[(attempt % cluster.len() as u64) as usize];
        let mut client = MetaServiceClient::new(lazy_channel(&transport, target));
        let mut req = tonic::Request::new(AddReplicaRequest {
            id,
            addr: addr.clone(),
        });
        // Catching up may take a while on a big namespace.
        req.set_timeout(Duration::from_secs(120));
        let call = client.add_replica(req);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = call => r,
        };
        match result {
            Ok(_) => {
                tracing::info!(id, via = %target, "joined the metadata cluster as a voter");
                return;
            }
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                tracing::error!(id, error = %status.message(), "cannot join: id taken");
                return;
            }
            Err(status) => {
                tracing::info!(id, via = %target, error = %status.message(), "join not done yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
