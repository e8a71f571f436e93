//! The transmission phase. Every connection to an export feeds one ordered queue, which
//! one worker applies to the device, request by request ([`Queue`], [`work`]); each
//! connection reads requests (`serve`) and writes replies (its replier task) on its own.
//!
//! A plain WRITE (no FUA) that is in range is acknowledged as soon as it is queued, as a
//! disk acknowledges a write into its cache: the client goes on while the worker applies
//! it (while a flush of the volume's buffer is being stored, say). Everything after it in
//! the queue, from any connection, sees it: the worker applies requests in queue order, so
//! a READ reads it and a FLUSH makes it durable, which is what `NBD_FLAG_CAN_MULTI_CONN`
//! promises. If applying an acknowledged write fails, the failure is kept and the next
//! FLUSH answers `EIO` (a disk reports a failed cached write the same way); queued bytes are
//! bounded ([`QUEUED_BYTES`]), so a slow device makes clients wait rather than the server
//! grow. A fenced device stops the worker: every connection ends.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::protocol::*;
use crate::device::{check_range, BlockDevice, DeviceError};

/// The largest READ or WRITE payload accepted (the common NBD limit).
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Bytes of acknowledged writes the queue may hold before a connection waits.
pub const QUEUED_BYTES: usize = 64 << 20;
/// Requests the queue holds.
const QUEUE_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    #[error("connection IO: {0}")]
    Io(#[from] std::io::Error),
    #[error("client broke the protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("client sent a write of {0} bytes; the limit is {MAX_PAYLOAD}")]
    TooLarge(u32),
    #[error("the export's worker stopped (the device was fenced or the server is stopping)")]
    WorkerGone,
}

/// How a connection ended well.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// `NBD_CMD_DISC`.
    Disconnect,
    /// The client closed the connection between requests.
    Closed,
}

/// The NBD error for a failed request.
fn nbd_error(e: &DeviceError, writes: bool) -> u32 {
    match e {
        DeviceError::OutOfRange { .. } if writes => ENOSPC,
        DeviceError::OutOfRange { .. } => EINVAL,
        DeviceError::NoSpace => ENOSPC,
        DeviceError::ReadOnly => EPERM,
        DeviceError::Fenced | DeviceError::Io(_) => EIO,
    }
}

/// One reply for a connection's replier.
struct Reply {
    cookie: u64,
    error: u32,
    data: Vec<u8>,
}

/// One request for the worker.
struct Job {
    request: Request,
    data: Vec<u8>,
    /// Where the reply goes; `None` for a write acknowledged when it was queued.
    replies: Option<mpsc::Sender<Reply>>,
    /// The queued bytes this job holds (released when it is applied).
    _bytes: Option<OwnedSemaphorePermit>,
}

/// The queue of one export's device (cheap to clone: one per connection).
#[derive(Clone)]
pub struct Queue {
    device: Arc<dyn BlockDevice>,
    jobs: mpsc::Sender<Job>,
    bytes: Arc<Semaphore>,
}

impl Queue {
    /// A queue for `device` and the worker that applies it (run it until it returns: it
    /// ends with the last queue dropped, or with the device fenced).
    pub fn new(
        device: Arc<dyn BlockDevice>,
    ) -> (
        Queue,
        impl std::future::Future<Output = Result<(), DeviceError>>,
    ) {
        let (jobs, receiver) = mpsc::channel(QUEUE_LEN);
        let queue = Queue {
            device: device.clone(),
            jobs,
            bytes: Arc::new(Semaphore::new(QUEUED_BYTES >> 10)),
        };
        (queue, work(device, receiver))
    }

    async fn push(&self, job: Job) -> Result<(), TransmissionError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| TransmissionError::WorkerGone)
    }
}

/// Applies one request; the data a READ returns.
async fn apply(device: &dyn BlockDevice, job: &Job) -> Result<Vec<u8>, DeviceError> {
    let r = &job.request;
    let (offset, len) = (r.offset, u64::from(r.len));
    match r.command {
        Command::Read => device.read(offset, r.len).await,
        Command::Write => device
            .write(offset, &job.data, r.fua())
            .await
            .map(|()| Vec::new()),
        Command::Flush => device.flush().await.map(|()| Vec::new()),
        Command::Trim => device
            .zero(offset, len, false, r.fua())
            .await
            .map(|()| Vec::new()),
        Command::WriteZeroes => {
            let allocate = r.flags & CMD_FLAG_NO_HOLE != 0;
            device
                .zero(offset, len, allocate, r.fua())
                .await
                .map(|()| Vec::new())
        }
        Command::Disconnect | Command::Other(_) => {
            unreachable!("answered by the connection, never queued")
        }
    }
}

/// The worker: applies the queue in order until every queue is dropped (`Ok`) or the
/// device is fenced (`Err`).
async fn work(
    device: Arc<dyn BlockDevice>,
    mut jobs: mpsc::Receiver<Job>,
) -> Result<(), DeviceError> {
    // A failed write that was acknowledged already, for the next FLUSH to report.
    let mut deferred: Option<DeviceError> = None;
    while let Some(job) = jobs.recv().await {
        let mut result = apply(device.as_ref(), &job).await;
        if job.request.command == Command::Flush {
            if let (Ok(_), Some(e)) = (&result, deferred.take()) {
                result = Err(e);
            }
        }
        let fenced = matches!(result, Err(DeviceError::Fenced));
        match (job.replies, result) {
            (Some(replies), result) => {
                let (error, data) = match result {
                    Ok(data) => (0, data),
                    Err(e) => {
                        let writes = job.request.command != Command::Read;
                        tracing::warn!(command = ?job.request.command, offset = job.request.offset, error = %e, "request failed");
                        (nbd_error(&e, writes), Vec::new())
                    }
                };
                // The connection may be gone; the request was applied all the same.
                let _ = replies
                    .send(Reply {
                        cookie: job.request.cookie,
                        error,
                        data,
                    })
                    .await;
            }
            (None, Err(e)) => {
                tracing::warn!(offset = job.request.offset, error = %e, "an acknowledged write failed; the next FLUSH reports it");
                deferred = Some(e);
            }
            (None, Ok(_)) => {}
        }
        if fenced {
            return Err(DeviceError::Fenced);
        }
    }
    Ok(())
}

/// Writes replies to the connection until every sender is gone.
async fn reply_forever<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut replies: mpsc::Receiver<Reply>,
) -> std::io::Result<()> {
    while let Some(reply) = replies.recv().await {
        writer
            .write_all(&simple_reply(reply.error, reply.cookie))
            .await?;
        writer.write_all(&reply.data).await?;
        if replies.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await
}

/// Serves one connection's requests through `queue` until the client disconnects.
pub async fn serve<R, W>(
    reader: &mut R,
    writer: &mut W,
    queue: &Queue,
) -> Result<End, TransmissionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (replies, receiver) = mpsc::channel(QUEUE_LEN);
    let reading = read_requests(reader, queue, replies);
    let replying = reply_forever(writer, receiver);
    // The replier ends once the reader and every queued job of this connection dropped
    // their senders: every reply is written before the connection closes.
    let (read, replied) = tokio::join!(reading, replying);
    replied?;
    read
}

async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut R,
    queue: &Queue,
    replies: mpsc::Sender<Reply>,
) -> Result<End, TransmissionError> {
    let answer = |request: &Request, error: u32| Reply {
        cookie: request.cookie,
        error,
        data: Vec::new(),
    };
    let mut header = [0u8; REQUEST_LEN];
    loop {
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(End::Closed),
            Err(e) => return Err(e.into()),
        }
        let request = Request::parse(&header)?;
        let mut job = Job {
            request,
            data: Vec::new(),
            replies: Some(replies.clone()),
            _bytes: None,
        };
        match request.command {
            Command::Disconnect => return Ok(End::Disconnect),
            Command::Read if request.len > MAX_PAYLOAD => {
                let _ = replies.send(answer(&request, EOVERFLOW)).await;
                continue;
            }
            Command::Other(_) => {
                let _ = replies.send(answer(&request, EINVAL)).await;
                continue;
            }
            Command::Write => {
                if request.len > MAX_PAYLOAD {
                    return Err(TransmissionError::TooLarge(request.len));
                }
                job.data = vec![0u8; request.len as usize];
                reader.read_exact(&mut job.data).await?;
                // A write is acknowledged only while the device is usable: a fenced
                // server refuses it at once rather than accepting it into its queue.
                let device = queue.device.as_ref();
                let refused = if device.read_only() {
                    Some(EPERM)
                } else if device.fenced() {
                    Some(EIO)
                } else {
                    check_range(request.offset, u64::from(request.len), device.size())
                        .err()
                        .map(|_| ENOSPC)
                };
                if let Some(error) = refused {
                    let _ = replies.send(answer(&request, error)).await;
                    continue;
                }
                if !request.fua() {
                    let kib = request.len.div_ceil(1024).max(1);
                    let permit = queue
                        .bytes
                        .clone()
                        .acquire_many_owned(kib)
                        .await
                        .map_err(|_| TransmissionError::WorkerGone)?;
                    job._bytes = Some(permit);
                    job.replies = None;
                    queue.push(job).await?;
                    let _ = replies.send(answer(&request, 0)).await;
                    continue;
                }
            }
            Command::Read | Command::Flush | Command::Trim | Command::WriteZeroes => {}
        }
        queue.push(job).await?;
    }
}
