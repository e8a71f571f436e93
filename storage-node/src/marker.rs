//! The node-id marker `DATA/cairn-node.id`: written on a data directory's first use and
//! checked on every later start, so a swapped, wrong or unmounted disk is refused instead
//! of being served as this node's data. Knows nothing of shards beyond "has data".

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cairn_common::NodeId;

use crate::aligned::AlignedBuf;
use crate::durable::{self, DurableWriteError};
use crate::io_engine::{blocking, IoEngine};

/// Name of the marker file in the data directory.
pub const MARKER_FILE: &str = "cairn-node.id";

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("data directory {dir:?} belongs to node {found}, not to node {configured} (wrong or swapped disk?)")]
    Mismatch {
        dir: PathBuf,
        found: NodeId,
        configured: NodeId,
    },
    #[error("node id marker {path:?} holds {content:?}, not a node id")]
    Unreadable { path: PathBuf, content: String },
    #[error("data directory {dir:?} has shards but no {MARKER_FILE} marker (wrong disk, or a damaged one?)")]
    Missing { dir: PathBuf },
    #[error("{op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<DurableWriteError> for MarkerError {
    fn from(e: DurableWriteError) -> MarkerError {
        MarkerError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// Checks that `data_dir` belongs to `node_id`. Without a marker, writes one (durably) if
/// the directory holds no data yet (`has_data` false), else refuses.
pub async fn check_or_create(
    engine: &IoEngine,
    data_dir: &Path,
    node_id: NodeId,
    has_data: bool,
) -> Result<(), MarkerError> {
    let path = data_dir.join(MARKER_FILE);
    let p = path.clone();
    let read = blocking(move || match std::fs::read_to_string(p) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
    .map_err(|source| MarkerError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    match read {
        Some(text) => {
            let found: NodeId = text.trim().parse().map_err(|_| MarkerError::Unreadable {
                path: path.clone(),
                content: text.chars().take(64).collect(),
            })?;
            if found != node_id {
                return Err(MarkerError::Mismatch {
                    dir: data_dir.to_path_buf(),
                    found,
                    configured: node_id,
                });
            }
            Ok(())
        }
        None if has_data => Err(MarkerError::Missing {
            dir: data_dir.to_path_buf(),
        }),
        None => {
            let content = Bytes::from(format!("{node_id}\n"));
            let content = AlignedBuf::from_parts(&[content]);
            durable::write_durably(engine, &path, content, durable::WriteMode::Buffered).await?;
            tracing::info!(dir = ?data_dir, node = node_id, "new data directory: wrote node id marker");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_engine::std_fs::StdFsEngine;

    const ENGINE: IoEngine = IoEngine::Std(StdFsEngine);

    #[tokio::test]
    async fn first_use_writes_the_marker_and_later_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        check_or_create(&ENGINE, dir.path(), 7, false)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap(),
            "7\n"
        );
        check_or_create(&ENGINE, dir.path(), 7, true).await.unwrap();
    }

    #[tokio::test]
    async fn another_node_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_or_create(&ENGINE, dir.path(), 7, false)
            .await
            .unwrap();
        let err = check_or_create(&ENGINE, dir.path(), 8, true)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                MarkerError::Mismatch {
                    found: 7,
                    configured: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("belongs to node 7, not to node 8"));
    }

    #[tokio::test]
    async fn garbage_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARKER_FILE), "seven").unwrap();
        let err = check_or_create(&ENGINE, dir.path(), 7, false)
            .await
            .unwrap_err();
        assert!(matches!(err, MarkerError::Unreadable { .. }), "{err}");
    }

    #[tokio::test]
    async fn data_without_a_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_or_create(&ENGINE, dir.path(), 7, true)
            .await
            .unwrap_err();
        assert!(matches!(err, MarkerError::Missing { .. }), "{err}");
        assert!(!dir.path().join(MARKER_FILE).exists());
    }
}
