//! A component's identity on the wire: its certificate, key and the CA bundle it trusts,
//! loaded once into a client and a server TLS configuration and replaced in place by
//! [`Transport::reload`]. Every connection made or accepted afterwards uses the new files
//! (a reconnect after a rotation included: channels connect through
//! [`Transport::channel`]'s connector, which reads the current configuration at each
//! connect); connections already open keep the certificates they were made with.
//!
//! A transport also names the local address its connections start from
//! ([`Transport::from_source`]): a daemon uses the IP it listens on, so its peers see it under
//! that address (on a multi-homed host cluster traffic leaves through the cluster network,
//! and per-address firewall rules, such as the fault-injection tests' partitions between
//! processes on 127.0.0.x, apply to it). Unset, the kernel chooses, as usual.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{read, TlsError, TlsFiles, SERVER_NAME};

/// How often a client pings each connection, and how long it waits for the answer
/// (generous: a busy server on a loaded host must not lose healthy connections).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a component talks gRPC: mutual TLS, or (development only) plaintext, and from
/// which local address.
#[derive(Clone)]
pub struct Transport {
    security: Security,
    source: Option<IpAddr>,
}

#[derive(Clone)]
enum Security {
    Insecure,
    Mutual(Arc<Reloadable>),
}

/// The TLS configurations built from one component's files, swapped whole on reload.
pub struct Reloadable {
    files: TlsFiles,
    current: RwLock<Arc<Configs>>,
}

struct Configs {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.security {
            Security::Insecure => f.write_str("Insecure")?,
            Security::Mutual(m) => write!(f, "Mutual({:?})", m.files)?,
        }
        match self.source {
            Some(ip) => write!(f, " from {ip}"),
            None => Ok(()),
        }
    }
}

impl Transport {
    /// Plaintext (development only), connecting from wherever the kernel chooses.
    pub fn insecure() -> Transport {
        Transport {
            security: Security::Insecure,
            source: None,
        }
    }

    /// Reads the CA bundle, certificate and key named by `files`.
    pub fn load(files: &TlsFiles) -> Result<Transport, TlsError> {
        Ok(Transport {
            security: Security::Mutual(Arc::new(Reloadable {
                current: RwLock::new(Arc::new(Configs::load(files)?)),
                files: files.clone(),
            })),
            source: None,
        })
    }

    /// The same identity, making its connections from `ip` (the unspecified address
    /// `0.0.0.0` / `::` leaves the choice to the kernel).
    pub fn from_source(self, ip: IpAddr) -> Transport {
        Transport {
            source: Some(ip).filter(|ip| !ip.is_unspecified()),
            ..self
        }
    }

    /// The local address connections start from, if one was chosen.
    pub fn source(&self) -> Option<IpAddr> {
        self.source
    }

    /// `files` when given, else plaintext if `insecure`, else an error naming both flags.
    pub fn choose(files: Option<TlsFiles>, insecure: bool) -> Result<Transport, TlsError> {
        match (files, insecure) {
            (Some(files), false) => Transport::load(&files),
            (None, true) => Ok(Transport::insecure()),
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
        matches!(self.security, Security::Insecure)
    }

    /// Reads the files again; on success every later connection (made or accepted) uses
    /// them. On failure the previous ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Security::Mutual(m) = &self.security {
            let configs = Configs::load(&m.files)?;
            *m.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(configs);
        }
        Ok(())
    }

    /// A channel to `addr` (`host:port`, with or without a scheme) that connects on first
    /// use and reconnects after failures, each time with the current certificates.
    /// `configure` sets the endpoint's timeouts.
    pub fn channel(
        &self,
        addr: &str,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, TlsError> {
        let endpoint = endpoint_of(addr)?
            .user_agent(crate::protocol::user_agent())
            .map_err(|e| TlsError::Config(format!("user agent: {e}")))?;
        // HTTP/2 pings find a connection that stopped answering (a frozen peer, packets
        // dropped by a partition, then a TCP retransmission backoff of many seconds) and
        // close it, so the next call reconnects instead of waiting behind it.
        let endpoint = configure(
            endpoint
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true),
        );
        let source = self.source;
        Ok(match &self.security {
            Security::Insecure => endpoint
                .local_address(source)
                .tcp_nodelay(true)
                .connect_lazy(),
            Security::Mutual(m) => {
                let m = m.clone();
                endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
                    let config = m.current().client.clone();
                    connect_tls(uri, config, source)
                }))
            }
        })
    }

    /// The server side, with the current certificates: `None` for plaintext.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        match &self.security {
            Security::Insecure => None,
            Security::Mutual(m) => Some(TlsAcceptor::from(m.current().server.clone())),
        }
    }
}

impl Reloadable {
    fn current(&self) -> Arc<Configs> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// On every SIGHUP, reloads each of `transports` (a daemon's identities): a failed reload
/// is logged and leaves that transport's previous files in use. Ends with the runtime.
pub fn reload_on_sighup(component: &'static str, transports: Vec<Transport>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(component, error = %e, "no SIGHUP handler: certificates reload only on restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            for transport in &transports {
                match transport.reload() {
                    Ok(()) => tracing::info!(
                        component,
                        transport = ?transport,
                        "SIGHUP: reloaded the TLS certificate, key and CA bundle"
                    ),
                    Err(e) => tracing::warn!(
                        component,
                        transport = ?transport,
                        error = %e,
                        "SIGHUP: cannot reload the TLS files; still using the previous ones"
                    ),
                }
            }
        }
    });
}

/// The endpoint of `addr`, `host:port` with or without a scheme. The scheme becomes
/// `http` with TLS too: [`Transport::channel`]'s connector does the handshake, tonic's
/// own TLS (which would want `https`) is not used.
fn endpoint_of(addr: &str) -> Result<Endpoint, TlsError> {
    let host = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    Endpoint::from_shared(format!("http://{host}"))
        .map_err(|e| TlsError::Config(format!("address {addr:?}: {e}")))
}

/// TCP (from `source`, if set) and a TLS handshake that presents `config`'s certificate
/// and verifies the server against [`SERVER_NAME`].
async fn connect_tls(
    uri: Uri,
    config: Arc<rustls::ClientConfig>,
    source: Option<IpAddr>,
) -> io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {uri}"));
    let host = uri.host().ok_or_else(|| bad("no host in address"))?;
    let port = uri.port_u16().ok_or_else(|| bad("no port in address"))?;
    let mut last = bad("address resolves to nothing");
    for addr in tokio::net::lookup_host((host.trim_matches(['[', ']']), port)).await? {
        match connect_tcp(addr, source).await {
            Ok(tcp) => {
                let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
                let tls = TlsConnector::from(config).connect(name, tcp).await?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{addr} did not agree to HTTP/2 (ALPN h2)"),
                    ));
                }
                return Ok(TokioIo::new(tls));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(source) = source {
        if source.is_ipv4() == addr.is_ipv4() {
            socket.bind(SocketAddr::new(source, 0))?;
        }
    }
    socket.set_nodelay(true)?;
    socket.connect(addr).await
}

impl Configs {
    fn load(files: &TlsFiles) -> Result<Configs, TlsError> {
        let (ca, cert, key) = (
            read(&files.ca())?,
            read(&files.cert())?,
            read(&files.key())?,
        );
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .ok()
            .filter(|c: &Vec<_>| !c.is_empty())
            .ok_or_else(|| TlsError::Pem {
                path: files.cert(),
                what: "certificate",
            })?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|_| TlsError::Pem {
            path: files.key(),
            what: "private key",
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&ca) {
            let ca = ca.map_err(|_| TlsError::Pem {
                path: files.ca(),
                what: "CA certificate",
            })?;
            roots
                .add(ca)
                .map_err(|e| TlsError::Config(format!("CA {:?}: {e}", files.ca())))?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                path: files.ca(),
                what: "CA certificate",
            });
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let bad_cert =
            |e: rustls::Error| TlsError::Config(format!("certificate {:?}: {e}", files.cert()));
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(bad_cert)?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(bad_cert)?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Configs {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_or_without_a_scheme_name_the_same_endpoint() {
        for addr in [
            "127.0.0.1:7000",
            "http://127.0.0.1:7000",
            "https://127.0.0.1:7000",
        ] {
            assert_eq!(
                endpoint_of(addr).unwrap().uri().to_string(),
                "http://127.0.0.1:7000/"
            );
        }
        assert!(endpoint_of("not an address").is_err());
    }
}
