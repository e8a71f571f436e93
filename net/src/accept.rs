//! The server side of every connection: the TLS handshake (refusals logged once per peer
//! and reason) and the verified identity of the peer, attached to each request.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;

use crate::{Role, Transport};

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same refusal (peer address and reason) is logged at most once per this period.
const LOG_ONCE_PER: Duration = Duration::from_secs(600);

/// The verified identity of a connection's peer (none on a plaintext connection).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS (then the certificate chain was verified).
    pub tls: bool,
    pub identity: Option<(Role, String)>,
}

/// The role and name in a verified peer certificate: subject OU and CN.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<(Role, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = cert.subject();
    let role = subject
        .iter_organizational_unit()
        .filter_map(|u| u.as_str().ok())
        .find_map(Role::from_unit)?;
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some((role, name))
}

/// An accepted connection, plaintext or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Conn::Plain(s) => PeerInfo {
                remote: s.peer_addr().ok(),
                tls: false,
                identity: None,
            },
            Conn::Tls(s) => {
                let (tcp, session) = s.get_ref();
                PeerInfo {
                    remote: tcp.peer_addr().ok(),
                    tls: true,
                    identity: session
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(identity_of),
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Logs each distinct refusal at most once per [`LOG_ONCE_PER`].
#[derive(Default)]
pub struct RefusalLog {
    seen: Mutex<HashMap<String, Instant>>,
}

impl RefusalLog {
    /// True when `key` was not logged recently (and records it now).
    pub fn first_time(&self, key: String) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen.len() > 4096 {
            seen.retain(|_, at| now.duration_since(*at) < LOG_ONCE_PER);
            if seen.len() > 4096 && !seen.contains_key(&key) {
                // A flood of distinct keys: stay bounded, log nothing new for a while.
                return false;
            }
        }
        match seen.get(&key) {
            Some(at) if now.duration_since(*at) < LOG_ONCE_PER => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

/// Accepted connections of `listener` as a stream for tonic's `serve_with_incoming`:
/// TCP_NODELAY set, and with TLS the handshake done with the transport's current
/// certificates (in its own task, bounded by a
/// timeout). A failed handshake closes the connection and is logged once per peer and
/// reason. The accept loop ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    transport: Transport,
    component: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    if transport.is_insecure() {
        tracing::warn!(
            component,
            "--insecure: gRPC in plaintext, peers not authenticated; for development only"
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let refusals = Arc::new(RefusalLog::default());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause instead of spinning.
                    tracing::warn!(component, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(acceptor) = transport.acceptor() else {
                if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            };
            let (tx, refusals) = (tx.clone(), refusals.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                    }
                    Ok(Err(e)) => refused(&refusals, component, peer, &e.to_string()),
                    Err(_) => refused(&refusals, component, peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn refused(log: &RefusalLog, component: &str, peer: SocketAddr, reason: &str) {
    if log.first_time(format!("{}|{}", peer.ip(), reason_class(reason))) {
        tracing::warn!(
            component,
            peer = %peer,
            reason,
            "refused a connection: TLS handshake failed (a certificate from this cluster's CA \
             is required; repeats from this address for this reason are not logged for 10 min)"
        );
    }
}

/// The stable part of a handshake error's text: rustls appends details that change with
/// every attempt (an expired certificate's message carries the verification time), so
/// only the first two `: `-separated parts identify the reason.
fn reason_class(reason: &str) -> &str {
    match reason.match_indices(": ").nth(1) {
        Some((at, _)) => &reason[..at],
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_are_grouped_without_their_changing_details() {
        assert_eq!(
            reason_class("invalid peer certificate: certificate expired: verification time 17"),
            "invalid peer certificate: certificate expired"
        );
        assert_eq!(
            reason_class("invalid peer certificate: UnknownIssuer"),
            "invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            reason_class("peer sent no certificates"),
            "peer sent no certificates"
        );
        let log = RefusalLog::default();
        assert!(log.first_time("a".into()));
        assert!(!log.first_time("a".into()));
        assert!(log.first_time("b".into()));
    }
}
