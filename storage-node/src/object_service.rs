//! The public `cairn.object.v1.ObjectService` (see proto/proto/cairn/object.proto),
//! served by every storage node: the receiving node runs Cairn's client data path on the
//! caller's behalf (encode, place, write k+m shards in parallel, verify, commit), so any
//! gRPC client in any language can use the cluster. Knows nothing of shard files.

use cairn_common::token::ApiToken;
use cairn_net::{authorize, caller_of, Caller, Role};
use std::pin::Pin;

use cairn_client::{ChunkReadError, Client, ClientError, ListOptions, OpenObject, PutOptions};
use cairn_proto::object as po;
use cairn_proto::object::object_service_server::{ObjectService, ObjectServiceServer};
use futures::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status, Streaming};

/// Bytes per GetObject data message.
const GET_FRAME_BYTES: usize = cairn_proto::DATA_FRAME_BYTES;
/// Buffer between the chunk reader and the response stream (bounds memory per GET).
const GET_PIPE_BYTES: usize = 1024 * 1024;

pub struct ObjectServiceImpl {
    client: Client,
}

impl ObjectServiceImpl {
    pub fn new(client: Client) -> Self {
        ObjectServiceImpl { client }
    }

    /// The cluster client acting for this request's caller, whose grants then apply.
    #[allow(clippy::result_large_err)]
    fn client_for<T>(&self, req: &Request<T>) -> Result<Client, Status> {
        match caller_of(req) {
            Caller::User(user) => self.client.acting_for(&user).map_err(status_of),
            // The metadata service resolves the token (only it holds the tokens).
            Caller::Token(text) => {
                let token =
                    ApiToken::parse(&text).map_err(|e| Status::unauthenticated(e.to_string()))?;
                self.client.with_token(&token).map_err(status_of)
            }
            Caller::Unrestricted => Ok(self.client.clone()),
        }
    }

    pub fn into_server(self) -> ObjectServiceServer<Self> {
        ObjectServiceServer::new(self)
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
    }
}

/// The one mapping of client-library errors to the API's status codes.
fn status_of(e: ClientError) -> Status {
    let msg = e.to_string();
    match e {
        ClientError::NotFound { .. } => Status::not_found(msg),
        ClientError::AlreadyExists { .. } => Status::already_exists(msg),
        ClientError::InvalidArgument { .. } | ClientError::HashMismatch { .. } => {
            Status::invalid_argument(msg)
        }
        ClientError::FailedPrecondition { .. } => Status::failed_precondition(msg),
        ClientError::PermissionDenied { message } => Status::permission_denied(message),
        ClientError::Unauthenticated { message } => Status::unauthenticated(message),
        // Too few shards readable right now: nodes may come back, so "retry later".
        ClientError::Unavailable { .. }
        | ClientError::NotDurable { .. }
        | ClientError::ChunkRead(ChunkReadError::Unavailable { .. }) => Status::unavailable(msg),
        ClientError::ChunkRead(ChunkReadError::Corrupt { .. }) => Status::data_loss(msg),
        ClientError::NoSpace { .. } => Status::resource_exhausted(msg),
        ClientError::Io { .. } => Status::cancelled(msg),
        // A code the client library does not interpret itself (DATA_LOSS from a node...)
        // passes through unchanged.
        ClientError::Server { code, message } => Status::new(code, message),
        ClientError::Malformed { .. }
        | ClientError::ChunkRead(ChunkReadError::Malformed { .. })
        | ClientError::Config(_) => Status::internal(msg),
    }
}

fn info_of(bucket: &str, o: &OpenObject) -> po::ObjectInfo {
    po::ObjectInfo {
        bucket: bucket.into(),
        key: o.stat.key.clone(),
        size: o.stat.size,
        generation: o.stat.generation,
        blake3: o.stat.blake3.map(|h| h.to_vec().into()).unwrap_or_default(),
        content_type: o.stat.content_type.clone(),
        metadata: o.stat.metadata.clone(),
        mtime: o.stat.mtime,
    }
}

/// Page tokens: `k` + the last key returned, or `p` + the last common prefix returned.
fn decode_page_token(token: &str) -> Result<(String, String), Status> {
    if token.is_empty() {
        return Ok((String::new(), String::new()));
    }
    if let Some(key) = token.strip_prefix('k') {
        Ok((key.to_string(), String::new()))
    } else if let Some(prefix) = token.strip_prefix('p') {
        Ok((prefix.to_string(), prefix.to_string()))
    } else {
        Err(Status::invalid_argument("malformed page_token"))
    }
}

type GetStream = Pin<Box<dyn Stream<Item = Result<po::GetObjectResponse, Status>> + Send>>;

/// The object API serves clients only.
const USERS: &[Role] = &[Role::Client];

#[tonic::async_trait]
impl ObjectService for ObjectServiceImpl {
    async fn create_bucket(
        &self,
        req: Request<po::CreateBucketRequest>,
    ) -> Result<Response<po::CreateBucketResponse>, Status> {
        authorize(&req, "CreateBucket", USERS)?;
        let client = self.client_for(&req)?;
        let req = req.into_inner();
        let redundancy = cairn_proto::convert::redundancy_or_default(req.redundancy, "redundancy")?;
        client
            .create_bucket(&req.name, redundancy)
            .await
            .map_err(status_of)?;
        Ok(Response::new(po::CreateBucketResponse {}))
    }

    async fn list_buckets(
        &self,
        req: Request<po::ListBucketsRequest>,
    ) -> Result<Response<po::ListBucketsResponse>, Status> {
        authorize(&req, "ListBuckets", USERS)?;
        let client = self.client_for(&req)?;
        let buckets = client.list_buckets().await.map_err(status_of)?;
        Ok(Response::new(po::ListBucketsResponse {
            buckets: buckets
                .into_iter()
                .map(|b| po::Bucket {
                    name: b.name,
                    redundancy: Some(b.redundancy.into()),
                })
                .collect(),
        }))
    }

    async fn delete_bucket(
        &self,
        req: Request<po::DeleteBucketRequest>,
    ) -> Result<Response<po::DeleteBucketResponse>, Status> {
        authorize(&req, "DeleteBucket", USERS)?;
        let client = self.client_for(&req)?;
        client
            .delete_bucket(&req.into_inner().name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(po::DeleteBucketResponse {}))
    }

    async fn put_object(
        &self,
        req: Request<Streaming<po::PutObjectRequest>>,
    ) -> Result<Response<po::PutObjectResponse>, Status> {
        authorize(&req, "PutObject", USERS)?;
        let client = self.client_for(&req)?;
        let mut stream = req.into_inner();
        let header = match stream.next().await {
            Some(Ok(po::PutObjectRequest {
                part: Some(po::put_object_request::Part::Header(h)),
            })) => h,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first PutObject message must carry the header",
                ))
            }
        };
        let expected_blake3 = match header.expected_blake3.len() {
            0 => None,
            32 => Some(
                header.expected_blake3[..]
                    .try_into()
                    .expect("length checked"),
            ),
            n => {
                return Err(Status::invalid_argument(format!(
                    "expected_blake3 must be 32 bytes, got {n}"
                )))
            }
        };
        let options = PutOptions {
            content_type: header.content_type,
            metadata: header.metadata,
            expected_blake3,
            precondition: cairn_proto::convert::precondition(header.precondition)?,
        };
        // Data frames become a byte stream; a second header, or a broken or cancelled
        // stream, is a read error, so the put fails before it commits anything.
        let bytes = stream.map(|msg| match msg {
            Ok(po::PutObjectRequest {
                part: Some(po::put_object_request::Part::Data(d)),
            }) => Ok(d),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a PutObject message after the header must carry data",
            )),
            Err(status) => Err(std::io::Error::other(format!(
                "request stream broke: {}",
                status.message()
            ))),
        });
        let reader = tokio_util::io::StreamReader::new(bytes);
        let outcome = client
            .put_with(&header.bucket, &header.key, reader, options)
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(ClientError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::InvalidData =>
            {
                return Err(Status::invalid_argument(source.to_string()))
            }
            Err(e) => return Err(status_of(e)),
        };
        let object = client
            .open(&header.bucket, &header.key)
            .await
            .map_err(status_of)?;
        let mut info = info_of(&header.bucket, &object);
        // Another writer may have replaced the key since; report what this put wrote.
        info.size = outcome.size;
        info.generation = outcome.generation;
        info.blake3 = outcome.blake3.to_vec().into();
        Ok(Response::new(po::PutObjectResponse { object: Some(info) }))
    }

    type GetObjectStream = GetStream;

    async fn get_object(
        &self,
        req: Request<po::GetObjectRequest>,
    ) -> Result<Response<GetStream>, Status> {
        authorize(&req, "GetObject", USERS)?;
        let client = self.client_for(&req)?;
        let req = req.into_inner();
        let object = client
            .open(&req.bucket, &req.key)
            .await
            .map_err(status_of)?;
        let size = object.stat.size;
        let range = match req.range {
            None => 0..size,
            Some(r) => {
                let end = if r.length == 0 {
                    size
                } else {
                    r.offset.saturating_add(r.length)
                };
                if r.offset > size || end > size {
                    return Err(Status::invalid_argument(format!(
                        "range {}+{} is outside the object's {size} bytes",
                        r.offset, r.length
                    )));
                }
                r.offset..end
            }
        };
        let info = info_of(&req.bucket, &object);
        let (mut pipe_in, pipe_out) = tokio::io::duplex(GET_PIPE_BYTES);
        let reading = tokio::spawn(async move {
            let r = client.read(&object, Some(range), &mut pipe_in).await;
            drop(pipe_in);
            r
        });
        let first = futures::stream::once(async move {
            Ok(po::GetObjectResponse {
                part: Some(po::get_object_response::Part::Info(info)),
            })
        });
        let data = futures::stream::unfold(Some(pipe_out), |state| async move {
            let mut pipe = state?;
            let mut buf = vec![0u8; GET_FRAME_BYTES];
            let mut filled = 0;
            while filled < GET_FRAME_BYTES {
                match pipe.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Some((Err(Status::internal(e.to_string())), None)),
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            let frame = po::GetObjectResponse {
                part: Some(po::get_object_response::Part::Data(buf.into())),
            };
            Some((Ok(frame), Some(pipe)))
        });
        // After the last byte: the read task's verdict (an error if any chunk could not be
        // read, so a client never takes a short stream for the whole object).
        let data = data.chain(
            futures::stream::once(async move {
                match reading.await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(Err(status_of(e))),
                    Err(e) => Some(Err(Status::internal(format!("read task failed: {e}")))),
                }
            })
            .filter_map(|x| async move { x }),
        );
        Ok(Response::new(Box::pin(first.chain(data))))
    }

    async fn head_object(
        &self,
        req: Request<po::HeadObjectRequest>,
    ) -> Result<Response<po::HeadObjectResponse>, Status> {
        authorize(&req, "HeadObject", USERS)?;
        let client = self.client_for(&req)?;
        let req = req.into_inner();
        let object = client
            .open(&req.bucket, &req.key)
            .await
            .map_err(status_of)?;
        Ok(Response::new(po::HeadObjectResponse {
            object: Some(info_of(&req.bucket, &object)),
        }))
    }

    async fn list_objects(
        &self,
        req: Request<po::ListObjectsRequest>,
    ) -> Result<Response<po::ListObjectsResponse>, Status> {
        authorize(&req, "ListObjects", USERS)?;
        let client = self.client_for(&req)?;
        let req = req.into_inner();
        let (start_after, skip_prefix) = decode_page_token(&req.page_token)?;
        let page = client
            .list_with(
                &req.bucket,
                &ListOptions {
                    prefix: req.prefix,
                    delimiter: req.delimiter,
                    start_after,
                    skip_prefix,
                    limit: req.page_size,
                },
            )
            .await
            .map_err(status_of)?;
        let last_key = page.objects.last().map(|o| o.key.clone());
        let last_prefix = page.common_prefixes.last().cloned();
        let next_page_token = if !page.truncated {
            String::new()
        } else {
            match (last_key, last_prefix) {
                (Some(k), Some(p)) if p > k => format!("p{p}"),
                (Some(k), _) => format!("k{k}"),
                (None, Some(p)) => format!("p{p}"),
                (None, None) => String::new(),
            }
        };
        Ok(Response::new(po::ListObjectsResponse {
            objects: page
                .objects
                .into_iter()
                .map(|o| po::ObjectInfo {
                    bucket: req.bucket.clone(),
                    key: o.key,
                    size: o.size,
                    generation: o.generation,
                    mtime: o.mtime,
                    ..Default::default()
                })
                .collect(),
            common_prefixes: page.common_prefixes,
            next_page_token,
        }))
    }

    async fn delete_object(
        &self,
        req: Request<po::DeleteObjectRequest>,
    ) -> Result<Response<po::DeleteObjectResponse>, Status> {
        authorize(&req, "DeleteObject", USERS)?;
        let client = self.client_for(&req)?;
        let req = req.into_inner();
        let generation = (req.if_generation_match != 0).then_some(req.if_generation_match);
        client
            .delete_if(&req.bucket, &req.key, generation)
            .await
            .map_err(status_of)?;
        Ok(Response::new(po::DeleteObjectResponse {}))
    }

    async fn copy_object(
        &self,
        req: Request<po::CopyObjectRequest>,
    ) -> Result<Response<po::CopyObjectResponse>, Status> {
        authorize(&req, "CopyObject", USERS)?;
        let client = self.client_for(&req)?;
        let req = req.into_inner();
        let precondition = cairn_proto::convert::precondition(req.precondition)?;
        let source = client
            .open(&req.source_bucket, &req.source_key)
            .await
            .map_err(status_of)?;
        let options = PutOptions {
            content_type: source.stat.content_type.clone(),
            metadata: source.stat.metadata.clone(),
            expected_blake3: source.stat.blake3,
            precondition,
        };
        let (mut pipe_in, pipe_out) = tokio::io::duplex(GET_PIPE_BYTES);
        let reader = client.clone();
        let src = source.clone();
        let reading = tokio::spawn(async move {
            let r = reader.read(&src, None, &mut pipe_in).await;
            drop(pipe_in);
            r
        });
        let put = client
            .put_with(&req.bucket, &req.key, pipe_out, options)
            .await;
        match reading.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(status_of(e)),
            Err(e) => return Err(Status::internal(format!("copy read task failed: {e}"))),
        }
        let outcome = put.map_err(status_of)?;
        let copy = client
            .open(&req.bucket, &req.key)
            .await
            .map_err(status_of)?;
        let mut info = info_of(&req.bucket, &copy);
        info.generation = outcome.generation;
        info.size = outcome.size;
        Ok(Response::new(po::CopyObjectResponse { object: Some(info) }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_tokens_decode_or_are_refused_without_panicking() {
        use super::decode_page_token;
        assert_eq!(
            decode_page_token("").unwrap(),
            (String::new(), String::new())
        );
        assert_eq!(
            decode_page_token("kab").unwrap(),
            ("ab".into(), String::new())
        );
        assert_eq!(
            decode_page_token("pa/").unwrap(),
            ("a/".into(), "a/".into())
        );
        assert!(decode_page_token("é").is_err());
        assert!(decode_page_token("x").is_err());
    }
}
