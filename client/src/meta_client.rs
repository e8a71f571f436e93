//! Talking to the metadata service: any replica will do (followers forward to the
//! leader); on UNAVAILABLE the call moves to the next replica and retries with backoff,
//! for a bounded time. The one "try each replica" client: the CLI, the object gateway,
//! mounts and the storage nodes' heartbeats all call through it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::token::ApiToken;
use cairn_proto::meta::meta_service_client::MetaServiceClient;
use tonic::transport::Channel;

use crate::error::{ClientError, Result};
use cairn_net::Transport;

/// How long a call keeps retrying while no replica can serve it.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);
/// Deadline of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct MetaClient {
    clients: Arc<Vec<MetaServiceClient<Channel>>>,
    next: Arc<AtomicUsize>,
    retry_for: Duration,
    /// How long one attempt on one replica may take before the next replica is tried.
    attempt_timeout: Duration,
    /// Whom the calls act for: the user a gateway serves (`x-cairn-user`), an API token
    /// (`authorization`), or neither (this client's certificate).
    caller: Option<(&'static str, tonic::metadata::AsciiMetadataValue)>,
}

/// A channel to `addr` that connects on first use, over `transport`.
pub fn lazy_channel(transport: &Transport, addr: &str) -> Result<Channel> {
    transport
        .channel(addr, |e| e.connect_timeout(Duration::from_secs(2)))
        .map_err(|e| ClientError::InvalidArgument {
            message: e.to_string(),
        })
}

impl MetaClient {
    pub fn new(addrs: &[String], transport: &Transport) -> Result<Self> {
        if addrs.is_empty() {
            return Err(ClientError::InvalidArgument {
                message: "no metadata addresses given".into(),
            });
        }
        let clients = addrs
            .iter()
            .map(|a| {
                Ok(MetaServiceClient::new(lazy_channel(transport, a)?)
                    .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MetaClient {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
            retry_for: DEFAULT_RETRY_FOR,
            attempt_timeout: ATTEMPT_TIMEOUT,
            caller: None,
        })
    }

    /// A copy whose calls act for `user` (honoured only for a gateway certificate).
    pub fn acting_for(&self, user: &str) -> Result<Self> {
        let value = user.parse().map_err(|_| ClientError::InvalidArgument {
            message: format!("user name {user:?} is not a valid header value"),
        })?;
        Ok(MetaClient {
            caller: Some((cairn_net::USER_HEADER, value)),
            ..self.clone()
        })
    }

    /// A copy whose calls carry the API token `token` (and act as its user).
    pub fn with_token(&self, token: &ApiToken) -> Result<Self> {
        let mut value: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", token.reveal())
            .parse()
            .map_err(|_| ClientError::InvalidArgument {
                message: "an API token is not a valid header value".into(),
            })?;
        // Kept out of HTTP/2 header compression tables.
        value.set_sensitive(true);
        Ok(MetaClient {
            caller: Some((cairn_net::TOKEN_HEADER, value)),
            ..self.clone()
        })
    }

    /// Changes how long one attempt may take (a frozen replica holds a call this long
    /// before the next one is tried).
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Changes how long calls keep retrying while the metadata service is unavailable.
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Runs `call` against a replica, moving to the next one and retrying (with backoff,
    /// up to `retry_for`) while the answer is UNAVAILABLE.
    pub async fn call<Req, Resp, F, Fut>(&self, req: Req, call: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(MetaServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut:
            std::future::Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.call_counting(req, call).await.0
    }

    /// [`MetaClient::call`], also telling how many attempts were made: after more than
    /// one, an earlier attempt may have taken effect without its answer arriving.
    pub async fn call_counting<Req, Resp, F, Fut>(&self, req: Req, call: F) -> (Result<Resp>, u32)
    where
        Req: Clone,
        F: Fn(MetaServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut:
            std::future::Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let turn = self.next.load(Ordering::Relaxed);
            let index = turn % self.clients.len();
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(self.attempt_timeout);
            if let Some((header, value)) = &self.caller {
                request.metadata_mut().insert(*header, value.clone());
            }
            let err = match call(self.clients[index].clone(), request).await {
                Ok(resp) => return (Ok(resp.into_inner()), attempts),
                Err(status) => ClientError::from(status),
            };
            if !err.is_retriable() {
                return (Err(err), attempts);
            }
            // This replica could not serve the call: the next call, or the retry, goes to
            // the next one (unless another caller already moved on).
            let _ = self.next.compare_exchange(
                turn,
                turn.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if Instant::now() + backoff > deadline {
                return (Err(err), attempts);
            }
            tracing::debug!(replica = index, error = %err, "metadata call failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}
