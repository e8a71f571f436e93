//! The one durable write recipe: create a temporary file in the target's directory, write
//! everything (through the [`IoEngine`]), `fdatasync`, rename over the final name, fsync
//! the directory. A reader sees either the old file or the complete new one, and success
//! means the new one survives a crash. Every file the node writes goes through here.
//! Knows nothing of shards or gRPC.
//!
//! The content comes as an [`AlignedBuf`], so [`WriteMode::Direct`] can write it with
//! `O_DIRECT` as it is (zero-padded to whole pages, then truncated to the exact length
//! before the `fdatasync`): the data skips the page
//! cache, which on this project's machines costs more CPU than erasure coding and hashing
//! together (BENCHMARKS.md, profile). [`direct_io_supported`] probes a directory once.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use cairn_common::failpoint;

use crate::aligned::AlignedBuf;
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

/// How the bytes reach the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Through the page cache.
    Buffered,
    /// `O_DIRECT` from a page-aligned buffer (the file system must support it).
    Direct,
}

/// True for a name this recipe uses for temporary files (left over only by a crash).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_INFIX)
}

/// Durably replaces `path` with `data`. The directory must exist.
/// On failure no temporary file is left behind and `path` is untouched (unless only the
/// final directory fsync failed: then the new file is in place but maybe not durable).
///
/// Cancel safety: dropping the future removes the temporary file; `path` is then either
/// untouched or already fully replaced.
pub async fn write_durably(
    engine: &IoEngine,
    path: &Path,
    data: AlignedBuf,
    mode: WriteMode,
) -> Result<(), DurableWriteError> {
    write_with_failpoints(engine, path, data, mode, false).await
}

/// [`write_durably`] for a shard, passing the shard-write failpoints (`failpoint.rs`):
/// before the `fdatasync` and once durable, before the caller acknowledges it.
pub async fn write_shard_durably(
    engine: &IoEngine,
    path: &Path,
    data: AlignedBuf,
    mode: WriteMode,
) -> Result<(), DurableWriteError> {
    write_with_failpoints(engine, path, data, mode, true).await?;
    failpoint::hit(failpoint::SHARD_WRITE_BEFORE_ACK)
        .map_err(DurableWriteError::new("acknowledge", path))
}

async fn write_with_failpoints(
    engine: &IoEngine,
    path: &Path,
    data: AlignedBuf,
    mode: WriteMode,
    shard: bool,
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
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            if mode == WriteMode::Direct {
                options.custom_flags(libc::O_DIRECT);
            }
            options.open(p)
        })
        .await
        .map_err(DurableWriteError::new("create", &temp))?
    };
    let mut guard = TempFileGuard { path: Some(temp) };
    let temp = guard.path.clone().expect("set just above");
    let file = Arc::new(file);

    match mode {
        WriteMode::Buffered => {
            engine
                .write_all_at(&file, 0, data.into_exact())
                .await
                .map_err(DurableWriteError::new("write", &temp))?;
        }
        WriteMode::Direct => {
            let (buf, len) = data.into_padded();
            let padded = buf.len() != len;
            engine
                .write_all_at(&file, 0, buf)
                .await
                .map_err(DurableWriteError::new("write", &temp))?;
            if padded {
                let file = file.clone();
                blocking(move || file.set_len(len as u64))
                    .await
                    .map_err(DurableWriteError::new("truncate", &temp))?;
            }
        }
    }
    if shard {
        failpoint::hit(failpoint::SHARD_WRITE_BEFORE_FSYNC)
            .map_err(DurableWriteError::new("fdatasync", &temp))?;
    }
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

/// True when `dir`'s file system accepts the [`WriteMode::Direct`] recipe (some refuse
/// `O_DIRECT`, e.g. tmpfs before Linux 6.6): writes, reads back and removes a probe file.
pub async fn direct_io_supported(engine: &IoEngine, dir: &Path) -> bool {
    let path = dir.join(format!(
        ".cairn-direct-probe.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let content = AlignedBuf::from_parts(&[Bytes::from(data.clone())]);
    let written = write_durably(engine, &path, content, WriteMode::Direct).await;
    let result = match written {
        Ok(()) => match std::fs::read(&path) {
            Ok(back) if back == data => Ok(()),
            Ok(_) => Err("read back different bytes".to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(format!("{e}: {}", e.source)),
    };
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(()) => true,
        Err(reason) => {
            tracing::info!(dir = ?dir, %reason, "O_DIRECT not usable here; shard writes go through the page cache");
            false
        }
    }
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
        let parts = [Bytes::from_static(b"head"), Bytes::from_static(b"-body")];
        write_durably(
            &engine,
            &path,
            AlignedBuf::from_parts(&parts),
            WriteMode::Buffered,
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"head-body");
        write_durably(
            &engine,
            &path,
            AlignedBuf::from_parts(&[Bytes::from_static(b"new")]),
            WriteMode::Buffered,
        )
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
        let err = write_durably(
            &engine,
            &blocked,
            AlignedBuf::from_parts(&[Bytes::from_static(b"data")]),
            WriteMode::Buffered,
        )
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
        let err = write_durably(
            &engine,
            &dir.path().join("no/f"),
            AlignedBuf::from_parts(&[]),
            WriteMode::Buffered,
        )
        .await
        .unwrap_err();
        assert_eq!(err.op, "create");
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    }

    /// Temp dirs under /var/tmp: /tmp may be a tmpfs (no O_DIRECT before Linux 6.6).
    fn disk_dir() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").unwrap()
    }

    #[tokio::test]
    async fn direct_writes_store_exact_lengths_of_unaligned_parts() {
        let dir = disk_dir();
        for engine in [
            IoEngine::Std(StdFsEngine),
            IoEngine::Uring(crate::io_engine::uring::UringEngine::new().unwrap()),
        ] {
            assert!(direct_io_supported(&engine, dir.path()).await);
            for len in [0usize, 1, 4095, 4096, 4097, 70_000] {
                let path = dir.path().join(format!("f{len}"));
                let body: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                let parts = [Bytes::from_static(b"hdr"), Bytes::from(body.clone())];
                write_durably(
                    &engine,
                    &path,
                    AlignedBuf::from_parts(&parts),
                    WriteMode::Direct,
                )
                .await
                .unwrap();
                let back = std::fs::read(&path).unwrap();
                assert_eq!(back.len(), 3 + len);
                assert!(back[..3] == *b"hdr" && back[3..] == body[..], "len {len}");
            }
        }
        assert_eq!(names(dir.path()).len(), 6, "no probe or temp file left");
    }

    #[tokio::test]
    async fn a_failing_probe_means_buffered_writes() {
        let dir = disk_dir();
        let missing = dir.path().join("missing");
        assert!(!direct_io_supported(&IoEngine::Std(StdFsEngine), &missing).await);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(".abc.0.tmp.12.00ff"));
        assert!(!is_temp_name("abc.0"));
        assert!(!is_temp_name(".hidden"));
    }
}
