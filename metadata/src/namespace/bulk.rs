//! Bulk creation and removal of empty files (`FsChange::CreateMany`, `RemoveMany`): up to
//! `MAX_BULK_FILES` files in one Raft entry, so that a benchmark or a test can fill a
//! namespace with millions of inodes in minutes rather than hours. Each file goes through
//! the same create (or unlink) as a single `Create` (`Unlink`) of a mount, so a bulk file
//! is indistinguishable from one made one by one. Like every change, a batch is checked
//! completely before anything is modified: it applies whole or not at all.
//!
//! Who may send one (cluster admins) is decided in `fs_access.rs`, not here.

use cairn_common::fs::{
    bulk_name, check_name, FsErrorKind, Ino, NewNode, MAX_BULK_FILES, ROOT_INO,
};

use super::fs::{fail, FsRes};
use super::Namespace;

/// The names of a batch, after checking its size.
fn batch_names(prefix: &str, first: u64, count: u32) -> FsRes<Vec<String>> {
    if count == 0 || count > MAX_BULK_FILES {
        return fail(
            FsErrorKind::InvalidArgument,
            format!("a bulk batch names 1 to {MAX_BULK_FILES} files, not {count}"),
        );
    }
    if first.checked_add(u64::from(count)).is_none() {
        return fail(FsErrorKind::InvalidArgument, "bulk batch numbers overflow");
    }
    let names: Vec<String> = (first..first + u64::from(count))
        .map(|n| bulk_name(prefix, n))
        .collect();
    for name in &names {
        check_name(name)?;
    }
    Ok(names)
}

impl Namespace {
    /// `CreateMany`: `count` empty files `prefix{first..}` in `parent`, all or none.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fs_create_many(
        &mut self,
        parent: Ino,
        prefix: &str,
        first: u64,
        count: u32,
        mode: u32,
        owner: (u32, u32),
        now: u64,
    ) -> FsRes<()> {
        let names = batch_names(prefix, first, count)?;
        if parent == ROOT_INO {
            return fail(
                FsErrorKind::NotPermitted,
                "only directories (buckets) can be created at the root",
            );
        }
        self.require_dir(parent)?;
        if let Some(taken) = names.iter().find(|n| self.child(parent, n).is_some()) {
            return fail(FsErrorKind::Exists, format!("{taken:?} exists"));
        }
        // Everything `fs_create` checks for a file passed above, so no create below
        // fails; were one to, every replica would stop at the same file.
        for name in &names {
            self.fs_create(parent, name, NewNode::File, mode, owner, now)?;
        }
        Ok(())
    }

    /// `RemoveMany`: unlinks the files `prefix{first..}` of `parent`, all or none.
    pub(super) fn fs_remove_many(
        &mut self,
        parent: Ino,
        prefix: &str,
        first: u64,
        count: u32,
        now: u64,
    ) -> FsRes<()> {
        let names = batch_names(prefix, first, count)?;
        self.require_dir(parent)?;
        for name in &names {
            let Some(ino) = self.child(parent, name) else {
                return fail(FsErrorKind::NotFound, format!("no entry {name:?}"));
            };
            if self.inode(ino)?.kind.is_dir() {
                return fail(FsErrorKind::IsDir, format!("{name:?} is a directory"));
            }
        }
        for name in &names {
            self.fs_unlink(parent, name, false, now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cairn_common::fs::{FsChange, FsFailure, FsQuery, FsReply, FsResult, NewNode};
    use cairn_common::Redundancy;

    use super::*;
    use crate::namespace::{Command, CommandResult};

    struct Bench {
        ns: Namespace,
        session: u64,
        dir: Ino,
    }

    impl Bench {
        fn new() -> Bench {
            let mut ns = Namespace::new();
            ns.apply_and_write(Command::CreateBucket {
                name: "bkt".into(),
                redundancy: Redundancy::Replicas { n: 1 },
                mtime: 0,
            });
            let session = match ns.apply_and_write(Command::OpenSession {
                name: "test".into(),
                now_ns: 1,
            }) {
                CommandResult::Fs(Ok(FsReply::Session { id, .. })) => id,
                other => panic!("{other:?}"),
            };
            let bucket = ns.bucket("bkt").expect("bucket").ino;
            let mut b = Bench {
                ns,
                session,
                dir: 0,
            };
            b.dir = match b.change(FsChange::Create {
                parent: bucket,
                name: "d".into(),
                node: NewNode::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                hold: false,
            }) {
                Ok(FsReply::Attr(a)) => a.ino,
                other => panic!("{other:?}"),
            };
            b
        }

        fn change(&mut self, change: FsChange) -> FsResult {
            match self.ns.apply_and_write(Command::Fs {
                session: self.session,
                change,
                now_ns: 10,
                seq: 0,
            }) {
                CommandResult::Fs(r) => r,
                other => panic!("{other:?}"),
            }
        }

        fn create_many(&mut self, prefix: &str, first: u64, count: u32) -> FsResult {
            self.change(FsChange::CreateMany {
                parent: self.dir,
                prefix: prefix.into(),
                first,
                count,
                mode: 0o640,
                uid: 7,
                gid: 8,
            })
        }

        fn remove_many(&mut self, prefix: &str, first: u64, count: u32) -> FsResult {
            self.change(FsChange::RemoveMany {
                parent: self.dir,
                prefix: prefix.into(),
                first,
                count,
            })
        }

        fn names(&self) -> Vec<String> {
            match self.ns.fs_query(
                self.session,
                FsQuery::ReadDir {
                    ino: self.dir,
                    after: None,
                    limit: 10_000,
                },
            ) {
                Ok(FsReply::Entries(e)) => e.into_iter().map(|e| e.name).collect(),
                other => panic!("{other:?}"),
            }
        }
    }

    fn kind(result: FsResult) -> FsErrorKind {
        result.map(drop).expect_err("refused").kind
    }

    #[test]
    fn create_many_makes_every_file_like_a_create() {
        let mut b = Bench::new();
        let before = b.ns.counts();
        assert_eq!(b.create_many("f", 5, 3), Ok(FsReply::Done));
        assert_eq!(b.names(), ["f5", "f6", "f7"]);
        let after = b.ns.counts();
        assert_eq!(after.inodes, before.inodes + 3);
        assert_eq!(after.objects, before.objects + 3);
        // Each is an empty regular file with the batch's mode and owner.
        let attr = match b.ns.fs_query(
            b.session,
            FsQuery::Lookup {
                parent: b.dir,
                name: "f6".into(),
            },
        ) {
            Ok(FsReply::Attr(a)) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(attr.kind, cairn_common::fs::FileType::File);
        assert_eq!(
            (attr.size, attr.mode, attr.uid, attr.gid, attr.nlink),
            (0, 0o640, 7, 8, 1)
        );
    }

    #[test]
    fn the_largest_batch_is_accepted_and_one_more_is_refused() {
        let mut b = Bench::new();
        let before = b.ns.counts().inodes;
        assert_eq!(
            kind(b.create_many("x", 0, MAX_BULK_FILES + 1)),
            FsErrorKind::InvalidArgument
        );
        assert_eq!(kind(b.create_many("x", 0, 0)), FsErrorKind::InvalidArgument);
        assert_eq!(
            kind(b.create_many("x", u64::MAX, 2)),
            FsErrorKind::InvalidArgument
        );
        assert_eq!(b.ns.counts().inodes, before);
        assert_eq!(b.create_many("x", 0, MAX_BULK_FILES), Ok(FsReply::Done));
        assert_eq!(b.ns.counts().inodes, before + u64::from(MAX_BULK_FILES));
    }

    #[test]
    fn an_existing_name_refuses_the_whole_batch() {
        let mut b = Bench::new();
        assert_eq!(b.create_many("f", 0, 2), Ok(FsReply::Done));
        let before = b.ns.state_digest();
        // f1 exists: f2 and f3 must not be created either.
        let refused = b.create_many("f", 1, 3);
        assert!(
            matches!(&refused, Err(FsFailure { kind: FsErrorKind::Exists, detail }) if detail.contains("f1")),
            "{refused:?}"
        );
        assert_eq!(
            b.ns.state_digest(),
            before,
            "a refused batch changes nothing"
        );
        assert_eq!(b.names(), ["f0", "f1"]);
    }

    #[test]
    fn bad_names_and_parents_are_refused_whole() {
        let mut b = Bench::new();
        let before = b.ns.state_digest();
        assert_eq!(
            kind(b.create_many("a/b", 0, 2)),
            FsErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(b.create_many(&"n".repeat(255), 0, 2)),
            FsErrorKind::NameTooLong
        );
        let root = b.change(FsChange::CreateMany {
            parent: ROOT_INO,
            prefix: "f".into(),
            first: 0,
            count: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
        assert_eq!(kind(root), FsErrorKind::NotPermitted);
        b.dir = 999_999;
        assert_eq!(kind(b.create_many("f", 0, 1)), FsErrorKind::NotFound);
        assert_eq!(b.ns.state_digest(), before);
    }

    #[test]
    fn remove_many_removes_what_create_many_made_all_or_none() {
        let mut b = Bench::new();
        let before = b.ns.counts();
        assert_eq!(b.create_many("f", 0, 100), Ok(FsReply::Done));
        // f100 is missing: nothing is removed.
        assert_eq!(kind(b.remove_many("f", 1, 100)), FsErrorKind::NotFound);
        assert_eq!(b.names().len(), 100);
        assert_eq!(b.remove_many("f", 0, 100), Ok(FsReply::Done));
        assert!(b.names().is_empty());
        assert_eq!(b.ns.counts(), before);
    }

    #[test]
    fn remove_many_refuses_a_directory() {
        let mut b = Bench::new();
        assert_eq!(b.create_many("f", 0, 1), Ok(FsReply::Done));
        b.change(FsChange::Create {
            parent: b.dir,
            name: "f1".into(),
            node: NewNode::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            hold: false,
        })
        .expect("mkdir");
        assert_eq!(kind(b.remove_many("f", 0, 2)), FsErrorKind::IsDir);
        assert_eq!(b.names(), ["f0", "f1"]);
    }

    #[test]
    fn a_numbered_retry_gets_the_first_answer() {
        let mut b = Bench::new();
        let change = FsChange::CreateMany {
            parent: b.dir,
            prefix: "f".into(),
            first: 0,
            count: 10,
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let apply = |ns: &mut Namespace, session| {
            ns.apply_and_write(Command::Fs {
                session,
                change: change.clone(),
                now_ns: 10,
                seq: 1,
            })
        };
        let first = apply(&mut b.ns, b.session);
        assert_eq!(first, CommandResult::Fs(Ok(FsReply::Done)));
        // The same numbered change again (its answer was lost): not "exists".
        assert_eq!(apply(&mut b.ns, b.session), first);
        assert_eq!(b.names().len(), 10);
    }
}
