//! The std-fs IO backend: `pread`/`pwrite`/`fdatasync` on tokio's blocking pool. Always
//! works; the fallback when io_uring is missing or fails its self-test.

use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::{blocking, SharedFile};

/// Stateless: every call is one blocking task.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFsEngine;

impl StdFsEngine {
    pub async fn write_all_at(&self, file: &SharedFile, offset: u64, buf: Bytes) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let file = file.clone();
        blocking(move || file.write_all_at(&buf, offset)).await
    }

    pub async fn read_exact_at(
        &self,
        file: &SharedFile,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let file = file.clone();
        blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf)
        })
        .await
    }

    /// `fdatasync` when `data_only`, else `fsync`.
    pub async fn sync(&self, file: &SharedFile, data_only: bool) -> io::Result<()> {
        let file = file.clone();
        blocking(move || {
            if data_only {
                file.sync_data()
            } else {
                file.sync_all()
            }
        })
        .await
    }
}
