//! The node-id marker `DATA/cairn-node.id`: written on a data directory's first use and
//! checked on every later start, so a swapped, wrong or unmounted disk is refused instead
//! of being served as this node's data. Knows nothing of shards beyond "has data".
//!
//! It holds the node id and the directory's own random identity (a [`DiskId`]):
//!
//! ```text
//! 7
//! disk 5f0c1e2d3a4b5c6d7e8f901a2b3c4d5e
//! ```
//!
//! The node presents the disk id to the metadata service, which remembers it: a node
//! whose directory was wiped (or is an empty mount point) writes a new marker with a new
//! disk id on start, and the metadata service refuses it rather than trust it with the
//! shards the old directory held. A marker of an older version (the node id alone) gets a
//! disk id added on the first start that reads it.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cairn_common::{DiskId, NodeId};

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
    #[error("node id marker {path:?} holds {content:?}, not a node id (and a disk id)")]
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

/// What a marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    node: NodeId,
    /// Absent in markers written before disk ids existed.
    disk: Option<DiskId>,
}

impl Marker {
    fn parse(text: &str) -> Option<Marker> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let node = lines.next()?.parse().ok()?;
        let disk = match lines.next() {
            None => None,
            Some(line) => Some(line.strip_prefix("disk ")?.trim().parse().ok()?),
        };
        lines.next().is_none().then_some(Marker { node, disk })
    }

    fn render(node: NodeId, disk: DiskId) -> String {
        format!("{node}\ndisk {disk}\n")
    }
}

/// Checks that `data_dir` belongs to `node_id` and returns the directory's disk id.
/// Without a marker, writes one (durably) with a new random disk id if the directory
/// holds no data yet (`has_data` false), else refuses. A marker without a disk id (an
/// older version's) gets one.
pub async fn check_or_create(
    engine: &IoEngine,
    data_dir: &Path,
    node_id: NodeId,
    has_data: bool,
) -> Result<DiskId, MarkerError> {
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
            let marker = Marker::parse(&text).ok_or_else(|| MarkerError::Unreadable {
                path: path.clone(),
                content: text.chars().take(80).collect(),
            })?;
            if marker.node != node_id {
                return Err(MarkerError::Mismatch {
                    dir: data_dir.to_path_buf(),
                    found: marker.node,
                    configured: node_id,
                });
            }
            match marker.disk {
                Some(disk) => Ok(disk),
                None => {
                    let disk = DiskId::random();
                    write(engine, &path, node_id, disk).await?;
                    tracing::info!(dir = ?data_dir, node = node_id, %disk, "added a disk id to the node id marker");
                    Ok(disk)
                }
            }
        }
        None if has_data => Err(MarkerError::Missing {
            dir: data_dir.to_path_buf(),
        }),
        None => {
            let disk = DiskId::random();
            write(engine, &path, node_id, disk).await?;
            tracing::info!(dir = ?data_dir, node = node_id, %disk, "new data directory: wrote node id marker");
            Ok(disk)
        }
    }
}

async fn write(
    engine: &IoEngine,
    path: &Path,
    node: NodeId,
    disk: DiskId,
) -> Result<(), MarkerError> {
    let content = Bytes::from(Marker::render(node, disk));
    let content = AlignedBuf::from_parts(&[content]);
    durable::write_durably(engine, path, content, durable::WriteMode::Buffered).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_engine::std_fs::StdFsEngine;

    const ENGINE: IoEngine = IoEngine::Std(StdFsEngine);

    #[tokio::test]
    async fn first_use_writes_the_marker_and_later_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let disk = check_or_create(&ENGINE, dir.path(), 7, false)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap(),
            format!("7\ndisk {disk}\n")
        );
        assert_eq!(
            check_or_create(&ENGINE, dir.path(), 7, true).await.unwrap(),
            disk,
            "the same directory keeps its disk id"
        );
    }

    #[tokio::test]
    async fn a_wiped_directory_gets_a_new_disk_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = check_or_create(&ENGINE, dir.path(), 7, false)
            .await
            .unwrap();
        std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
        let second = check_or_create(&ENGINE, dir.path(), 7, false)
            .await
            .unwrap();
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn an_old_marker_gets_a_disk_id_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARKER_FILE), "7\n").unwrap();
        let disk = check_or_create(&ENGINE, dir.path(), 7, true).await.unwrap();
        assert_eq!(
            check_or_create(&ENGINE, dir.path(), 7, true).await.unwrap(),
            disk
        );
    }

    #[test]
    fn markers_parse_strictly() {
        let disk = DiskId([0xab; 16]);
        assert_eq!(
            Marker::parse(&Marker::render(3, disk)),
            Some(Marker {
                node: 3,
                disk: Some(disk)
            })
        );
        assert_eq!(
            Marker::parse("3\n"),
            Some(Marker {
                node: 3,
                disk: None
            })
        );
        for bad in [
            "",
            "x",
            "3\ndisk zz\n",
            "3\nnode 4\n",
            "3\ndisk {d}\nmore\n",
        ] {
            let bad = bad.replace("{d}", &disk.to_string());
            assert_eq!(Marker::parse(&bad), None, "{bad:?}");
        }
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
