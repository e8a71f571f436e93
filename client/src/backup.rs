//! `cairn meta backup`: the metadata leader's backup stream, written to a file with its
//! blake3 checked (the file's layout: `metadata/src/backup.rs`).

use std::time::Duration;

use cairn_proto::meta as pm;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{ClientError, Result};
use crate::Client;

/// How long one backup may take (the whole stream is one call).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// A backup written.
#[derive(Debug, Clone)]
pub struct BackupWritten {
    /// Bytes of the file, trailer included.
    pub bytes: u64,
    pub blake3: blake3::Hash,
}

impl Client {
    /// Writes a backup of the whole metadata state to `out` (cluster admins): every
    /// change acknowledged before the call is in it. The leader answers; followers
    /// refuse and the call moves on. The bytes are checked against the blake3 the
    /// leader sends last, which ends the file; a stream that breaks or does not match
    /// is an error, and `out` then holds no usable backup.
    pub async fn backup_metadata<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
    ) -> Result<BackupWritten> {
        let meta = self.meta.clone().with_attempt_timeout(BACKUP_TIMEOUT);
        let mut stream = meta
            .call(
                pm::BackupRequest {},
                |mut c, r| async move { c.backup(r).await },
            )
            .await?;
        let io = |op: &str| {
            let op = op.to_string();
            move |source| ClientError::Io { op, source }
        };
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0;
        loop {
            let Some(chunk) = stream.message().await? else {
                return Err(ClientError::Unavailable {
                    message: format!(
                        "the metadata backup stream ended after {bytes} bytes without its hash"
                    ),
                });
            };
            hasher.update(&chunk.data);
            out.write_all(&chunk.data)
                .await
                .map_err(io("write the backup"))?;
            bytes += chunk.data.len() as u64;
            if chunk.blake3.is_empty() {
                continue;
            }
            let found = hasher.finalize();
            if found.as_bytes()[..] != chunk.blake3[..] {
                return Err(ClientError::Malformed {
                    what: format!(
                        "the metadata backup's {bytes} bytes hash to {found}, the leader \
                         sent {}",
                        cairn_common::ids::hex(&chunk.blake3)
                    ),
                });
            }
            out.write_all(found.as_bytes())
                .await
                .map_err(io("write the backup"))?;
            out.flush().await.map_err(io("write the backup"))?;
            return Ok(BackupWritten {
                bytes: bytes + 32,
                blake3: found,
            });
        }
    }
}
