//! Readiness reports to systemd (`Type=notify` units, `deploy/systemd/`). A daemon
//! started by systemd finds its notification socket in `NOTIFY_SOCKET` (a path, or an
//! abstract name written `@name`) and sends `READY=1` there once it serves, `STOPPING=1`
//! when it starts shutting down. Started any other way (no `NOTIFY_SOCKET`), nothing is
//! sent. A failure to report is logged, never fatal: the daemon serves all the same, and
//! systemd's start timeout tells the operator.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Reports that the daemon serves (`READY=1`).
pub fn notify_ready() {
    notify("READY=1\n");
}

/// Reports that the daemon is shutting down (`STOPPING=1`).
pub fn notify_stopping() {
    notify("STOPPING=1\n");
}

fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket, state) {
        tracing::warn!(socket = ?socket, state = state.trim_end(), error = %e, "could not report to systemd");
    }
}

/// Sends `state` as one datagram to the notification socket `socket`.
fn send(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sender.send_to(state.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::send;
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    fn received(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_report_reaches_a_socket_given_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\n").unwrap();
        assert_eq!(received(&listener), "READY=1\n");
    }

    #[test]
    fn a_report_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("cairn-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1\n").unwrap();
        assert_eq!(received(&listener), "STOPPING=1\n");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(send(dir.path().join("absent").as_os_str(), "READY=1\n").is_err());
    }
}
