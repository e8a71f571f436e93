//! Talking to the metadata service: any replica will do (followers forward to the
//! leader); on UNAVAILABLE the call moves to the next replica and retries with backoff,
//! for a bounded time. The one "try each replica" client: the CLI, the object gateway,
//! mounts and the storage nodes' heartbeats all call through it.
//!
//! Discovery: the configured addresses are seeds. After a call succeeds, and again at
//! most every [`LEARN_EVERY`], the client asks the replica that answered for the
//! membership (`ListReplicas`) and calls every replica it names from then on (the seeds
//! stay as a fallback). One reachable address is enough to configure: replicas added or
//! replaced later are found without editing any client's configuration.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
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
/// How often the membership is asked for again.
pub const LEARN_EVERY: Duration = Duration::from_secs(30);

/// The replicas calls go to: those the membership names, then the configured seeds.
struct Replicas {
    transport: Transport,
    seeds: Vec<String>,
    known: RwLock<Known>,
    /// A membership question is in flight.
    learning: AtomicBool,
}

struct Known {
    /// Addresses in calling order, each with its client.
    clients: Vec<(String, MetaServiceClient<Channel>)>,
    learned_at: Option<Instant>,
}

fn meta_service_client(transport: &Transport, addr: &str) -> Result<MetaServiceClient<Channel>> {
    Ok(MetaServiceClient::new(lazy_channel(transport, addr)?)
        .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES))
}

impl Replicas {
    fn get(&self, turn: usize) -> (usize, MetaServiceClient<Channel>) {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        let index = turn % known.clients.len();
        (index, known.clients[index].1.clone())
    }

    /// Whether the membership should be asked for now (and if so, marks it asked).
    fn should_learn(&self) -> bool {
        let due = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .learned_at
            .is_none_or(|at| at.elapsed() >= LEARN_EVERY);
        due && !self.learning.swap(true, Ordering::AcqRel)
    }

    /// Calls the members named in `addrs` from now on, then the seeds they leave out
    /// (clients of addresses already known are kept, with their connections).
    fn adopt(&self, addrs: Vec<String>) {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<String> = Vec::new();
        for addr in addrs.into_iter().chain(self.seeds.iter().cloned()) {
            if !order.contains(&addr) {
                order.push(addr);
            }
        }
        let mut clients = Vec::with_capacity(order.len());
        for addr in order {
            let client = match known.clients.iter().find(|(a, _)| *a == addr) {
                Some((_, c)) => c.clone(),
                None => match meta_service_client(&self.transport, &addr) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "metadata replica address unusable");
                        continue;
                    }
                },
            };
            clients.push((addr, client));
        }
        if !clients.is_empty() {
            known.clients = clients;
        }
        known.learned_at = Some(Instant::now());
    }

    /// Asks `client` for the membership and adopts it. Whatever the answer, the next
    /// question waits [`LEARN_EVERY`]: a replica that cannot answer it (a release before
    /// `ListReplicas`) is not asked after every call.
    async fn learn(self: Arc<Self>, mut client: MetaServiceClient<Channel>) {
        let mut request = tonic::Request::new(cairn_proto::meta::ListReplicasRequest {});
        request.set_timeout(ATTEMPT_TIMEOUT);
        let addrs: Vec<String> = match client.list_replicas(request).await {
            Ok(answer) => answer
                .into_inner()
                .replicas
                .into_iter()
                .map(|r| r.addr)
                .filter(|a| !a.is_empty())
                .collect(),
            Err(status) => {
                tracing::debug!(error = %status, "asking for the metadata membership failed");
                Vec::new()
            }
        };
        if addrs.is_empty() {
            self.known
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .learned_at = Some(Instant::now());
        } else {
            self.adopt(addrs);
        }
        self.learning.store(false, Ordering::Release);
    }
}

#[derive(Clone)]
pub struct MetaClient {
    replicas: Arc<Replicas>,
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
            .map(|a| Ok((a.clone(), meta_service_client(transport, a)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(MetaClient {
            replicas: Arc::new(Replicas {
                transport: transport.clone(),
                seeds: addrs.to_vec(),
                known: RwLock::new(Known {
                    clients,
                    learned_at: None,
                }),
                learning: AtomicBool::new(false),
            }),
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

    /// Every replica calls may go to now (the membership learnt, then the seeds).
    pub fn replica_addrs(&self) -> Vec<String> {
        let known = self
            .replicas
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner());
        known.clients.iter().map(|(a, _)| a.clone()).collect()
    }

    /// Asks the replica that just answered for the membership, in the background, if
    /// it is time to (first call, then every [`LEARN_EVERY`]).
    fn learn_from(&self, client: MetaServiceClient<Channel>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.replicas.should_learn() {
            runtime.spawn(self.replicas.clone().learn(client));
        }
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
            let (index, client) = self.replicas.get(turn);
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(self.attempt_timeout);
            if let Some((header, value)) = &self.caller {
                request.metadata_mut().insert(*header, value.clone());
            }
            let err = match call(client.clone(), request).await {
                Ok(resp) => {
                    self.learn_from(client);
                    return (Ok(resp.into_inner()), attempts);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_membership_comes_first_then_the_seeds_it_leaves_out() {
        let seeds = vec!["10.0.0.1:7100".to_string(), "10.0.0.9:7100".to_string()];
        let client = MetaClient::new(&seeds, &Transport::insecure()).unwrap();
        assert_eq!(client.replica_addrs(), seeds);
        assert!(client.replicas.should_learn());
        assert!(!client.replicas.should_learn(), "one question at a time");
        client.replicas.learning.store(false, Ordering::Release);

        client.replicas.adopt(vec![
            "10.0.0.1:7100".into(),
            "10.0.0.2:7100".into(),
            "10.0.0.3:7100".into(),
        ]);
        assert_eq!(
            client.replica_addrs(),
            [
                "10.0.0.1:7100",
                "10.0.0.2:7100",
                "10.0.0.3:7100",
                "10.0.0.9:7100"
            ]
        );
        assert!(!client.replicas.should_learn(), "learnt just now");
    }
}
