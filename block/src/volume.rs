//! An attached volume: the [`BlockDevice`] an NBD server exports, over the volume's file
//! in the namespace.
//!
//! Attaching opens the file and takes an exclusive whole-file lock under the server's
//! session: a second server is refused while that lock lives, and it lives as long as
//! the session's lease. If the server's host dies, the lease expires, the lock goes with
//! it, and another server may attach. If the old server comes back (a frozen process,
//! a healed partition), its session is fenced: the backend refuses every write and
//! commit from it ([`DeviceError::Fenced`]), so it can never overwrite what the new
//! server wrote.
//!
//! Writes are buffered by the backend exactly as a mount buffers a file's writes, and a
//! FLUSH (or a FUA write) returns once they are stored durably and committed, the rule
//! of a mount's `fsync` (DESIGN.md invariant 1). Zeroing a range punches a hole in the
//! file: it frees the storage the range held.
//!
//! Small writes fragment the file's extents; [`Volume::compact_forever`] rewrites the
//! regions they fragmented most ([`crate::fragmentation`]) as whole runs, in the
//! background, while holding client writes off that volume for the rewrite.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cairn_common::fs::{Ino, MAX_FILE_SIZE};
use cairn_fuse_mount::backend::{AccessMode, FileLock, FsBackend, FsError, HandleId, LockKind};

use crate::catalog::{Catalog, CatalogError, SERVER_LOCK_OWNER};
use crate::device::{check_range, BlockDevice, DeviceError};
use crate::fragmentation::{Fragmentation, REGION};

/// The most bytes of zeros written at once for a zeroing that must allocate.
const ZERO_PIECE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("volume {0:?} is attached to another server; it is released when that server stops, or when its session lease expires if its host is gone")]
    Busy(String),
    #[error("volume {name:?}: {source}")]
    Fs {
        name: String,
        #[source]
        source: FsError,
    },
}

/// A volume (or a snapshot, read-only) this process serves.
pub struct Volume {
    fs: Arc<dyn FsBackend>,
    name: String,
    ino: Ino,
    handle: HandleId,
    size: u64,
    /// A snapshot: nothing is written, and no claim is taken (a snapshot never changes,
    /// so any number of servers may export it).
    read_only: bool,
    fragmentation: Mutex<Fragmentation>,
    /// Client writes hold it shared; a region's rewrite exclusively, so that no write
    /// lands between the rewrite's read and its write.
    rewrite_gate: tokio::sync::RwLock<()>,
}

impl Volume {
    /// Opens volume `name` and claims it for this backend's session.
    pub async fn attach(fs: Arc<dyn FsBackend>, name: &str) -> Result<Volume, AttachError> {
        let ino = Catalog::new(fs.clone()).find(name).await?;
        let fs_error = |source| AttachError::Fs {
            name: name.to_owned(),
            source,
        };
        let handle = fs
            .open(ino, AccessMode::ReadWrite)
            .await
            .map_err(fs_error)?;
        let claim = FileLock {
            start: 0,
            end: MAX_FILE_SIZE,
            kind: LockKind::Write,
            pid: std::process::id(),
        };
        match fs.setlk(ino, SERVER_LOCK_OWNER, claim).await {
            Ok(()) => {}
            Err(e) => {
                let _ = fs.release(ino, handle).await;
                return Err(match e {
                    FsError::WouldBlock => AttachError::Busy(name.to_owned()),
                    other => fs_error(other),
                });
            }
        }
        // The size as of the claim: nobody may resize an attached volume.
        let size = match fs.getattr(ino).await {
            Ok(attr) => attr.size,
            Err(e) => {
                let _ = fs.unlock_all(ino, SERVER_LOCK_OWNER).await;
                let _ = fs.release(ino, handle).await;
                return Err(fs_error(e));
            }
        };
        Ok(Volume::opened(
            fs,
            name.to_owned(),
            (ino, handle),
            size,
            false,
        ))
    }

    /// Opens snapshot `volume@snapshot` for reading (it stays readable while open here,
    /// even if it is removed meanwhile).
    pub async fn open_snapshot(
        fs: Arc<dyn FsBackend>,
        volume: &str,
        snapshot: &str,
    ) -> Result<Volume, AttachError> {
        let name = format!("{volume}@{snapshot}");
        let ino = Catalog::new(fs.clone())
            .find_snapshot(volume, snapshot)
            .await?;
        let fs_error = |source| AttachError::Fs {
            name: name.clone(),
            source,
        };
        let handle = fs.open(ino, AccessMode::Read).await.map_err(fs_error)?;
        let size = match fs.getattr(ino).await {
            Ok(attr) => attr.size,
            Err(e) => {
                let _ = fs.release(ino, handle).await;
                return Err(fs_error(e));
            }
        };
        Ok(Volume::opened(fs, name, (ino, handle), size, true))
    }

    fn opened(
        fs: Arc<dyn FsBackend>,
        name: String,
        (ino, handle): (Ino, HandleId),
        size: u64,
        read_only: bool,
    ) -> Volume {
        Volume {
            fs,
            name,
            ino,
            handle,
            size,
            read_only,
            fragmentation: Mutex::default(),
            rewrite_gate: tokio::sync::RwLock::new(()),
        }
    }

    fn fragmentation(&self) -> MutexGuard<'_, Fragmentation> {
        self.fragmentation.lock().expect("fragmentation poisoned")
    }

    /// Rewrites the most fragmented region, if one passed the threshold, as one run;
    /// false if none did. Client writes wait meanwhile (one region: a read and a
    /// buffered write of at most [`REGION`] bytes).
    pub async fn compact_one(&self) -> Result<bool, DeviceError> {
        if self.read_only {
            return Ok(false);
        }
        let worst = self.fragmentation().worst();
        let Some(offset) = worst else {
            return Ok(false);
        };
        let _exclusive = self.rewrite_gate.write().await;
        let len = REGION.min(self.size - offset) as u32;
        let data = self.read(offset, len).await?;
        self.fs
            .write(self.ino, self.handle, Some(offset), &data)
            .await
            .map_err(device_error)?;
        self.fragmentation().rewritten(offset);
        Ok(true)
    }

    /// Compacts in the background until the volume is dropped or fenced: a region as
    /// soon as one passes the threshold, a pause after each so clients keep most of the
    /// time. Once nothing is left to rewrite, the rewrites are flushed (with whatever
    /// clients buffered: a device may make writes durable earlier than asked), so the
    /// metadata's extent list shrinks even when no client flushes.
    pub async fn compact_forever(volume: Weak<Volume>) {
        let mut unflushed = false;
        loop {
            let Some(v) = volume.upgrade() else { return };
            let pause = match v.compact_one().await {
                Ok(true) => {
                    unflushed = true;
                    Duration::from_millis(20)
                }
                Ok(false) if unflushed => match v.flush().await {
                    Ok(()) => {
                        unflushed = false;
                        Duration::from_millis(500)
                    }
                    Err(DeviceError::Fenced) => return,
                    Err(e) => {
                        tracing::warn!(volume = %v.name, error = %e, "flush after compaction failed; retrying");
                        Duration::from_secs(1)
                    }
                },
                Ok(false) => Duration::from_millis(500),
                Err(DeviceError::Fenced) => return,
                Err(e) => {
                    tracing::warn!(volume = %v.name, error = %e, "compaction failed; retrying");
                    Duration::from_secs(1)
                }
            };
            drop(v);
            tokio::time::sleep(pause).await;
        }
    }

    /// Flushes what is buffered, releases the claim and closes the file.
    pub async fn detach(self) -> Result<(), DeviceError> {
        if self.read_only {
            return self
                .fs
                .release(self.ino, self.handle)
                .await
                .map_err(device_error);
        }
        let flushed = self.flush().await;
        let _ = self.fs.unlock_all(self.ino, SERVER_LOCK_OWNER).await;
        let released = self.fs.release(self.ino, self.handle).await;
        flushed?;
        released.map_err(device_error)
    }
}

fn device_error(e: FsError) -> DeviceError {
    match e {
        FsError::Stale => DeviceError::Fenced,
        FsError::NoSpace | FsError::FileTooBig => DeviceError::NoSpace,
        other => DeviceError::Io(other.to_string()),
    }
}

#[async_trait]
impl BlockDevice for Volume {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn fenced(&self) -> bool {
        self.fs.is_fenced()
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, DeviceError> {
        check_range(offset, u64::from(len), self.size)?;
        let mut data = self
            .fs
            .read(self.ino, self.handle, offset, len)
            .await
            .map_err(device_error)?;
        // Short only if the file were shorter than the volume (it never is while
        // attached); the missing bytes would be zeros.
        data.resize(len as usize, 0);
        Ok(data)
    }

    async fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        check_range(offset, data.len() as u64, self.size)?;
        let gate = self.rewrite_gate.read().await;
        let written = self
            .fs
            .write(self.ino, self.handle, Some(offset), data)
            .await
            .map_err(device_error)?;
        self.fragmentation().record(offset, data.len() as u64);
        drop(gate);
        if written as usize != data.len() {
            return Err(DeviceError::Io(format!(
                "short write: {written} of {} bytes",
                data.len()
            )));
        }
        if fua {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), DeviceError> {
        if self.read_only {
            return Ok(());
        }
        self.fs
            .fsync(self.ino, Some(self.handle), true)
            .await
            .map_err(device_error)
    }

    async fn zero(
        &self,
        offset: u64,
        len: u64,
        allocate: bool,
        fua: bool,
    ) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        check_range(offset, len, self.size)?;
        if allocate {
            let zeros = vec![0u8; ZERO_PIECE.min(len) as usize];
            let mut at = offset;
            while at < offset + len {
                let n = ZERO_PIECE.min(offset + len - at) as usize;
                self.write(at, &zeros[..n], false).await?;
                at += n as u64;
            }
        } else if len > 0 {
            let _gate = self.rewrite_gate.read().await;
            self.fs
                .punch_hole(self.ino, self.handle, offset, len)
                .await
                .map_err(device_error)?;
            self.fragmentation().record(offset, len);
        }
        if fua {
            self.flush().await?;
        }
        Ok(())
    }
}
