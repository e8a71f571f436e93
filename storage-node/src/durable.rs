//! The one durable write recipe: create a temporary file in the target's directory, write
//! everything (through the [`IoEngine`]), `fdatasync`, rename over the final name, fsync
//! the directory. A reader sees either the old file or the complete new one, and success
//! means the new one survives a crash. Every file the node writes goes through here.
//! Knows nothing of shards or gRPC.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::io_engine::{blocking, IoEngine};

/// Marks the temporary files of this recipe: `.<final name>.tmp.<pid>.<random>`.
const TEMP_INFIX: &str = ".tmp.";

/// One failed step of the recipe.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path:?}")]
pub struct DurableWriteError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl DurableWriteError {
    fn new(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DurableWriteError {
        let path = path.to_path_buf();
        move |source| DurableWriteError { op, path, source }
    }
}

/// True for a name this recipe uses for temporary files (left over only by a crash).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_INFIX)
}

/// Durably replaces `path` with the concatenation of `parts`. The directory must exist.
/// On failure no temporary file is left behind and `path` is untouched (unless only the
/// final directory fsync failed: then the new file is in place but maybe not durable).
///
/// Cancel safety: dropping the future removes the temporary file; `path` is then either
/// untouched or already fully replaced.
pub async fn write_durably(
    engine: &IoEngine,
    path: &Path,
    parts: Vec<Bytes>,
) -> Result<(), DurableWriteError> {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name.to_string_lossy()),
        _ => {
            return Err(DurableWriteError {
                op: "write durably",
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
            })
        }
    };
    let temp = dir.join(format!(
        ".{name}{TEMP_INFIX}{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));

    let file = {
        let p = temp.clone();
        blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
        })
        .await
        .map_err(DurableWriteError::new("create", &temp))?
    };
    let mut guard = TempFileGuard { path: Some(temp) };
    let temp = guard.path.clone().expect("set just above");
    let file = Arc::new(file);

    let mut offset = 0u64;
    let writes = parts.into_iter().map(|part| {
        let at = offset;
        offset += part.len() as u64;
        engine.write_all_at(&file, at, part)
    });
    futures::future::try_join_all(writes)
        .await
        .map_err(DurableWriteError::new("write", &temp))?;
    engine
        .fdatasync(&file)
        .await
        .map_err(DurableWriteError::new("fdatasync", &temp))?;
    drop(file);

    {
        let (from, to) = (temp.clone(), path.to_path_buf());
        blocking(move || std::fs::rename(from, to))
            .await
            .map_err(DurableWriteError::new("rename", &temp))?;
    }
    guard.path = None;
    sync_dir(engine, dir).await
}

/// Fsyncs a directory, making renames and unlinks in it durable.
pub async fn sync_dir(engine: &IoEngine, dir: &Path) -> Result<(), DurableWriteError> {
    let handle = {
        let p = dir.to_path_buf();
        blocking(move || std::fs::File::open(p))
            .await
            .map_err(DurableWriteError::new("open directory", dir))?
    };
    engine
        .fsync(&Arc::new(handle))
        .await
        .map_err(DurableWriteError::new("fsync directory", dir))
}

/// Removes the temporary file unless the rename happened (also when the future is dropped).
struct TempFileGuard {
    path: Option<PathBuf>,
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = ?path, error = %e, "cannot remove temporary file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_engine::std_fs::StdFsEngine;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn write_creates_then_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let engine = IoEngine::Std(StdFsEngine);
        let path = dir.path().join("f");
        let parts = vec![Bytes::from_static(b"head"), Bytes::from_static(b"-body")];
        write_durably(&engine, &path, parts).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"head-body");
        write_durably(&engine, &path, vec![Bytes::from_static(b"new")])
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[tokio::test]
    async fn failed_write_leaves_no_temp_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let engine = IoEngine::Std(StdFsEngine);
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        // Renaming a file over a non-empty directory fails after the data was written.
        let blocked = dir.path().join("d");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"").unwrap();
        let err = write_durably(&engine, &blocked, vec![Bytes::from_static(b"data")])
            .await
            .unwrap_err();
        assert_eq!(err.op, "rename");
        assert_eq!(names(dir.path()), ["d", "f"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[tokio::test]
    async fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let engine = IoEngine::Std(StdFsEngine);
        let err = write_durably(&engine, &dir.path().join("no/f"), vec![])
            .await
            .unwrap_err();
        assert_eq!(err.op, "create");
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(".abc.0.tmp.12.00ff"));
        assert!(!is_temp_name("abc.0"));
        assert!(!is_temp_name(".hidden"));
    }
}
