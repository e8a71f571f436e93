//! What a block export serves: [`BlockDevice`], a fixed-size array of bytes with reads,
//! writes, flushes and holes, and its one error type. The NBD server speaks to this trait
//! only; [`crate::volume::Volume`] is the implementation over Cairn's namespace.

use async_trait::async_trait;

/// A block device's failures, each answered to the client with one NBD error.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The range does not lie within the device.
    #[error("range {offset}+{len} is outside the device ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// The cluster is out of space.
    #[error("no space left in the cluster")]
    NoSpace,
    /// This server lost its claim on the volume (its session lease expired): another
    /// server may own it now, so nothing more is written from here.
    #[error("this server's session is fenced: another server may own the volume now")]
    Fenced,
    /// A write to a read-only device (a snapshot).
    #[error("the device is read-only")]
    ReadOnly,
    /// Anything else (the cluster unavailable, a read that could not be verified).
    #[error("{0}")]
    Io(String),
}

/// A fixed-size device. Writes become durable, and visible to a server that takes the
/// device over, at the next [`BlockDevice::flush`] (or at once with `fua`); a read sees
/// every write made before it through this device.
#[async_trait]
pub trait BlockDevice: Send + Sync + 'static {
    /// The device's size in bytes.
    fn size(&self) -> u64;
    /// Whether every write is refused ([`DeviceError::ReadOnly`]).
    fn read_only(&self) -> bool;
    /// Whether the device lost its claim: every request fails ([`DeviceError::Fenced`]).
    fn fenced(&self) -> bool;
    /// Exactly `len` bytes at `offset` (within the device); holes read as zeros.
    async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, DeviceError>;
    /// Writes `data` at `offset` (within the device); with `fua`, durable on return.
    async fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), DeviceError>;
    /// Every write acknowledged so far is durable when this returns.
    async fn flush(&self) -> Result<(), DeviceError>;
    /// The range reads as zeros and, where it can, holds no storage; with `fua`, durable
    /// on return. `allocate` (`NBD_CMD_FLAG_NO_HOLE`) asks for zeros written instead of
    /// a hole.
    async fn zero(
        &self,
        offset: u64,
        len: u64,
        allocate: bool,
        fua: bool,
    ) -> Result<(), DeviceError>;
}

/// Checks that `offset..offset + len` lies within a device of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), DeviceError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::OutOfRange { offset, len, size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_must_end_within_the_device() {
        assert!(check_range(0, 10, 10).is_ok());
        assert!(check_range(10, 0, 10).is_ok());
        assert!(check_range(5, 6, 10).is_err());
        assert!(check_range(u64::MAX, 2, 10).is_err());
    }
}
