//! Who may touch which bucket: the caller's user (see `cairn_net::caller_of`; an
//! API token is resolved here, against the replicated tokens) is checked against the
//! replicated grants, on the leader (a follower forwards the call with the user or token
//! in a header). Cluster admins (`--admin NAME`) may do everything: create buckets, grant,
//! make tokens, administer the cluster, and use the filesystem protocol on every bucket.
//! Other users (a mount's certificate, role `mount`) use the filesystem protocol on the
//! buckets they are granted (`fs_access.rs`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use cairn_common::token::ApiToken;
use cairn_net::{caller_key, caller_of, Caller};
use tonic::{Request, Status};

use crate::namespace::grants::Access;
use crate::namespace::Namespace;

/// The users that are cluster administrators.
#[derive(Clone, Debug, Default)]
pub struct Admins(BTreeSet<String>);

impl Admins {
    pub fn new(names: impl IntoIterator<Item = String>) -> Admins {
        Admins(names.into_iter().collect())
    }

    fn contains(&self, user: &str) -> bool {
        self.0.contains(user)
    }

    /// Refuses unless the caller is a cluster admin (or unrestricted).
    #[allow(clippy::result_large_err)]
    pub fn require_admin<T>(
        &self,
        ns: &Namespace,
        req: &Request<T>,
        what: &str,
    ) -> Result<(), Status> {
        match caller(ns, req)? {
            Caller::Unrestricted => Ok(()),
            Caller::User(user) if self.contains(&user) => Ok(()),
            Caller::User(user) => Err(Status::permission_denied(format!(
                "user {user:?} may not {what}: only cluster admins may"
            ))),
            Caller::Token(_) => Err(Status::internal("an API token was not resolved")),
        }
    }

    /// Refuses unless the caller has at least `need` on `bucket` (admins always do).
    #[allow(clippy::result_large_err)]
    pub fn require<T>(
        &self,
        ns: &Namespace,
        req: &Request<T>,
        bucket: &str,
        need: Access,
    ) -> Result<(), Status> {
        self.check(ns, &caller(ns, req)?, bucket, need)
    }

    #[allow(clippy::result_large_err)]
    fn check(
        &self,
        ns: &Namespace,
        caller: &Caller,
        bucket: &str,
        need: Access,
    ) -> Result<(), Status> {
        match caller {
            Caller::Unrestricted => Ok(()),
            Caller::User(user) if self.contains(user) => Ok(()),
            Caller::User(user) => match ns.access(bucket, user) {
                Some(have) if have >= need => Ok(()),
                have => Err(Status::permission_denied(format!(
                    "user {user:?} has {} on bucket {bucket:?}; this needs {need}",
                    have.map_or("no grant".to_string(), |a| format!("{a} access"))
                ))),
            },
            Caller::Token(_) => Err(Status::internal("an API token was not resolved")),
        }
    }

    /// Whether `caller` (resolved by [`caller`]) may do everything: a cluster admin, or a
    /// plaintext caller.
    pub fn is_admin(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Unrestricted => true,
            Caller::User(user) => self.contains(user),
            Caller::Token(_) => false,
        }
    }

    /// Whether `caller` (resolved by [`caller`]) has at least `need` on `bucket`.
    pub fn allows(&self, ns: &Namespace, caller: &Caller, bucket: &str, need: Access) -> bool {
        self.check(ns, caller, bucket, need).is_ok()
    }

    /// Whether `caller` (resolved by [`caller`]) may see `bucket` in a listing (any grant).
    pub fn may_see(&self, ns: &Namespace, caller: &Caller, bucket: &str) -> bool {
        self.check(ns, caller, bucket, Access::Read).is_ok()
    }
}

/// The user behind `req`, an API token resolved to its user. An unknown, revoked or
/// malformed token is refused (UNAUTHENTICATED), and logged once per presenting
/// certificate.
#[allow(clippy::result_large_err)]
pub fn caller<T>(ns: &Namespace, req: &Request<T>) -> Result<Caller, Status> {
    let text = match caller_of(req) {
        Caller::Token(text) => text,
        resolved => return Ok(resolved),
    };
    let token = ApiToken::parse(&text).map_err(|e| Status::unauthenticated(e.to_string()))?;
    match ns.token_user(&token) {
        Some(user) => Ok(Caller::User(user.to_string())),
        None => {
            static REFUSALS: LazyLock<cairn_net::accept::RefusalLog> =
                LazyLock::new(Default::default);
            let presenter = caller_key(req);
            if REFUSALS.first_time(presenter.clone()) {
                tracing::warn!(
                    token_id = token.id(),
                    certificate = presenter,
                    "refused a call: unknown or revoked API token (logged once per \
                     certificate per 10 min)"
                );
            }
            Err(Status::unauthenticated(format!(
                "API token {} is unknown or was revoked (`cairn user ls` shows the valid ones)",
                token.id()
            )))
        }
    }
}
