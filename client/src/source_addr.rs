//! The local address this process's outgoing gRPC connections are made from. A daemon sets
//! it to the IP it listens on (when that is a specific address), so its peers see it under
//! that address: on a multi-homed host cluster traffic leaves through the cluster network,
//! and per-address firewall rules (the fault-injection tests' partitions between processes
//! on 127.0.0.x) apply to it. Unset, the kernel chooses, as usual.

use std::net::IpAddr;
use std::sync::OnceLock;

static SOURCE: OnceLock<IpAddr> = OnceLock::new();

/// Makes outgoing connections start from `ip` (once per process; later calls and the
/// unspecified address `0.0.0.0` / `::` are ignored).
pub fn set(ip: IpAddr) {
    if !ip.is_unspecified() {
        let _ = SOURCE.set(ip);
    }
}

/// The address set by [`set`], if any.
pub fn get() -> Option<IpAddr> {
    SOURCE.get().copied()
}
