//! Who may call what: the roles an RPC admits ([`authorize`]) and the user whose grants
//! apply ([`caller_of`]).

use super::accept::RefusalLog;
use super::{PeerInfo, Role};

/// The metadata header naming the user a gateway (or a forwarding replica) acts for.
pub const USER_HEADER: &str = "x-cairn-user";

/// The metadata header carrying an API token (`Bearer TOKEN`, from `cairn user add`).
pub const TOKEN_HEADER: &str = "authorization";

/// Whose grants a call is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Plaintext (`--insecure`), or a metadata replica acting for itself.
    Unrestricted,
    User(String),
    /// The user an API token was issued to; only the metadata service, which holds the
    /// tokens' hashes, can tell who that is (or that the token is unknown).
    Token(String),
}

/// The user behind a call: the user of the API token it carries, if any (from a client,
/// a gateway passing its caller's token on, or a replica forwarding a call); else a
/// client's certificate name, or the user a gateway or forwarding replica names in
/// [`USER_HEADER`]. A storage node's certificate cannot carry a token.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    let Some(PeerInfo {
        identity: Some((role, name)),
        ..
    }) = request.extensions().get::<PeerInfo>()
    else {
        return Caller::Unrestricted;
    };
    let metadata = request.metadata();
    let token = || token_of(metadata).map(|t| Caller::Token(t.to_string()));
    let named = || {
        metadata
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|user| Caller::User(user.to_string()))
    };
    let own = || Caller::User(name.clone());
    match role {
        Role::Meta => token().or_else(named).unwrap_or(Caller::Unrestricted),
        Role::Gateway => token().or_else(named).unwrap_or_else(own),
        Role::Client => token().unwrap_or_else(own),
        Role::Node => own(),
    }
}

/// The API token in `metadata` (`authorization: Bearer TOKEN`), if any.
pub fn token_of(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata
        .get(TOKEN_HEADER)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Names `caller` in `metadata`, for a call made on its behalf (a follower forwarding to
/// the leader, a gateway calling the metadata service).
pub fn name_caller(metadata: &mut tonic::metadata::MetadataMap, caller: &Caller) {
    match caller {
        Caller::Unrestricted => {}
        Caller::User(user) => {
            if let Ok(value) = user.parse() {
                metadata.insert(USER_HEADER, value);
            }
        }
        Caller::Token(token) => {
            if let Ok(value) = format!("Bearer {token}").parse() {
                metadata.insert(TOKEN_HEADER, value);
            }
        }
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
