//! This process's resident memory (VmRSS of `/proc/self/status`), for `ReplicaStatus`
//! and the `cairn_meta_resident_memory_bytes` gauge: how much memory a replica holds
//! as its namespace grows. Linux only; elsewhere the figure is unknown (`None`).

/// Resident memory of this process, bytes; `None` where `/proc` does not say.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in bytes (the kernel prints kB,
/// meaning KiB).
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tcairn-meta\nVmPeak:\t  999 kB\nVmRSS:\t   45120 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(45120 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots\n"), None);
    }

    #[test]
    fn this_process_has_resident_memory_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().expect("VmRSS on Linux");
            assert!(rss > 1 << 20, "{rss} bytes");
        }
    }
}
