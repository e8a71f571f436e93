//! Which filesystem requests a mount's user may make: the grants of `access.rs` applied to
//! the inode-based protocol of `cairn_common::fs`. Every inode lives in one bucket (the
//! top-level directory it is under), and a request needs a grant on the bucket of every
//! inode it names: `read` to look, open and lock, `write` to change. The root holds the
//! buckets: anyone may stat it and list it (a listing shows only the buckets the user may
//! read), and only cluster admins may change it (create, remove or rename a bucket).
//! Bulk creation and removal (`CreateMany`, `RemoveMany`, for benchmarks) are for
//! cluster admins only, whatever the user's grants.
//! Sessions (open, renew, close) need no grant.
//!
//! Pure logic over the namespace: the caller decides what the user may do on a bucket
//! (`may`), so cluster admins and plaintext callers skip this module altogether.

use cairn_common::fs::{
    FsChange, FsErrorKind, FsFailure, FsQuery, FsReply, FsRequest, Ino, ROOT_INO,
};

use crate::namespace::grants::Access;
use crate::namespace::Namespace;

/// Refuses `request` unless `may(bucket, need)` holds for the bucket of every inode it
/// names. An inode that does not exist is let through: the namespace answers it (with
/// `NotFound`), which tells nothing about any bucket.
pub fn check(
    ns: &Namespace,
    request: &FsRequest,
    may: impl Fn(&str, Access) -> bool,
) -> Result<(), FsFailure> {
    let need = |ino: Ino, need: Access| -> Result<(), FsFailure> {
        match ns.bucket_name_of(ino) {
            Some(bucket) if !may(&bucket, need) => Err(FsFailure::new(
                FsErrorKind::AccessDenied,
                format!("this mount's user has no {need} grant on bucket {bucket:?}"),
            )),
            _ => Ok(()),
        }
    };
    match request {
        FsRequest::OpenSession { .. }
        | FsRequest::RenewSession { .. }
        | FsRequest::CloseSession { .. } => Ok(()),
        FsRequest::Query { query, .. } => match query {
            FsQuery::StatFs => Ok(()),
            FsQuery::Lookup { parent, name } if *parent == ROOT_INO => match ns.bucket(name) {
                Ok(_) if !may(name, Access::Read) => Err(FsFailure::new(
                    FsErrorKind::AccessDenied,
                    format!("this mount's user has no grant on bucket {name:?}"),
                )),
                _ => Ok(()),
            },
            FsQuery::GetAttr { ino } | FsQuery::ReadDir { ino, .. } if *ino == ROOT_INO => Ok(()),
            FsQuery::Lookup { parent: ino, .. }
            | FsQuery::GetAttr { ino }
            | FsQuery::ReadDir { ino, .. }
            | FsQuery::ReadLink { ino }
            | FsQuery::Extents { ino, .. }
            | FsQuery::GetXattr { ino, .. }
            | FsQuery::ListXattr { ino }
            | FsQuery::GetLock { ino, .. } => need(*ino, Access::Read),
        },
        FsRequest::Change { change, .. } => {
            let (inos, access): (&[Ino], Access) = match change {
                FsChange::CreateMany { .. } | FsChange::RemoveMany { .. } => {
                    return Err(FsFailure::new(
                        FsErrorKind::AccessDenied,
                        "bulk creation and removal of files are for cluster admins only",
                    ));
                }
                FsChange::Create { parent, .. } | FsChange::Unlink { parent, .. } => {
                    (std::slice::from_ref(parent), Access::Write)
                }
                FsChange::Link { ino, parent, .. } => (&[*ino, *parent], Access::Write),
                FsChange::CloneFile { src, parent, .. } => {
                    need(*src, Access::Read)?;
                    (std::slice::from_ref(parent), Access::Write)
                }
                FsChange::Rename {
                    parent, new_parent, ..
                } => (&[*parent, *new_parent], Access::Write),
                FsChange::SetAttr { ino, .. }
                | FsChange::Write { ino, .. }
                | FsChange::WriteInline { ino, .. }
                | FsChange::PunchHole { ino, .. }
                | FsChange::Compact { ino, .. }
                | FsChange::SetXattr { ino, .. }
                | FsChange::RemoveXattr { ino, .. } => (std::slice::from_ref(ino), Access::Write),
                FsChange::Hold { ino }
                | FsChange::Release { ino }
                | FsChange::SetLock { ino, .. }
                | FsChange::UnlockAll { ino, .. } => (std::slice::from_ref(ino), Access::Read),
            };
            for &ino in inos {
                if ino == ROOT_INO && access == Access::Write {
                    return Err(FsFailure::new(
                        FsErrorKind::AccessDenied,
                        "only cluster admins change the root (create, remove or rename buckets)",
                    ));
                }
                need(ino, access)?;
            }
            Ok(())
        }
    }
}

/// Whether `request` lists the root, whose reply [`filter_root_listing`] must filter.
pub fn lists_root(request: &FsRequest) -> bool {
    matches!(
        request,
        FsRequest::Query {
            query: FsQuery::ReadDir { ino: ROOT_INO, .. },
            ..
        }
    )
}

/// Drops from a listing of the root the buckets the user may not read.
pub fn filter_root_listing(reply: &mut FsReply, may: impl Fn(&str, Access) -> bool) {
    if let FsReply::Entries(entries) = reply {
        entries.retain(|e| may(&e.name, Access::Read));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Command;
    use cairn_common::fs::NewNode;
    use cairn_common::locks::{FileLock, LockKind};
    use cairn_common::Redundancy;

    fn ns_with(buckets: &[&str]) -> (Namespace, Vec<Ino>) {
        let mut ns = Namespace::new();
        let mut inos = Vec::new();
        for b in buckets {
            ns.apply_and_write(Command::CreateBucket {
                name: b.to_string(),
                redundancy: Redundancy::Replicas { n: 1 },
                mtime: 0,
            });
            inos.push(ns.bucket(b).unwrap().ino);
        }
        (ns, inos)
    }

    fn change(change: FsChange) -> FsRequest {
        FsRequest::Change {
            session: 1,
            change,
            seq: 1,
        }
    }

    fn query(query: FsQuery) -> FsRequest {
        FsRequest::Query { session: 1, query }
    }

    #[test]
    fn a_read_grant_looks_and_locks_a_write_grant_changes_the_root_needs_an_admin() {
        let (ns, inos) = ns_with(&["mine", "theirs", "readonly"]);
        let (mine, theirs, ro) = (inos[0], inos[1], inos[2]);
        let may = |bucket: &str, need: Access| match bucket {
            "mine" => true,
            "readonly" => need == Access::Read,
            _ => false,
        };
        let create = |parent| {
            change(FsChange::Create {
                parent,
                name: "f".into(),
                node: NewNode::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                hold: false,
            })
        };
        let denied = |r: Result<(), FsFailure>| r.unwrap_err().kind == FsErrorKind::AccessDenied;
        assert!(check(&ns, &create(mine), may).is_ok());
        assert!(denied(check(&ns, &create(theirs), may)));
        assert!(denied(check(&ns, &create(ro), may)));
        assert!(denied(check(&ns, &create(ROOT_INO), may)), "a new bucket");
        assert!(check(&ns, &query(FsQuery::GetAttr { ino: ro }), may).is_ok());
        assert!(denied(check(
            &ns,
            &query(FsQuery::GetAttr { ino: theirs }),
            may
        )));
        let lock = change(FsChange::SetLock {
            ino: ro,
            owner: 1,
            lock: FileLock {
                start: 0,
                end: 0,
                kind: LockKind::Write,
                pid: 1,
            },
        });
        assert!(check(&ns, &lock, may).is_ok(), "locking needs read");
        let lookup = |name: &str| {
            query(FsQuery::Lookup {
                parent: ROOT_INO,
                name: name.into(),
            })
        };
        assert!(check(&ns, &lookup("mine"), may).is_ok());
        assert!(denied(check(&ns, &lookup("theirs"), may)));
        assert!(
            check(&ns, &lookup("absent"), may).is_ok(),
            "answered NotFound"
        );
        assert!(check(&ns, &query(FsQuery::StatFs), may).is_ok());
        // An inode that does not exist tells nothing: the namespace answers it.
        assert!(check(&ns, &query(FsQuery::GetAttr { ino: 999_999 }), may).is_ok());
    }

    #[test]
    fn bulk_changes_are_refused_even_with_a_write_grant() {
        let (ns, inos) = ns_with(&["mine"]);
        let may = |_: &str, _: Access| true;
        for bulk in [
            FsChange::CreateMany {
                parent: inos[0],
                prefix: "f".into(),
                first: 0,
                count: 1,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            FsChange::RemoveMany {
                parent: inos[0],
                prefix: "f".into(),
                first: 0,
                count: 1,
            },
        ] {
            let refused = check(&ns, &change(bulk), may).unwrap_err();
            assert_eq!(refused.kind, FsErrorKind::AccessDenied);
            assert!(refused.detail.contains("cluster admins"), "{refused}");
        }
    }
}
