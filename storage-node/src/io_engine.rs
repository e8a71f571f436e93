//! Positional file IO for shard files, behind one type with two backends: io_uring
//! ([`uring`]) and blocking std-fs calls on tokio's blocking pool ([`std_fs`]).
//! [`IoEngine::detect`] picks one at start-up with a real self-test in the data directory.
//!
//! The engine is an enum rather than `Arc<dyn Trait>`: there are exactly two backends,
//! async methods in a trait are not object-safe without boxing every call, and an enum
//! keeps the dispatch static. Both backends pass the same conformance suite (bottom of
//! this file). Opening, renaming and removing files is not the engine's business (callers
//! use std-fs for those); it only moves bytes and flushes them.

pub mod std_fs;
pub mod uring;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::IoEngineChoice;

/// A file handle shared with the IO backend, which keeps it open until the operation ends
/// (even if the caller's future was dropped).
pub type SharedFile = Arc<File>;

/// Which backend is in use, and its handle.
#[derive(Clone, Debug)]
pub enum IoEngine {
    Uring(uring::UringEngine),
    Std(std_fs::StdFsEngine),
    /// Test double: std-fs, except that every write stores half its buffer and then fails
    /// with ENOSPC, like a disk filling up mid-write.
    #[cfg(test)]
    FullDisk,
}

/// Why the configured engine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum IoEngineError {
    #[error("cannot set up io_uring")]
    RingSetup(#[source] io::Error),
    #[error("io_uring self-test in {dir:?} failed")]
    SelfTest {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl IoEngine {
    /// The engine `choice` asks for. For `Auto`, io_uring when it can be set up and passes
    /// a write + fdatasync + read self-test of a temporary file in `dir`, else std-fs with
    /// a warning. For `Uring`, the same test must pass or start-up fails.
    pub async fn detect(dir: &Path, choice: IoEngineChoice) -> Result<IoEngine, IoEngineError> {
        match choice {
            IoEngineChoice::Std => Ok(IoEngine::Std(std_fs::StdFsEngine)),
            IoEngineChoice::Uring => Self::try_uring(dir).await,
            IoEngineChoice::Auto => match Self::try_uring(dir).await {
                Ok(engine) => Ok(engine),
                Err(e) => {
                    tracing::warn!(
                        error = %error_chain(&e),
                        "io_uring unavailable; using the std-fs IO engine"
                    );
                    Ok(IoEngine::Std(std_fs::StdFsEngine))
                }
            },
        }
    }

    async fn try_uring(dir: &Path) -> Result<IoEngine, IoEngineError> {
        let engine = IoEngine::Uring(uring::UringEngine::new().map_err(IoEngineError::RingSetup)?);
        engine
            .self_test(dir)
            .await
            .map_err(|source| IoEngineError::SelfTest {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(engine)
    }

    /// Writes, flushes and reads back a temporary file in `dir`, then removes it.
    async fn self_test(&self, dir: &Path) -> io::Result<()> {
        let path = dir.join(format!(
            ".cairn-io-probe.{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let file = {
            let path = path.clone();
            blocking(move || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
            })
            .await?
        };
        let file = Arc::new(file);
        let result = async {
            let data: Bytes = (0..12_345u32).map(|i| (i % 251) as u8).collect();
            self.write_all_at(&file, 4096, data.clone()).await?;
            self.fdatasync(&file).await?;
            let back = self.read_exact_at(&file, 4096, data.len()).await?;
            if back != data {
                return Err(io::Error::other("self-test read back different bytes"));
            }
            let dir_file = Arc::new(std::fs::File::open(dir)?);
            self.fsync(&dir_file).await
        }
        .await;
        let _ = std::fs::remove_file(&path);
        result
    }

    /// "uring" or "std", for logs.
    pub fn name(&self) -> &'static str {
        match self {
            IoEngine::Uring(_) => "uring",
            IoEngine::Std(_) => "std",
            #[cfg(test)]
            IoEngine::FullDisk => "full-disk",
        }
    }

    /// Writes all of `buf` at `offset`. Cancel-safe in the memory sense: the backend keeps
    /// the buffer and file alive until the kernel is done; a dropped call may still write.
    pub async fn write_all_at(&self, file: &SharedFile, offset: u64, buf: Bytes) -> io::Result<()> {
        match self {
            IoEngine::Uring(e) => e.write_all_at(file, offset, buf).await,
            IoEngine::Std(e) => e.write_all_at(file, offset, buf).await,
            #[cfg(test)]
            IoEngine::FullDisk => {
                let half = buf.slice(..buf.len() / 2);
                std_fs::StdFsEngine.write_all_at(file, offset, half).await?;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
        }
    }

    /// Reads exactly `len` bytes at `offset`; end of file first is `UnexpectedEof`.
    pub async fn read_exact_at(
        &self,
        file: &SharedFile,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        match self {
            IoEngine::Uring(e) => e.read_exact_at(file, offset, len).await,
            IoEngine::Std(e) => e.read_exact_at(file, offset, len).await,
            #[cfg(test)]
            IoEngine::FullDisk => std_fs::StdFsEngine.read_exact_at(file, offset, len).await,
        }
    }

    /// Flushes the file's data (and the metadata needed to read it) to stable storage.
    pub async fn fdatasync(&self, file: &SharedFile) -> io::Result<()> {
        match self {
            IoEngine::Uring(e) => e.sync(file, true).await,
            IoEngine::Std(e) => e.sync(file, true).await,
            #[cfg(test)]
            IoEngine::FullDisk => std_fs::StdFsEngine.sync(file, true).await,
        }
    }

    /// Full fsync, used for directories after a rename or unlink.
    pub async fn fsync(&self, file: &SharedFile) -> io::Result<()> {
        match self {
            IoEngine::Uring(e) => e.sync(file, false).await,
            IoEngine::Std(e) => e.sync(file, false).await,
            #[cfg(test)]
            IoEngine::FullDisk => std_fs::StdFsEngine.sync(file, false).await,
        }
    }
}

/// Runs a blocking closure on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking IO task failed: {e}")))?
}

/// An error and its sources, joined by ": ", for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detect_honours_a_forced_std_choice() {
        let dir = tempfile::tempdir().unwrap();
        let engine = IoEngine::detect(dir.path(), IoEngineChoice::Std)
            .await
            .unwrap();
        assert_eq!(engine.name(), "std");
    }

    #[tokio::test]
    async fn detect_auto_always_yields_a_working_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = IoEngine::detect(dir.path(), IoEngineChoice::Auto)
            .await
            .unwrap();
        // The probe file is gone whichever engine won.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        engine.self_test(dir.path()).await.unwrap();
    }

    #[tokio::test]
    async fn detect_uring_fails_on_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        if uring::UringEngine::new().is_err() {
            return; // no io_uring here: RingSetup, also an error
        }
        assert!(matches!(
            IoEngine::detect(&missing, IoEngineChoice::Uring).await,
            Err(IoEngineError::SelfTest { .. })
        ));
    }
}

/// The conformance suite: the same tests for every backend.
#[cfg(test)]
mod conformance {
    use super::*;
    use std::io::ErrorKind;

    fn open_rw(dir: &Path, name: &str) -> SharedFile {
        Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(name))
                .unwrap(),
        )
    }

    fn pattern(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    pub async fn write_then_read_back(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(dir.path(), "a");
        let data = pattern(10_000, 1);
        engine.write_all_at(&file, 0, data.clone()).await.unwrap();
        engine.fdatasync(&file).await.unwrap();
        assert_eq!(engine.read_exact_at(&file, 0, 10_000).await.unwrap(), data);
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), data);
    }

    pub async fn ranges_read_what_was_written_there(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(dir.path(), "a");
        engine
            .write_all_at(&file, 0, pattern(4096, 2))
            .await
            .unwrap();
        engine
            .write_all_at(&file, 1_000_000, pattern(5000, 3))
            .await
            .unwrap();
        let mid = engine.read_exact_at(&file, 1_000_100, 100).await.unwrap();
        assert_eq!(mid, pattern(5000, 3)[100..200]);
        // The hole in between reads as zeros.
        let hole = engine.read_exact_at(&file, 10_000, 64).await.unwrap();
        assert_eq!(hole, vec![0u8; 64]);
        assert!(engine.read_exact_at(&file, 0, 0).await.unwrap().is_empty());
        engine.write_all_at(&file, 7, Bytes::new()).await.unwrap();
    }

    pub async fn reading_past_the_end_is_unexpected_eof(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(dir.path(), "a");
        engine
            .write_all_at(&file, 0, pattern(100, 4))
            .await
            .unwrap();
        let err = engine.read_exact_at(&file, 50, 100).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    pub async fn large_buffers_round_trip(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(dir.path(), "big");
        let data = pattern(8 * 1024 * 1024 + 3, 5);
        engine.write_all_at(&file, 512, data.clone()).await.unwrap();
        engine.fdatasync(&file).await.unwrap();
        let back = engine.read_exact_at(&file, 512, data.len()).await.unwrap();
        assert!(back == data, "8 MiB read back differs");
    }

    pub async fn many_concurrent_ops_all_complete(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(dir.path(), "many");
        const N: usize = 300; // more than the ring's in-flight limit
        const LEN: usize = 3000;
        let writes = (0..N).map(|i| {
            let (engine, file) = (engine.clone(), file.clone());
            tokio::spawn(async move {
                engine
                    .write_all_at(&file, (i * LEN) as u64, pattern(LEN, i as u8))
                    .await
            })
        });
        for w in futures::future::join_all(writes).await {
            w.unwrap().unwrap();
        }
        engine.fdatasync(&file).await.unwrap();
        let reads = (0..N).map(|i| {
            let (engine, file) = (engine.clone(), file.clone());
            tokio::spawn(async move { engine.read_exact_at(&file, (i * LEN) as u64, LEN).await })
        });
        for (i, r) in futures::future::join_all(reads)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.unwrap().unwrap(), pattern(LEN, i as u8), "slot {i}");
        }
    }

    pub async fn errors_are_reported_not_hidden(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ro"), b"x").unwrap();
        let read_only = Arc::new(std::fs::File::open(dir.path().join("ro")).unwrap());
        let err = engine
            .write_all_at(&read_only, 0, pattern(10, 6))
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    pub async fn directories_can_be_fsynced(engine: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let handle = Arc::new(std::fs::File::open(dir.path()).unwrap());
        engine.fsync(&handle).await.unwrap();
    }

    macro_rules! suite {
        ($backend:ident, $make:expr) => {
            mod $backend {
                use super::*;
                suite!(@tests $make;
                    write_then_read_back,
                    ranges_read_what_was_written_there,
                    reading_past_the_end_is_unexpected_eof,
                    large_buffers_round_trip,
                    many_concurrent_ops_all_complete,
                    errors_are_reported_not_hidden,
                    directories_can_be_fsynced,
                );
            }
        };
        (@tests $make:expr; $($name:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let make: fn() -> Option<IoEngine> = $make;
                    match make() {
                        Some(engine) => super::$name(engine).await,
                        None => eprintln!("skipped: io_uring is not available on this machine"),
                    }
                }
            )*
        };
    }

    suite!(std_fs_backend, || Some(IoEngine::Std(
        crate::io_engine::std_fs::StdFsEngine
    )));
    suite!(uring_backend, || crate::io_engine::uring::UringEngine::new(
    )
    .ok()
    .map(IoEngine::Uring));
}
