//! The transmission phase: requests from one connection, answered with simple replies
//! in the order they arrive. A device failure is the request's error; a fenced device
//! ends the connection (after its error reply), as does a client that breaks the
//! protocol.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::protocol::*;
use crate::device::{BlockDevice, DeviceError};

/// The largest READ or WRITE payload accepted (the common NBD limit).
pub const MAX_PAYLOAD: u32 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    #[error("connection IO: {0}")]
    Io(#[from] std::io::Error),
    #[error("client broke the protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("client sent a write of {0} bytes; the limit is {MAX_PAYLOAD}")]
    TooLarge(u32),
    #[error(transparent)]
    Fenced(DeviceError),
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

/// Serves requests until the client disconnects.
pub async fn serve<R, W>(
    reader: &mut R,
    writer: &mut W,
    device: &dyn BlockDevice,
) -> Result<End, TransmissionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut header = [0u8; REQUEST_LEN];
    loop {
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(End::Closed),
            Err(e) => return Err(e.into()),
        }
        let request = Request::parse(&header)?;
        let (offset, len) = (request.offset, u64::from(request.len));
        let (result, writes) = match request.command {
            Command::Disconnect => {
                writer.flush().await?;
                return Ok(End::Disconnect);
            }
            Command::Read if request.len > MAX_PAYLOAD => {
                writer
                    .write_all(&simple_reply(EOVERFLOW, request.cookie))
                    .await?;
                writer.flush().await?;
                continue;
            }
            Command::Read => match device.read(offset, request.len).await {
                Ok(data) => {
                    writer.write_all(&simple_reply(0, request.cookie)).await?;
                    writer.write_all(&data).await?;
                    writer.flush().await?;
                    continue;
                }
                Err(e) => (Err(e), false),
            },
            Command::Write => {
                if request.len > MAX_PAYLOAD {
                    return Err(TransmissionError::TooLarge(request.len));
                }
                let mut data = vec![0u8; request.len as usize];
                reader.read_exact(&mut data).await?;
                (device.write(offset, &data, request.fua()).await, true)
            }
            Command::Flush => (device.flush().await, false),
            Command::Trim => (device.zero(offset, len, false, request.fua()).await, true),
            Command::WriteZeroes => {
                let allocate = request.flags & CMD_FLAG_NO_HOLE != 0;
                let zeroed = device.zero(offset, len, allocate, request.fua()).await;
                (zeroed, true)
            }
            Command::Other(_) => {
                writer
                    .write_all(&simple_reply(EINVAL, request.cookie))
                    .await?;
                writer.flush().await?;
                continue;
            }
        };
        match result {
            Ok(()) => writer.write_all(&simple_reply(0, request.cookie)).await?,
            Err(e) => {
                tracing::warn!(command = ?request.command, offset, len, error = %e, "request failed");
                writer
                    .write_all(&simple_reply(nbd_error(&e, writes), request.cookie))
                    .await?;
                if matches!(e, DeviceError::Fenced) {
                    writer.flush().await?;
                    return Err(TransmissionError::Fenced(e));
                }
            }
        }
        writer.flush().await?;
    }
}
