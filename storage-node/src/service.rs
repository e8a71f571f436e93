//! The gRPC `NodeService`: turns requests into [`ShardStore`] calls and store errors into
//! `tonic::Status` (in one place, [`status_of`]). Generated protobuf types stop here;
//! the store never sees them.

use cairn_net::{authorize, caller_key, Role};

use crate::background::Foreground;
use crate::inflight::{self, InflightBudget, Reservation};
use crate::rebuild::Rebuilder;
use std::sync::Arc;

use bytes::Bytes;
use cairn_common::ChunkId;
use cairn_proto::node::node_service_server::{NodeService, NodeServiceServer};
use cairn_proto::node::{
    put_shard_request, DeleteShardRequest, DeleteShardResponse, GetShardRequest, GetShardResponse,
    PutShardRequest, PutShardResponse, RebuildShardRequest, RebuildShardResponse, ScrubRequest,
    ScrubResponse, StatShardRequest, StatShardResponse,
};
use cairn_proto::{DATA_FRAME_BYTES, MAX_MESSAGE_BYTES};
use cairn_shard_io::RebuildOrder;
use tonic::{Request, Response, Status, Streaming};

use crate::scrub::Scrubber;
use crate::store::{ShardKey, ShardRead, ShardStore, StoreError};

/// Largest shard a PutShard may carry.
pub const MAX_SHARD_BYTES: u64 = 64 * 1024 * 1024;

/// The `NodeService` over one shard store.
#[derive(Clone)]
pub struct NodeServiceImpl {
    store: Arc<ShardStore>,
    scrubber: Option<Arc<Scrubber>>,
    rebuilder: Option<Arc<Rebuilder>>,
    /// The client requests in flight: background work yields to them.
    foreground: Arc<Foreground>,
    inflight: Arc<InflightBudget>,
    /// The newest metadata term a deletion came with (`DeleteShardRequest::term`).
    delete_term: Arc<std::sync::atomic::AtomicU64>,
}

impl NodeServiceImpl {
    pub fn new(store: Arc<ShardStore>) -> NodeServiceImpl {
        NodeServiceImpl {
            store,
            scrubber: None,
            rebuilder: None,
            foreground: Arc::default(),
            inflight: Arc::new(InflightBudget::new(
                inflight::DEFAULT_PER_CLIENT_BYTES,
                inflight::DEFAULT_NODE_BYTES,
            )),
            delete_term: Arc::default(),
        }
    }

    /// Serves `Scrub` with this scrubber (without one, `Scrub` is UNIMPLEMENTED).
    pub fn with_scrubber(mut self, scrubber: Arc<Scrubber>) -> NodeServiceImpl {
        self.scrubber = Some(scrubber);
        self
    }

    /// Serves `RebuildShard` with this rebuilder (without one, UNIMPLEMENTED); its gate
    /// should count this service's [`NodeServiceImpl::foreground`].
    pub fn with_rebuilder(mut self, rebuilder: Arc<Rebuilder>) -> NodeServiceImpl {
        self.rebuilder = Some(rebuilder);
        self
    }

    /// The client requests this service has in flight.
    pub fn foreground(&self) -> Arc<Foreground> {
        self.foreground.clone()
    }

    /// Counts a request as client I/O unless a storage node makes it (a peer's rebuild
    /// reading its sources is background work too).
    fn count_foreground(
        &self,
        caller: Option<(Role, String)>,
    ) -> Option<crate::background::ForegroundGuard> {
        match caller {
            Some((Role::Node, _)) => None,
            _ => Some(self.foreground.enter()),
        }
    }

    /// The tonic service, with Cairn's message size limits.
    pub fn into_server(self) -> NodeServiceServer<NodeServiceImpl> {
        NodeServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// The one mapping from store errors to gRPC statuses.
pub fn status_of(err: StoreError) -> Status {
    match &err {
        StoreError::NotFound { .. } => Status::not_found(err.to_string()),
        StoreError::Corrupt { .. } | StoreError::Unopenable { .. } => {
            Status::data_loss(err.to_string())
        }
        StoreError::HashMismatch { .. } => Status::invalid_argument(err.to_string()),
        StoreError::RangeOutOfBounds { .. } => Status::out_of_range(err.to_string()),
        StoreError::NoSpace { .. } => cairn_proto::status::with_reason(
            tonic::Code::ResourceExhausted,
            format!("no space left on the storage node: {err}"),
            cairn_proto::common::ErrorReason::NoSpace,
        ),
        StoreError::Io { source, .. } => Status::internal(format!("{err}: {source}")),
        // Only at start-up; a running store never returns it.
        StoreError::Marker(_) => Status::internal(err.to_string()),
    }
}

/// The store's key for a protobuf shard id; a missing id or a chunk id that is not 16
/// bytes is `InvalidArgument`.
fn shard_key(id: Option<cairn_proto::common::ShardId>) -> Result<ShardKey, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("shard id is missing"))?;
    let chunk =
        ChunkId::from_slice(&id.chunk_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(ShardKey {
        chunk,
        index: id.index,
    })
}

/// Who may call what: clients and mounts read and write shards (as do metadata replicas:
/// the shard-loss checks read them); other storage nodes read them for the rebuilds the
/// metadata service orders (`RebuildShard`, as deleting and inspecting single shards,
/// is internal to the metadata service); a scrub pass may be started by an operator or
/// the metadata service. A shard is named by its chunk's random id, which only the
/// metadata service hands out (to callers with a grant on the bucket).
const DATA_PATH: &[Role] = &[Role::Client, Role::Gateway, Role::Mount, Role::Meta];
const READERS: &[Role] = &[
    Role::Client,
    Role::Gateway,
    Role::Mount,
    Role::Meta,
    Role::Node,
];
const METADATA: &[Role] = &[Role::Meta];
const OPERATORS: &[Role] = &[Role::Client, Role::Meta];

#[tonic::async_trait]
impl NodeService for NodeServiceImpl {
    async fn put_shard(
        &self,
        request: Request<Streaming<PutShardRequest>>,
    ) -> Result<Response<PutShardResponse>, Status> {
        let role = authorize(&request, "PutShard", DATA_PATH)?;
        let _client_io = self.count_foreground(role);
        let caller = caller_key(&request);
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(PutShardRequest {
                part: Some(put_shard_request::Part::Header(header)),
            }) => header,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first PutShard message must be a header",
                ))
            }
            None => return Err(Status::invalid_argument("empty PutShard stream")),
        };
        let id = shard_key(header.id)?;
        if header.length > MAX_SHARD_BYTES {
            return Err(Status::invalid_argument(format!(
                "shard {id}: length {} exceeds the {MAX_SHARD_BYTES}-byte limit",
                header.length
            )));
        }
        let expected: [u8; 32] = header.blake3[..].try_into().map_err(|_| {
            Status::invalid_argument(format!(
                "shard {id}: blake3 must be 32 bytes, got {}",
                header.blake3.len()
            ))
        })?;
        let length = header.length as usize;
        // The received frames as they are (no copy); memory grows with the data actually
        // received, so announcing 64 MiB costs nothing.
        let mut data = Vec::new();
        let mut received = 0usize;
        let mut reserved = Reservation::default();
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(put_shard_request::Part::Data(frame)) => {
                    if received + frame.len() > length {
                        return Err(Status::invalid_argument(format!(
                            "shard {id}: more data than the {length} bytes announced"
                        )));
                    }
                    self.inflight
                        .reserve(&caller, frame.len(), &mut reserved)
                        .map_err(|e| Status::resource_exhausted(format!("shard {id}: {e}")))?;
                    received += frame.len();
                    data.push(frame);
                }
                Some(put_shard_request::Part::Header(_)) => {
                    return Err(Status::invalid_argument(format!(
                        "shard {id}: a second header in one PutShard stream"
                    )))
                }
                None => {
                    return Err(Status::invalid_argument(format!(
                        "shard {id}: a PutShard message with neither header nor data"
                    )))
                }
            }
        }
        if received < length {
            return Err(Status::invalid_argument(format!(
                "shard {id}: stream ended after {received} of the {length} bytes announced"
            )));
        }
        let bytes = received as u64;
        let started = std::time::Instant::now();
        self.store
            .put(id, expected, data)
            .await
            .map_err(status_of)?;
        metrics::counter!("cairn_node_requests_total", "method" => "put_shard").increment(1);
        metrics::counter!("cairn_node_bytes_in_total").increment(bytes);
        metrics::histogram!("cairn_node_put_shard_seconds").record(started.elapsed().as_secs_f64());
        Ok(Response::new(PutShardResponse {}))
    }

    type GetShardStream = futures::stream::Iter<Frames>;

    async fn get_shard(
        &self,
        request: Request<GetShardRequest>,
    ) -> Result<Response<Self::GetShardStream>, Status> {
        let role = authorize(&request, "GetShard", READERS)?;
        let _client_io = self.count_foreground(role);
        let request = request.into_inner();
        let id = shard_key(request.id)?;
        let read = self
            .store
            .get(id, request.offset, request.length)
            .await
            .map_err(status_of)?;
        tracing::debug!(shard = %id, offset = request.offset, bytes = read.data.len(), "serving shard");
        metrics::counter!("cairn_node_requests_total", "method" => "get_shard").increment(1);
        metrics::counter!("cairn_node_bytes_out_total").increment(read.data.len() as u64);
        Ok(Response::new(futures::stream::iter(Frames::new(read))))
    }

    async fn delete_shard(
        &self,
        request: Request<DeleteShardRequest>,
    ) -> Result<Response<DeleteShardResponse>, Status> {
        authorize(&request, "DeleteShard", METADATA)?;
        let request = request.into_inner();
        // A deletion from a leader that has been deposed (its term is older than one
        // seen here) is refused: its garbage-collection queue may be stale.
        let newest = self
            .delete_term
            .fetch_max(request.term, std::sync::atomic::Ordering::SeqCst);
        if request.term != 0 && request.term < newest {
            return Err(Status::failed_precondition(format!(
                "a deletion of metadata term {} is older than term {newest}, seen already: \
                 it comes from a deposed leader",
                request.term
            )));
        }
        let id = shard_key(request.id)?;
        let existed = self.store.delete(id).await.map_err(status_of)?;
        Ok(Response::new(DeleteShardResponse { existed }))
    }

    async fn stat_shard(
        &self,
        request: Request<StatShardRequest>,
    ) -> Result<Response<StatShardResponse>, Status> {
        authorize(&request, "StatShard", METADATA)?;
        let id = shard_key(request.into_inner().id)?;
        let info = self.store.stat(id).await.map_err(status_of)?;
        Ok(Response::new(StatShardResponse {
            length: info.length,
            blake3: Bytes::copy_from_slice(&info.blake3),
        }))
    }

    async fn scrub(
        &self,
        request: Request<ScrubRequest>,
    ) -> Result<Response<ScrubResponse>, Status> {
        authorize(&request, "Scrub", OPERATORS)?;
        let scrubber = self
            .scrubber
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this node runs no scrubber"))?;
        let report = scrubber.pass().await.map_err(status_of)?;
        Ok(Response::new(ScrubResponse {
            checked: report.checked,
            corrupt: report.corrupt,
            bytes: report.bytes,
            unreadable: report.unreadable,
            failed: report.failed,
            orphans: report.orphans,
            orphan_bytes: report.orphan_bytes,
            orphans_unchecked: report.orphans_unchecked,
        }))
    }

    async fn rebuild_shard(
        &self,
        request: Request<RebuildShardRequest>,
    ) -> Result<Response<RebuildShardResponse>, Status> {
        authorize(&request, "RebuildShard", METADATA)?;
        let rebuilder = self
            .rebuilder
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this node runs no rebuilds"))?;
        let order = RebuildOrder::from_wire(request.into_inner())?;
        let len = order.meta.shard_len() as u64;
        if len > MAX_SHARD_BYTES {
            return Err(Status::invalid_argument(format!(
                "shard {} of chunk {}: length {len} exceeds the {MAX_SHARD_BYTES}-byte limit",
                order.index, order.chunk
            )));
        }
        let report = rebuilder.rebuild(order).await.map_err(status_of)?;
        metrics::counter!("cairn_node_requests_total", "method" => "rebuild_shard").increment(1);
        Ok(Response::new(report.to_wire()))
    }
}

/// The GetShard response messages: the first carries the shard's length and blake3 (and
/// the first frame of data, possibly empty), the rest one `DATA_FRAME_BYTES` frame each.
/// Frames are cut lazily, as the stream is polled.
pub struct Frames {
    data: Bytes,
    pos: usize,
    first: Option<(u64, [u8; 32])>,
}

impl Frames {
    fn new(read: ShardRead) -> Frames {
        Frames {
            data: read.data,
            pos: 0,
            first: Some((read.info.length, read.info.blake3)),
        }
    }
}

impl Iterator for Frames {
    type Item = Result<GetShardResponse, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = self.first.take();
        if first.is_none() && self.pos >= self.data.len() {
            return None;
        }
        let end = (self.pos + DATA_FRAME_BYTES).min(self.data.len());
        let frame = self.data.slice(self.pos..end);
        self.pos = end;
        let (shard_length, blake3) = match first {
            Some((length, hash)) => (length, Bytes::copy_from_slice(&hash)),
            None => (0, Bytes::new()),
        };
        Some(Ok(GetShardResponse {
            shard_length,
            blake3,
            data: frame,
        }))
    }
}

#[cfg(test)]
mod tests;
