//! Per-bucket grants: which user (a client certificate's name) may read, write or
//! administer which bucket. Replicated with the rest of the namespace; enforced by the
//! service (`service.rs`, `check_access`).

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::{Namespace, NamespaceError};

/// What a grant allows; each level includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Access {
    /// Look up, read and list objects.
    Read,
    /// Also put, overwrite and delete objects.
    Write,
    /// Also grant and revoke access, and delete the bucket.
    Admin,
}

impl Access {
    /// "read", "write", "admin"; "none" is no grant.
    pub fn parse(text: &str) -> Result<Option<Access>, String> {
        match text {
            "read" => Ok(Some(Access::Read)),
            "write" => Ok(Some(Access::Write)),
            "admin" => Ok(Some(Access::Admin)),
            "none" => Ok(None),
            other => Err(format!(
                "unknown access {other:?}: use read, write, admin or none"
            )),
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        })
    }
}

impl Namespace {
    /// `user`'s access to `bucket`, if any.
    pub fn access(&self, bucket: &str, user: &str) -> Option<Access> {
        self.grants.get(&bucket.to_string())?.get(user).copied()
    }

    /// Gives `user` `access` to an existing bucket (`None`: revokes it).
    pub(super) fn set_grant(
        &mut self,
        bucket: String,
        user: String,
        access: Option<Access>,
    ) -> Result<CommandResult, NamespaceError> {
        self.bucket(&bucket)?;
        match access {
            Some(access) => {
                self.grants
                    .entry_or_insert_with(bucket, Default::default)
                    .insert(user, access);
            }
            None => {
                if let Some(users) = self.grants.get_mut(&bucket) {
                    users.remove(&user);
                    if users.is_empty() {
                        self.grants.remove(&bucket);
                    }
                }
            }
        }
        Ok(CommandResult::Done)
    }

    /// Forgets every grant on `bucket` (it was deleted).
    pub(super) fn drop_grants(&mut self, bucket: &str) {
        self.grants.remove(&bucket.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Command;
    use cairn_common::Redundancy;

    #[test]
    fn grants_are_set_replaced_revoked_and_dropped_with_the_bucket() {
        let mut ns = Namespace::new();
        let grant = |bucket: &str, user: &str, access| Command::SetGrant {
            bucket: bucket.into(),
            user: user.into(),
            access,
        };
        assert!(matches!(
            ns.apply_and_write(grant("nope", "alice", Some(Access::Read))),
            CommandResult::Rejected(NamespaceError::NoSuchBucket { .. })
        ));
        ns.apply_and_write(Command::CreateBucket {
            name: "bkt".into(),
            redundancy: Redundancy::Ec { k: 2, m: 1 },
            mtime: 0,
        });
        ns.apply_and_write(grant("bkt", "alice", Some(Access::Read)));
        assert_eq!(ns.access("bkt", "alice"), Some(Access::Read));
        assert_eq!(ns.access("bkt", "bob"), None);
        ns.apply_and_write(grant("bkt", "alice", Some(Access::Write)));
        assert_eq!(ns.access("bkt", "alice"), Some(Access::Write));
        assert!(Access::Write >= Access::Read && Access::Admin > Access::Write);
        ns.apply_and_write(grant("bkt", "alice", None));
        assert_eq!(ns.access("bkt", "alice"), None);
        ns.apply_and_write(grant("bkt", "bob", Some(Access::Admin)));
        ns.apply_and_write(Command::DeleteBucket { name: "bkt".into() });
        assert_eq!(ns.access("bkt", "bob"), None);
        assert_eq!(Access::parse("none"), Ok(None));
        assert!(Access::parse("root").is_err());
    }
}
