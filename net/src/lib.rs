//! Cairn's network identity layer: mutual TLS for every gRPC connection, the certificates
//! that carry it, and who may call what. Knows nothing of the namespace, the data path or
//! storage: the metadata service, storage nodes, the client and the mount all sit above it.
//!
//! A cluster has one CA (`cairn cert init`); every component holds a certificate from it
//! whose subject carries a [`Role`] (organisational unit `cairn-meta`, `cairn-node`,
//! `cairn-gateway`, `cairn-client` or `cairn-mount`) and a name (common name). Servers (metadata replicas,
//! storage nodes) also carry the DNS name [`SERVER_NAME`], which is what every client
//! verifies, so a client certificate can never pose as a server. A TLS directory holds
//! `ca.pem` and, per component, `NAME.pem` and `NAME.key` ([`TlsFiles`]).
//!
//! - [`transport`]: a component's identity ([`Transport`]), used both for the connections
//!   it makes and the ones it accepts, and reloaded in place on SIGHUP; it also names the
//!   local address outgoing connections start from (a value, not a process global).
//! - [`accept`]: servers accept connections through [`incoming`], which runs the handshake
//!   itself (so a refused peer is logged once, clearly, at warn level) and attaches the
//!   peer's verified identity to every request ([`PeerInfo`]).
//! - [`authorize`](mod@authorize): each RPC handler calls [`authorize()`] with the roles it
//!   admits; [`caller_of`] names the user whose grants apply (a certificate's name, or an
//!   API token the metadata service resolves).
//! - [`certs`]: the cluster CA and per-component certificates (`cairn cert`).
//! - [`protocol`]: the RPC protocol version every connection names and every handler
//!   checks (through [`authorize()`]).
//!
//! Plaintext ([`Transport::insecure`]) exists only for development and is chosen explicitly
//! (`--insecure`).

pub mod accept;
pub mod authorize;
pub mod certs;
pub mod protocol;
pub mod transport;

use std::io;
use std::path::{Path, PathBuf};

pub use accept::{identity_of, incoming, PeerInfo};
pub use authorize::{
    authorize, caller_key, caller_of, name_caller, token_of, Caller, TOKEN_HEADER, USER_HEADER,
};
pub use transport::Transport;

/// The DNS name in every server certificate; clients verify servers against it.
pub const SERVER_NAME: &str = "cairn-cluster";
/// Concurrent calls one connection may have open on a server (HTTP/2 setting).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// What a certificate allows its holder to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// A compute node's mount: the filesystem protocol on the buckets its user (the
    /// certificate's name) is granted, and the shard reads and writes that go with it;
    /// nothing else (no object API, no administration).
    Mount,
}

impl Role {
    /// The organisational unit that marks the role in a certificate's subject.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Meta => "cairn-meta",
            Role::Node => "cairn-node",
            Role::Client => "cairn-client",
            Role::Gateway => "cairn-gateway",
            Role::Mount => "cairn-mount",
        }
    }

    /// The role's short name (`meta`, `node`, `client`, `gateway`, `mount`), as `cairn cert issue
    /// --role` takes it and `Display` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Meta => "meta",
            Role::Node => "node",
            Role::Client => "client",
            Role::Gateway => "gateway",
            Role::Mount => "mount",
        }
    }

    fn from_unit(unit: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.unit() == unit)
    }

    /// Every role, in the order `cairn cert issue --role` lists them.
    pub const ALL: [Role; 5] = [
        Role::Meta,
        Role::Node,
        Role::Client,
        Role::Gateway,
        Role::Mount,
    ];
}

impl std::str::FromStr for Role {
    type Err = String;

    /// A role's short name ([`Role::name`]).
    fn from_str(name: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.map(Role::name).to_vec();
                format!("unknown role {name:?}: one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_parse_back_and_units_identify_roles() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.name());
            assert_eq!(Role::from_unit(role.unit()), Some(role));
        }
        let err = "admin".parse::<Role>().unwrap_err();
        assert!(err.contains("meta, node, client, gateway"), "{err}");
    }
}
