//! Who may touch which bucket: the caller's user (see `cairn_client::tls::caller_of`) is
//! checked against the replicated grants, on the leader (a follower forwards the call
//! with the user named in a header). Cluster admins (`--admin NAME`) may do everything:
//! create buckets, grant, administer the cluster, and use the filesystem protocol.

use std::collections::BTreeSet;

use cairn_client::tls::{caller_of, Caller};
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
    pub fn require_admin<T>(&self, req: &Request<T>, what: &str) -> Result<(), Status> {
        match caller_of(req) {
            Caller::Unrestricted => Ok(()),
            Caller::User(user) if self.contains(&user) => Ok(()),
            Caller::User(user) => Err(Status::permission_denied(format!(
                "user {user:?} may not {what}: only cluster admins may"
            ))),
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
        self.check(ns, &caller_of(req), bucket, need)
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
        }
    }

    /// Whether `caller` may see `bucket` in a listing (any grant).
    pub fn may_see(&self, ns: &Namespace, caller: &Caller, bucket: &str) -> bool {
        self.check(ns, caller, bucket, Access::Read).is_ok()
    }
}
