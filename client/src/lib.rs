//! The Cairn client library: the smart data path (split, encode, place, write in
//! parallel; read any k, verify, decode) and thin wrappers over the metadata API. Nothing
//! else: TLS lives in `cairn-net`, the CLI in `cairn-cli`, the local-cluster launcher in
//! `cairn-devcluster`. Must not depend on the metadata service's or the storage node's
//! crates (they are reached over gRPC only).

pub mod backup;
pub mod error;
pub mod fs;
pub mod get;
pub mod meta_client;
pub mod put;
pub mod replicas;

use std::path::Path;

use cairn_common::config::{ClusterFile, ConfigError};
use cairn_common::token::ApiToken;
use cairn_common::Redundancy;
use cairn_proto::meta as pm;

pub use cairn_proto::meta::ClusterStatusResponse as ClusterStatus;
pub use cairn_shard_io::ChunkReadError;
pub use error::{ClientError, Result};
pub use get::{ObjectStat, OpenObject};
pub use put::{Precondition, PutOptions, PutOutcome};
pub use replicas::{ReplicaReport, ReplicaStatus};

use crate::meta_client::MetaClient;
use cairn_shard_io::NodePool;

/// A connection to one cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    meta: MetaClient,
    nodes: NodePool,
    chunk_size: usize,
}

/// A bucket as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub redundancy: Redundancy,
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub generation: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
}

/// What to list: keys under `prefix` after a position, optionally rolled up at a
/// delimiter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub prefix: String,
    pub delimiter: String,
    /// Only entries after this one.
    pub start_after: String,
    /// Also skip entries starting with this (resuming after a common prefix).
    pub skip_prefix: String,
    /// 0 means 1000; at most 10,000.
    pub limit: u32,
}

impl Client {
    /// A client of the cluster `cluster` describes, with the identity it names.
    pub fn new(cluster: &ClusterFile) -> Result<Self> {
        Client::new_from(cluster, None)
    }

    /// [`Client::new`], making its connections from the local address `source` when
    /// given (see [`cairn_net::Transport::from_source`]).
    pub fn new_from(cluster: &ClusterFile, source: Option<std::net::IpAddr>) -> Result<Self> {
        let files = cluster
            .tls_dir
            .as_ref()
            .map(|dir| cairn_net::TlsFiles::new(dir, &cluster.tls_name));
        let transport = cairn_net::Transport::choose(files, cluster.insecure).map_err(|e| {
            ClientError::InvalidArgument {
                message: format!("{e:#}"),
            }
        })?;
        let transport = match source {
            Some(ip) => transport.from_source(ip),
            None => transport,
        };
        let client = Client::with_transport(cluster, transport)?;
        match &cluster.token_file {
            Some(path) => client.with_token(&read_token_file(path)?),
            None => Ok(client),
        }
    }

    /// A client with an explicit transport (identity), ignoring the file's TLS keys.
    pub fn with_transport(cluster: &ClusterFile, transport: cairn_net::Transport) -> Result<Self> {
        Ok(Client {
            meta: MetaClient::new(&cluster.meta, &transport)?,
            nodes: NodePool::new(transport),
            chunk_size: cluster.chunk_size,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        Client::new(&ClusterFile::load(path)?)
    }

    /// Largest chunk this client writes, in bytes.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// A copy whose metadata calls act for `user`: a storage node's object API serving
    /// that user's request (the metadata service honours it for gateway certificates).
    pub fn acting_for(&self, user: &str) -> Result<Self> {
        Ok(Client {
            meta: self.meta.acting_for(user)?,
            ..self.clone()
        })
    }

    /// A copy whose calls carry `token` and so act as its user (`cairn user add`).
    pub fn with_token(&self, token: &ApiToken) -> Result<Self> {
        Ok(Client {
            meta: self.meta.with_token(token)?,
            ..self.clone()
        })
    }

    /// The identity this client connects with; [`cairn_net::Transport::reload`] makes later
    /// connections use renewed certificates.
    pub fn transport(&self) -> &cairn_net::Transport {
        self.nodes.transport()
    }

    pub fn with_meta_retry(mut self, retry_for: std::time::Duration) -> Self {
        self.meta = self.meta.with_retry_for(retry_for);
        self
    }

    /// How long one metadata call attempt may take before another replica is tried
    /// (default 10 s).
    pub fn with_meta_attempt_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.meta = self.meta.with_attempt_timeout(timeout);
        self
    }

    pub async fn create_bucket(&self, name: &str, redundancy: Redundancy) -> Result<()> {
        cairn_common::names::validate_bucket(name).map_err(put::invalid)?;
        let req = pm::CreateBucketRequest {
            name: name.into(),
            redundancy: Some(redundancy.into()),
        };
        self.meta
            .call(req, |mut c, r| async move { c.create_bucket(r).await })
            .await?;
        Ok(())
    }

    /// Gives `user` (a client certificate's name) `access` ("read", "write", "admin", or
    /// "none" to revoke) to `bucket`.
    pub async fn set_grant(&self, bucket: &str, user: &str, access: &str) -> Result<()> {
        let req = pm::SetGrantRequest {
            bucket: bucket.into(),
            user: user.into(),
            access: access.into(),
        };
        self.meta
            .call(req, |mut c, r| async move { c.set_grant(r).await })
            .await?;
        Ok(())
    }

    /// Makes an API token acting as `user` (cluster admins only). The token is
    /// returned once; the metadata service keeps only its secret's hash.
    pub async fn add_token(&self, user: &str) -> Result<ApiToken> {
        let token = ApiToken::generate();
        let req = pm::AddTokenRequest {
            id: token.id().into(),
            user: user.into(),
            secret_hash: token.hash().to_vec().into(),
        };
        self.meta
            .call(req, |mut c, r| async move { c.add_token(r).await })
            .await?;
        Ok(token)
    }

    /// Every API token: (id, user, created in seconds since the epoch).
    pub async fn list_tokens(&self) -> Result<Vec<(String, String, u64)>> {
        let resp = self
            .meta
            .call(pm::ListTokensRequest {}, |mut c, r| async move {
                c.list_tokens(r).await
            })
            .await?;
        Ok(resp
            .tokens
            .into_iter()
            .map(|t| (t.id, t.user, t.created))
            .collect())
    }

    /// Revokes the API token `id`: calls carrying it are refused from now on.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let req = pm::RevokeTokenRequest { id: id.into() };
        self.meta
            .call(req, |mut c, r| async move { c.revoke_token(r).await })
            .await?;
        Ok(())
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let resp = self
            .meta
            .call(pm::ListBucketsRequest {}, |mut c, r| async move {
                c.list_buckets(r).await
            })
            .await?;
        resp.buckets
            .into_iter()
            .map(|b| {
                Ok(BucketInfo {
                    name: b.name,
                    redundancy: cairn_proto::convert::redundancy(
                        b.redundancy,
                        "bucket redundancy",
                    )?,
                })
            })
            .collect()
    }

    /// One page of keys under `prefix`, after `start_after`.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<ListPage> {
        let options = ListOptions {
            prefix: prefix.into(),
            start_after: start_after.into(),
            limit,
            ..ListOptions::default()
        };
        self.list_with(bucket, &options).await
    }

    /// One page of a listing with every option.
    pub async fn list_with(&self, bucket: &str, options: &ListOptions) -> Result<ListPage> {
        cairn_common::names::validate_bucket(bucket).map_err(put::invalid)?;
        let limit = cairn_common::names::MAX_KEY_BYTES;
        for (what, text) in [
            ("prefix", &options.prefix),
            ("delimiter", &options.delimiter),
        ] {
            if text.len() > limit {
                return Err(ClientError::InvalidArgument {
                    message: format!("{what} is {} bytes long; the limit is {limit}", text.len()),
                });
            }
        }
        let req = pm::ListObjectsRequest {
            bucket: bucket.into(),
            prefix: options.prefix.clone(),
            start_after: options.start_after.clone(),
            limit: options.limit,
            delimiter: options.delimiter.clone(),
            skip_prefix: options.skip_prefix.clone(),
        };
        let resp = self
            .meta
            .call(req, |mut c, r| async move { c.list_objects(r).await })
            .await?;
        Ok(ListPage {
            objects: resp
                .objects
                .into_iter()
                .map(|o| ListedObject {
                    key: o.key,
                    size: o.size,
                    generation: o.generation,
                    mtime: o.mtime,
                })
                .collect(),
            common_prefixes: resp.common_prefixes,
            truncated: resp.truncated,
        })
    }

    /// Every key under `prefix`, fetched page by page.
    pub async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.list_page(bucket, prefix, &after, 0).await?;
            if let Some(last) = page.objects.last() {
                after = last.key.clone();
            }
            let done = !page.truncated || page.objects.is_empty();
            all.extend(page.objects);
            if done {
                return Ok(all);
            }
        }
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.delete_if(bucket, key, None).await
    }

    /// Deletes `bucket/key`, only if its generation is `generation` when one is given.
    /// `NotFound` means the key was absent; when the answer to an attempt was lost (the
    /// call was retried) and the retry finds the key gone, the delete counts as done,
    /// since the lost attempt may have been the one that deleted it.
    pub async fn delete_if(&self, bucket: &str, key: &str, generation: Option<u64>) -> Result<()> {
        cairn_common::names::validate_bucket(bucket).map_err(put::invalid)?;
        cairn_common::names::validate_key(key).map_err(put::invalid)?;
        let req = pm::DeleteObjectRequest {
            bucket: bucket.into(),
            key: key.into(),
            if_generation_match: generation.unwrap_or(0),
        };
        let (result, attempts) = self
            .meta
            .call_counting(req, |mut c, r| async move { c.delete_object(r).await })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(ClientError::NotFound { .. }) if attempts > 1 => {
                tracing::debug!(
                    bucket,
                    key,
                    attempts,
                    "deleted (by an attempt whose answer was lost, or already absent)"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Adds a metadata replica (it must be running, with an empty log); returns once it
    /// is a voter.
    pub async fn add_meta_replica(&self, id: u64, addr: &str) -> Result<()> {
        let req = pm::AddReplicaRequest {
            id,
            addr: addr.into(),
        };
        self.meta
            .call(req, |mut c, r| async move { c.add_replica(r).await })
            .await?;
        Ok(())
    }

    pub async fn remove_meta_replica(&self, id: u64) -> Result<()> {
        let req = pm::RemoveReplicaRequest { id };
        self.meta
            .call(req, |mut c, r| async move { c.remove_replica(r).await })
            .await?;
        Ok(())
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        cairn_common::names::validate_bucket(name).map_err(put::invalid)?;
        let req = pm::DeleteBucketRequest { name: name.into() };
        self.meta
            .call(req, |mut c, r| async move { c.delete_bucket(r).await })
            .await?;
        Ok(())
    }

    /// Which of these chunk ids nothing references (for the storage nodes' orphan sweep).
    pub async fn filter_unknown_chunks(
        &self,
        ids: &[cairn_common::ChunkId],
    ) -> Result<Vec<cairn_common::ChunkId>> {
        let req = pm::FilterUnknownChunksRequest {
            chunk_ids: ids.iter().map(|id| id.as_bytes().to_vec().into()).collect(),
        };
        let resp = self
            .meta
            .call(
                req,
                |mut c, r| async move { c.filter_unknown_chunks(r).await },
            )
            .await?;
        resp.unknown
            .iter()
            .map(|b| Ok(cairn_proto::convert::chunk_id(b)?))
            .collect()
    }

    /// Starts (or stops) draining a storage node.
    pub async fn set_node_draining(&self, node: u64, draining: bool) -> Result<()> {
        let req = pm::SetNodeDrainingRequest {
            node_id: node,
            draining,
        };
        self.meta
            .call(req, |mut c, r| async move { c.set_node_draining(r).await })
            .await?;
        Ok(())
    }

    /// Sets the cluster-wide repair and rebalance bandwidth limit.
    pub async fn set_repair_throttle(&self, bytes_per_sec: u64) -> Result<()> {
        let req = pm::SetRepairThrottleRequest { bytes_per_sec };
        self.meta
            .call(
                req,
                |mut c, r| async move { c.set_repair_throttle(r).await },
            )
            .await?;
        Ok(())
    }

    /// Sets the cluster's inline threshold and budget, in bytes.
    /// The metadata replicas this client calls: those the membership named when last
    /// asked (see `meta_client`), then the configured addresses.
    pub fn meta_replica_addrs(&self) -> Vec<String> {
        self.meta.replica_addrs()
    }

    pub async fn set_inline_limits(&self, max_bytes: u64, budget_bytes: u64) -> Result<()> {
        let req = pm::SetInlineLimitsRequest {
            max_bytes,
            budget_bytes,
        };
        self.meta
            .call(req, |mut c, r| async move { c.set_inline_limits(r).await })
            .await?;
        Ok(())
    }

    /// Sets a node's relative share of data, in percent (100 = normal).
    pub async fn set_node_weight(&self, node: u64, weight_pct: u32) -> Result<()> {
        let req = pm::SetNodeWeightRequest {
            node_id: node,
            weight_pct,
        };
        self.meta
            .call(req, |mut c, r| async move { c.set_node_weight(r).await })
            .await?;
        Ok(())
    }

    /// What rebalancing would move now.
    pub async fn rebalance_plan(&self) -> Result<pm::RebalancePlanResponse> {
        self.meta
            .call(pm::RebalancePlanRequest {}, |mut c, r| async move {
                c.rebalance_plan(r).await
            })
            .await
    }

    /// Forgets a storage node that holds no shard.
    pub async fn remove_node(&self, node: u64) -> Result<()> {
        let req = pm::RemoveNodeRequest { node_id: node };
        self.meta
            .call(req, |mut c, r| async move { c.remove_node(r).await })
            .await?;
        Ok(())
    }

    /// Runs a scrub pass on the storage node at `addr`: (shards checked, corrupt, bytes).
    pub async fn scrub_node(&self, addr: &str) -> Result<cairn_shard_io::ScrubCounts> {
        Ok(self.nodes.scrub(addr).await?)
    }

    pub async fn status(&self) -> Result<pm::ClusterStatusResponse> {
        self.meta
            .call(pm::ClusterStatusRequest {}, |mut c, r| async move {
                c.cluster_status(r).await
            })
            .await
    }
}

/// The API token in `path` (a file holding the text `cairn user add` printed).
pub fn read_token_file(path: &Path) -> Result<ApiToken> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    ApiToken::parse(&text).map_err(|e| {
        ConfigError::Invalid {
            path: path.into(),
            message: e.to_string(),
        }
        .into()
    })
}
