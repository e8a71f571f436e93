//! Whether the thread behind a request has a signal waiting for it. fuser 0.18 answers the
//! kernel's FUSE_INTERRUPT with ENOSYS (after which the kernel sends no more of them), so a
//! blocked lock request never hears that its caller was signalled (`flock -w 1`'s alarm,
//! a shell's Ctrl-C handled by the program). While a thread waits for a FUSE reply the
//! signal stays pending in the kernel, visible in `/proc/TID/status`; a lock wait checks
//! it between attempts and answers `EINTR`, as a local lock wait would.

/// Whether thread `tid` has a signal pending that it does not block. `false` when its
/// status cannot be read (the thread is gone: the kernel has dropped the request anyway).
pub fn signal_pending(tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .map(|status| unblocked_pending(&status))
        .unwrap_or(false)
}

/// From a `/proc/TID/status` text: a signal pending for the thread (`SigPnd`) or its
/// process (`ShdPnd`) and not blocked (`SigBlk`). Signals a process ignores are never
/// queued, so they do not count.
fn unblocked_pending(status: &str) -> bool {
    let mask = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITING: &str = "Name:\tflock\nSigQ:\t1/94000\nSigPnd:\t0000000000000000\n\
        ShdPnd:\t0000000000002000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";

    #[test]
    fn a_pending_unblocked_signal_counts_and_a_blocked_one_does_not() {
        // SIGALRM (14: bit 13) pending for the process.
        assert!(unblocked_pending(WAITING));
        let blocked = WAITING.replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000002000");
        assert!(!unblocked_pending(&blocked));
        let thread = "SigPnd:\t0000000000000002\nShdPnd:\t0000000000000000\nSigBlk:\t0\n";
        assert!(unblocked_pending(thread), "SIGINT for the thread");
        assert!(!unblocked_pending("SigPnd:\t0\nShdPnd:\t0\n"));
        assert!(!unblocked_pending("garbage"));
    }

    #[test]
    fn this_thread_has_nothing_pending_and_a_missing_thread_is_not_interrupted() {
        assert!(!signal_pending(std::process::id()));
        assert!(!signal_pending(u32::MAX));
    }
}
