//! `Backup`: the whole metadata state as the bytes of a backup file (`backup.rs`), from
//! the leader, for cluster admins.

use bytes::Bytes;
use cairn_proto::meta as pm;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{MetaServer, Route, CLIENTS};
use crate::backup::BackupSource;

/// Bytes of the backup in one message.
const CHUNK_BYTES: usize = 1 << 20;
/// Messages read ahead of the client.
const READ_AHEAD: usize = 4;

type BackupStream = <MetaServer as pm::meta_service_server::MetaService>::BackupStream;

impl MetaServer {
    /// Sends a checkpoint of the state taken once every change acknowledged before the
    /// call is applied. Only the leader answers (it knows that point); the backup is
    /// streamed from its own files, so it holds no lock while the client reads.
    pub(super) async fn backup(
        &self,
        req: Request<pm::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        cairn_net::authorize(&req, "Backup", CLIENTS)?;
        metrics::counter!("cairn_meta_requests_total", "method" => "backup").increment(1);
        if let Route::Forward(_) = self.route(&req)? {
            return Err(Status::unavailable(format!(
                "metadata replica {} is not the leader: a backup is taken on the leader \
                 (`cairn status` names it); retry there",
                self.id
            )));
        }
        self.require_quorum().await?;
        self.require_admin(&req, "back up the metadata").await?;
        self.read(|_| ()).await?;
        let db = crate::state_machine::live_db(&self.state);
        let source = tokio::task::spawn_blocking(move || BackupSource::take(&db))
            .await
            .map_err(|e| Status::internal(format!("backup task: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(
            last_applied = ?source.info.last_applied,
            bytes = source.body_bytes(),
            "sending a metadata backup"
        );
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || send(source, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Reads `source` into messages until its end or until the client goes away (the
/// checkpoint is removed when `source` is dropped, either way).
fn send(mut source: BackupSource, tx: mpsc::Sender<Result<pm::BackupChunk, Status>>) {
    let mut hasher = blake3::Hasher::new();
    loop {
        let mut buf = vec![0; CHUNK_BYTES];
        let mut len = 0;
        while len < CHUNK_BYTES {
            match source.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) => {
                    tracing::warn!("reading a backup checkpoint: {e}");
                    let _ = tx.blocking_send(Err(Status::internal(format!(
                        "read the backup checkpoint: {e}"
                    ))));
                    return;
                }
            }
        }
        buf.truncate(len);
        hasher.update(&buf);
        let last = len < CHUNK_BYTES;
        let chunk = pm::BackupChunk {
            data: Bytes::from(buf),
            blake3: if last {
                Bytes::copy_from_slice(hasher.finalize().as_bytes())
            } else {
                Bytes::new()
            },
        };
        if tx.blocking_send(Ok(chunk)).is_err() || last {
            return;
        }
    }
}
