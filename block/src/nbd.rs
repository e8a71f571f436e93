//! An NBD server exporting one [`BlockDevice`]: accepts TCP connections, runs the
//! handshake (`handshake`) and then the transmission phase (`transmission`) on each,
//! over the wire format in `protocol`. Connections are served concurrently and share one
//! ordered queue to the device, so a FLUSH covers every write acknowledged on any of
//! them, and the export advertises `NBD_FLAG_CAN_MULTI_CONN`.
//!
//! The server stops when asked to (`shutdown`) or when the device is fenced: once this
//! server's claim on the volume is gone nothing it does may succeed, and an operator's
//! supervisor should see the process end rather than a server answering errors forever.

pub mod handshake;
pub mod protocol;
pub mod transmission;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::BufReader;
use tokio::io::BufWriter;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::device::BlockDevice;
use protocol::*;

/// Connections one server serves at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the volume's claim was lost (session fenced); every write from this server is refused from now on")]
    Fenced,
}

/// What the handshake says about the export.
fn export_info(name: &str, device: &dyn BlockDevice) -> ExportInfo {
    let writes = if device.read_only() {
        TX_READ_ONLY
    } else {
        TX_SEND_FUA | TX_SEND_TRIM | TX_SEND_WRITE_ZEROES
    };
    ExportInfo {
        size: device.size(),
        flags: TX_HAS_FLAGS | TX_SEND_FLUSH | TX_CAN_MULTI_CONN | writes,
        block_sizes: (1, 4096, transmission::MAX_PAYLOAD),
        description: format!("cairn volume {name}"),
    }
}

/// Serves one connection to its end.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    info: Arc<ExportInfo>,
    queue: transmission::Queue,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(256 << 10, read);
    let mut writer = BufWriter::with_capacity(256 << 10, write);
    let mut joined = tokio::io::join(&mut reader, &mut writer);
    match handshake::negotiate(&mut joined, &name, &info).await {
        Ok(handshake::Outcome::Transmission) => {}
        Ok(handshake::Outcome::Aborted) => return,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "NBD handshake failed");
            return;
        }
    }
    tracing::info!(%peer, volume = %name, "NBD client connected");
    match transmission::serve(&mut reader, &mut writer, &queue).await {
        Ok(end) => tracing::info!(%peer, ?end, "NBD client disconnected"),
        Err(e) => tracing::warn!(%peer, error = %e, "NBD connection ended"),
    }
}

/// Serves `device` as export `name` on `listener` until `shutdown` completes (then the
/// open connections are closed: writes they did not flush are not acknowledged as
/// durable, as on any block device) or the device is fenced.
pub async fn serve(
    listener: TcpListener,
    name: &str,
    device: Arc<dyn BlockDevice>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let name: Arc<str> = Arc::from(name);
    let info = Arc::new(export_info(&name, device.as_ref()));
    let (queue, worker) = transmission::Queue::new(device);
    let worker = tokio::spawn(worker);
    tokio::pin!(worker);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            ended = &mut worker => {
                connections.shutdown().await;
                return match ended {
                    Ok(Err(_fenced)) => Err(ServeError::Fenced),
                    // The worker ends otherwise only when the queue is dropped.
                    Ok(Ok(())) | Err(_) => Ok(()),
                };
            }
            Some(_) = connections.join_next() => {}
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(
                            stream,
                            peer,
                            name.clone(),
                            info.clone(),
                            queue.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of descriptors, a connection reset before accept: not the
                        // server's end.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    connections.shutdown().await;
    // Whatever was queued is applied before the device is handed back.
    drop(queue);
    match worker.await {
        Ok(Err(_fenced)) => Err(ServeError::Fenced),
        Ok(Ok(())) | Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
