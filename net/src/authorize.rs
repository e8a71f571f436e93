//! Who may call what: the roles an RPC admits ([`authorize`]) and the user whose grants
//! apply ([`caller_of`]).

use crate::accept::RefusalLog;
use crate::{PeerInfo, Role};

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
/// [`USER_HEADER`]. A storage node's certificate cannot carry a token. A header that is
/// present counts even when malformed (the token is then refused, the user unknown): a
/// call never falls back to its certificate's wider rights.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    let Some(PeerInfo {
        identity: Some((role, name)),
        ..
    }) = request.extensions().get::<PeerInfo>()
    else {
        return Caller::Unrestricted;
    };
    let metadata = request.metadata();
    let token = || token_of(metadata).map(Caller::Token);
    let named = || {
        metadata
            .get(USER_HEADER)
            .map(|v| Caller::User(String::from_utf8_lossy(v.as_bytes()).into_owned()))
    };
    let own = || Caller::User(name.clone());
    match role {
        Role::Meta => token().or_else(named).unwrap_or(Caller::Unrestricted),
        Role::Gateway => token().or_else(named).unwrap_or_else(own),
        Role::Client => token().unwrap_or_else(own),
        Role::Node | Role::Mount => own(),
    }
}

/// The API token in `metadata` (`authorization: Bearer TOKEN`, the scheme in any case),
/// if the header is there; a value of another form comes back whole (and fails to parse
/// as a token).
pub fn token_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = String::from_utf8_lossy(metadata.get(TOKEN_HEADER)?.as_bytes()).into_owned();
    let value = value.trim();
    Some(match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().into(),
        _ => value.into(),
    })
}

/// Names `caller` in `metadata`, for a call made on its behalf (a follower forwarding to
/// the leader). Fails when the name cannot be a header value: the call must then not be
/// made, since without the header it would run with the forwarder's rights.
#[allow(clippy::result_large_err)]
pub fn name_caller(
    metadata: &mut tonic::metadata::MetadataMap,
    caller: &Caller,
) -> Result<(), tonic::Status> {
    let bad = || tonic::Status::invalid_argument("the caller's name is not a valid header value");
    match caller {
        Caller::Unrestricted => {}
        Caller::User(user) => {
            metadata.insert(USER_HEADER, user.parse().map_err(|_| bad())?);
        }
        Caller::Token(token) => {
            let mut value: tonic::metadata::AsciiMetadataValue =
                format!("Bearer {token}").parse().map_err(|_| bad())?;
            value.set_sensitive(true);
            metadata.insert(TOKEN_HEADER, value);
        }
    }
    Ok(())
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

/// Checks the caller's protocol version ([`crate::protocol::check`]), then that the
/// caller of `method` holds one of `allowed` roles. On a plaintext
/// connection (a server started with `--insecure`) every role is allowed.
#[allow(clippy::result_large_err)]
pub fn authorize<T>(
    request: &tonic::Request<T>,
    method: &str,
    allowed: &[Role],
) -> Result<Option<(Role, String)>, tonic::Status> {
    crate::protocol::check(request, method)?;
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

    fn request(role: Option<Role>, headers: &[(&'static str, &str)]) -> tonic::Request<()> {
        let mut req = tonic::Request::new(());
        req.extensions_mut().insert(PeerInfo {
            remote: None,
            tls: role.is_some(),
            identity: role.map(|r| (r, "cert-name".to_string())),
        });
        for (k, v) in headers {
            req.metadata_mut().insert(*k, v.parse().unwrap());
        }
        req
    }

    #[test]
    fn each_role_is_believed_only_for_what_it_may_claim() {
        let user = |u: &str| Caller::User(u.into());
        let token = |t: &str| Caller::Token(t.into());
        let cases = [
            (Some(Role::Client), vec![], user("cert-name")),
            (
                Some(Role::Client),
                vec![(USER_HEADER, "alice")],
                user("cert-name"),
            ),
            (
                Some(Role::Client),
                vec![(TOKEN_HEADER, "Bearer t1")],
                token("t1"),
            ),
            (
                Some(Role::Client),
                vec![(TOKEN_HEADER, "bearer  t1 ")],
                token("t1"),
            ),
            // Malformed: still a token (refused later), never the certificate's rights.
            (
                Some(Role::Client),
                vec![(TOKEN_HEADER, "Basic xyz")],
                token("Basic xyz"),
            ),
            (Some(Role::Client), vec![(TOKEN_HEADER, "")], token("")),
            (
                Some(Role::Node),
                vec![(TOKEN_HEADER, "Bearer t1")],
                user("cert-name"),
            ),
            (
                Some(Role::Node),
                vec![(USER_HEADER, "alice")],
                user("cert-name"),
            ),
            (Some(Role::Gateway), vec![], user("cert-name")),
            (
                Some(Role::Gateway),
                vec![(USER_HEADER, "alice")],
                user("alice"),
            ),
            (
                Some(Role::Gateway),
                vec![(USER_HEADER, "alice"), (TOKEN_HEADER, "Bearer t1")],
                token("t1"),
            ),
            (Some(Role::Meta), vec![], Caller::Unrestricted),
            (
                Some(Role::Meta),
                vec![(USER_HEADER, "alice")],
                user("alice"),
            ),
            (
                Some(Role::Meta),
                vec![(TOKEN_HEADER, "Bearer t1")],
                token("t1"),
            ),
            (
                None,
                vec![(TOKEN_HEADER, "Bearer t1")],
                Caller::Unrestricted,
            ),
        ];
        for (role, headers, want) in cases {
            assert_eq!(
                caller_of(&request(role, &headers)),
                want,
                "{role:?} {headers:?}"
            );
        }
    }

    #[test]
    fn a_forwarded_caller_round_trips_through_the_headers() {
        for caller in [
            Caller::User("alice".into()),
            Caller::Token("cairn_x_y".into()),
            Caller::Unrestricted,
        ] {
            let mut req = request(Some(Role::Meta), &[]);
            name_caller(req.metadata_mut(), &caller).unwrap();
            assert_eq!(caller_of(&req), caller);
        }
        let mut metadata = tonic::metadata::MetadataMap::new();
        let unnameable = Caller::User("line\nbreak".into());
        assert!(name_caller(&mut metadata, &unnameable).is_err());
        assert!(metadata.is_empty());
    }
}
