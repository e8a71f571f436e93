//! Mutual TLS for every gRPC connection, and who may call what.
//!
//! A cluster has one CA (`cairn cert init`); every component holds a certificate from it
//! whose subject carries a [`Role`] (organisational unit `cairn-meta`, `cairn-node`,
//! `cairn-gateway` or `cairn-client`) and a name (common name). Servers (metadata replicas, storage nodes)
//! also carry the DNS name [`SERVER_NAME`], which is what every client verifies, so a
//! client certificate can never pose as a server. A TLS directory holds `ca.pem` and, per
//! component, `NAME.pem` and `NAME.key` ([`TlsFiles`]).
//!
//! Servers accept connections through [`incoming`], which runs the handshake itself (so a
//! refused peer is logged once, clearly, at warn level) and attaches the peer's verified
//! identity to every request ([`PeerInfo`]); each RPC handler calls [`authorize`] with the
//! roles it admits. Plaintext ([`Transport::Insecure`]) exists only for development and is
//! chosen explicitly (`--insecure`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The DNS name in every server certificate; clients verify servers against it.
pub const SERVER_NAME: &str = "cairn-cluster";
/// Concurrent calls one connection may have open on a server (HTTP/2 setting).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// How often a client pings each connection, and how long it waits for the answer
/// (generous: a busy server on a loaded host must not lose healthy connections).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same refusal (peer address and reason) is logged at most once per this period.
const LOG_ONCE_PER: Duration = Duration::from_secs(600);

/// What a certificate allows its holder to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    /// A metadata replica: Raft, and calls to storage nodes (repair, GC).
    Meta,
    /// A storage node: registration, heartbeats, shard-loss reports.
    Node,
    /// A user or application: buckets, objects, files, administration.
    Client,
    /// A storage node's object API acting for its callers: like a client, and may name
    /// the user it acts for (`x-cairn-user`), which grants are then checked against.
    Gateway,
}

impl Role {
    /// The organisational unit that marks the role in a certificate's subject.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Meta => "cairn-meta",
            Role::Node => "cairn-node",
            Role::Client => "cairn-client",
            Role::Gateway => "cairn-gateway",
        }
    }

    fn from_unit(unit: &str) -> Option<Role> {
        [Role::Meta, Role::Node, Role::Client, Role::Gateway]
            .into_iter()
            .find(|r| r.unit() == unit)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Meta => "meta",
            Role::Node => "node",
            Role::Client => "client",
            Role::Gateway => "gateway",
        })
    }
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path:?} holds no usable {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("TLS set-up: {0}")]
    Config(String),
}

/// Where one component's certificate, key and the cluster CA live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub dir: PathBuf,
    pub name: String,
}

impl TlsFiles {
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>) -> TlsFiles {
        TlsFiles {
            dir: dir.into(),
            name: name.into(),
        }
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.name))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loaded PEM material of one component.
#[derive(Clone)]
pub struct TlsMaterial {
    pub files: TlsFiles,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// How a component talks gRPC: mutual TLS, or (development only) plaintext.
#[derive(Clone)]
pub enum Transport {
    Insecure,
    Mutual(Arc<TlsMaterial>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Insecure => f.write_str("Insecure"),
            Transport::Mutual(m) => write!(f, "Mutual({:?})", m.files),
        }
    }
}

impl Transport {
    /// Reads the CA, certificate and key named by `files`.
    pub fn load(files: &TlsFiles) -> Result<Transport, TlsError> {
        Ok(Transport::Mutual(Arc::new(TlsMaterial {
            ca: read(&files.ca())?,
            cert: read(&files.cert())?,
            key: read(&files.key())?,
            files: files.clone(),
        })))
    }

    /// `files` when given, else plaintext if `insecure`, else an error naming both flags.
    pub fn choose(files: Option<TlsFiles>, insecure: bool) -> Result<Transport, TlsError> {
        match (files, insecure) {
            (Some(files), false) => Transport::load(&files),
            (None, true) => Ok(Transport::Insecure),
            (Some(_), true) => Err(TlsError::Config(
                "both a TLS directory and --insecure are set; choose one".into(),
            )),
            (None, false) => Err(TlsError::Config(
                "no TLS directory configured: pass --tls-dir (certificates from `cairn cert`) \
                 or, for development only, --insecure"
                    .into(),
            )),
        }
    }

    pub fn is_insecure(&self) -> bool {
        matches!(self, Transport::Insecure)
    }

    /// A lazily connecting endpoint for `addr` (`host:port`, with or without a scheme).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, TlsError> {
        let host = addr
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let bad = |e: &dyn std::fmt::Display| TlsError::Config(format!("address {addr:?}: {e}"));
        let endpoint = match self {
            Transport::Insecure => {
                Endpoint::from_shared(format!("http://{host}")).map_err(|e| bad(&e))
            }
            Transport::Mutual(m) => {
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&m.ca))
                    .identity(Identity::from_pem(&m.cert, &m.key))
                    .domain_name(SERVER_NAME);
                Endpoint::from_shared(format!("https://{host}"))
                    .map_err(|e| bad(&e))?
                    .tls_config(tls)
                    .map_err(|e| bad(&e))
            }
        }?;
        // HTTP/2 pings find a connection that stopped answering (a frozen peer, packets
        // dropped by a partition, then a TCP retransmission backoff of many seconds) and
        // close it, so the next call reconnects instead of waiting behind it.
        Ok(endpoint
            .local_address(crate::source_addr::get())
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true))
    }

    /// The server side: `None` for plaintext (logged as a warning, once, at start-up).
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        let Transport::Mutual(m) = self else {
            tracing::warn!(
                "--insecure: gRPC in plaintext, peers not authenticated; for development only"
            );
            return Ok(None);
        };
        let path = &m.files;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&m.cert)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::Pem {
                path: path.cert(),
                what: "certificate",
            })?;
        let key = PrivateKeyDer::from_pem_slice(&m.key).map_err(|_| TlsError::Pem {
            path: path.key(),
            what: "private key",
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&m.ca) {
            let ca = ca.map_err(|_| TlsError::Pem {
                path: path.ca(),
                what: "CA certificate",
            })?;
            roots
                .add(ca)
                .map_err(|e| TlsError::Config(format!("CA {:?}: {e}", path.ca())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(format!("certificate {:?}: {e}", path.cert())))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

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
    fn first_time(&self, key: String) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen.len() > 4096 {
            seen.retain(|_, at| now.duration_since(*at) < LOG_ONCE_PER);
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

/// A server's TLS acceptor (`None`: plaintext), replaced in place when the certificates
/// are reloaded: connections accepted afterwards use the new ones, open ones keep theirs.
#[derive(Clone)]
pub struct ServerTls(Arc<std::sync::RwLock<Option<TlsAcceptor>>>);

impl ServerTls {
    pub fn new(acceptor: Option<TlsAcceptor>) -> ServerTls {
        ServerTls(Arc::new(std::sync::RwLock::new(acceptor)))
    }

    fn current(&self) -> Option<TlsAcceptor> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// On every SIGHUP, reloads the certificate, key and CA bundle with `load` (a failed
    /// reload is logged and the old ones stay in use). Ends with the runtime.
    pub fn reload_on_sighup(
        &self,
        component: &'static str,
        load: impl Fn() -> Result<Option<TlsAcceptor>, TlsError> + Send + 'static,
    ) {
        let tls = self.clone();
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(component, error = %e, "no SIGHUP handler: certificates reload only on restart");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match load() {
                    Ok(acceptor) => {
                        *tls.0.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
                        tracing::info!(
                            component,
                            "SIGHUP: reloaded the TLS certificate, key and CA bundle"
                        );
                    }
                    Err(e) => tracing::warn!(
                        component,
                        error = %e,
                        "SIGHUP: cannot reload the TLS files; still using the previous ones"
                    ),
                }
            }
        });
    }
}

/// Accepted connections of `listener` as a stream for tonic's `serve_with_incoming`:
/// TCP_NODELAY set, and with `tls` the handshake done (in its own task, bounded by a
/// timeout). A failed handshake closes the connection and is logged once per peer and
/// reason. The accept loop ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: ServerTls,
    component: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
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
            let Some(acceptor) = tls.current() else {
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

/// The metadata header naming the user a gateway (or a forwarding replica) acts for.
pub const USER_HEADER: &str = "x-cairn-user";

/// Whose grants a call is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Plaintext (`--insecure`), or a metadata replica acting for itself.
    Unrestricted,
    User(String),
}

/// The user behind a call: a client's certificate name; for a gateway or a replica
/// forwarding a call, the user named in [`USER_HEADER`].
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    let Some(PeerInfo {
        identity: Some((role, name)),
        ..
    }) = request.extensions().get::<PeerInfo>()
    else {
        return Caller::Unrestricted;
    };
    let named = || {
        request
            .metadata()
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match role {
        Role::Meta => named().map_or(Caller::Unrestricted, Caller::User),
        Role::Gateway => Caller::User(named().unwrap_or_else(|| name.clone())),
        Role::Client | Role::Node => Caller::User(name.clone()),
    }
}

/// Who is calling, for per-client limits: the certificate's name, else (plaintext) the
/// peer's IP address.
pub fn caller_key<T>(request: &tonic::Request<T>) -> String {
    match request.extensions().get::<PeerInfo>() {
        Some(PeerInfo {
            identity: Some((_, name)),
            ..
        }) => name.clone(),
        Some(PeerInfo {
            remote: Some(addr), ..
        }) => addr.ip().to_string(),
        _ => "unknown".into(),
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

/// Checks that the caller of `method` holds one of `allowed` roles. On a plaintext
/// connection (a server started with `--insecure`) every call is allowed.
#[allow(clippy::result_large_err)]
pub fn authorize<T>(
    request: &tonic::Request<T>,
    method: &str,
    allowed: &[Role],
) -> Result<Option<(Role, String)>, tonic::Status> {
    let Some(peer) = request.extensions().get::<PeerInfo>() else {
        return Ok(None); // served without `incoming` (in-process tests): plaintext
    };
    match &peer.identity {
        Some((role, name)) if allowed.contains(role) => Ok(Some((*role, name.clone()))),
        Some((role, name)) => {
            static DENIALS: std::sync::LazyLock<RefusalLog> =
                std::sync::LazyLock::new(RefusalLog::default);
            if DENIALS.first_time(format!("{name}|{role}|{method}")) {
                tracing::warn!(%name, %role, method, "refused a call: role not allowed");
            }
            let roles: Vec<String> = allowed.iter().map(Role::to_string).collect();
            Err(tonic::Status::permission_denied(format!(
                "certificate {name:?} has role {role}; {method} needs role {}",
                roles.join(" or ")
            )))
        }
        None if !peer.tls => Ok(None),
        None => Err(tonic::Status::permission_denied(format!(
            "{method}: the peer certificate carries no Cairn role (issue it with `cairn cert issue`)"
        ))),
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
