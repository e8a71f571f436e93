//! Root squash: with `--root-squash`, requests from uid 0 are served as an unprivileged
//! anonymous user (default `nobody`, 65534:65534), as NFS exports do. The mount runs with
//! `default_permissions`, so the kernel checks every other user's requests; it lets root
//! through everything, so for root the core makes the same checks here against the
//! anonymous identity: search on lookups, read/write on opens, write+search on the
//! directories a name is added to or removed from (and the sticky bit), owner-only
//! `chmod`/`utimes`, no `chown`, no device nodes (`mknod` of a FIFO or socket is fine).
//! Files root creates belong to the anonymous user.
//!
//! What stays unchecked: `access(2)` (the kernel answers it for root without asking the
//! mount), and a lookup the kernel answers from its name cache (`--entry-ttl-ms`) without
//! asking. Every open, create, remove, rename and attribute change reaches the mount.

use std::ffi::OsStr;

use crate::backend::{AttrChanges, FileType, FsAttr, FsBackend, FsError, Ino, TimeSet};

/// Whom root's requests are mapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootSquash {
    pub uid: u32,
    pub gid: u32,
}

impl Default for RootSquash {
    /// `nobody:nogroup` on Debian.
    fn default() -> Self {
        RootSquash {
            uid: 65534,
            gid: 65534,
        }
    }
}

/// What a request is about to do, for the checks a squashed root must pass.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    /// Look a name up in `dir` (search permission).
    Lookup {
        dir: Ino,
    },
    /// `open(2)` of `ino` with these flags.
    Open {
        ino: Ino,
        flags: i32,
    },
    /// List a directory.
    List {
        dir: Ino,
    },
    /// Add a name to `dir`: mkdir, symlink, the new name of a hard link.
    AddName {
        dir: Ino,
    },
    /// `mknod` in `dir` with this `mode` (its type bits say what it makes).
    MakeNode {
        dir: Ino,
        mode: u32,
    },
    /// `create`: adds `name` to `dir`, or opens it with `flags` if it exists by then.
    Create {
        dir: Ino,
        name: &'a OsStr,
        flags: i32,
    },
    /// Remove `name` from `dir` (unlink, rmdir).
    RemoveName {
        dir: Ino,
        name: &'a OsStr,
    },
    /// Move `name` from `dir` to `new_name` in `new_dir`.
    Rename {
        dir: Ino,
        name: &'a OsStr,
        new_dir: Ino,
        new_name: &'a OsStr,
    },
    /// `setattr`; `via_handle` when it comes through an open file (`ftruncate`), whose open
    /// already checked write permission.
    SetAttr {
        ino: Ino,
        changes: &'a AttrChanges,
        via_handle: bool,
    },
    ReadXattr {
        ino: Ino,
    },
    WriteXattr {
        ino: Ino,
    },
}

/// The attributes of an inode the kernel named (gone: a stale handle, see
/// `FsCore::getattr`).
async fn attr_of(backend: &dyn FsBackend, ino: Ino) -> Result<FsAttr, FsError> {
    backend.getattr(ino).await.map_err(super::inode_gone)
}

const READ: u32 = 4;
const WRITE: u32 = 2;
const SEARCH: u32 = 1;

/// Whether `uid`/`gid` (no supplementary groups, no privileges) has all `want` bits of
/// `attr`'s mode: the owner's bits if it owns the file, else the group's if its group
/// matches, else the others'.
pub fn permits(attr: &FsAttr, uid: u32, gid: u32, want: u32) -> bool {
    let shift = if uid == attr.uid {
        6
    } else if gid == attr.gid {
        3
    } else {
        0
    };
    (attr.mode >> shift) & want == want
}

/// The mode bits an `open(2)` with `flags` needs.
fn open_wants(flags: i32) -> u32 {
    let mut want = match flags & libc::O_ACCMODE {
        libc::O_WRONLY => WRITE,
        libc::O_RDWR => READ | WRITE,
        _ => READ,
    };
    if flags & libc::O_TRUNC != 0 {
        want |= WRITE;
    }
    want
}

impl RootSquash {
    fn need(&self, attr: &FsAttr, want: u32) -> Result<(), FsError> {
        if permits(attr, self.uid, self.gid, want) {
            Ok(())
        } else {
            Err(FsError::PermissionDenied)
        }
    }

    fn owns(&self, attr: &FsAttr) -> bool {
        attr.uid == self.uid
    }

    /// Write and search on `dir`, and, if `dir` is sticky, ownership of `dir` or `victim`.
    fn may_remove(&self, dir: &FsAttr, victim: &FsAttr) -> Result<(), FsError> {
        self.need(dir, WRITE | SEARCH)?;
        if dir.mode & 0o1000 != 0 && !self.owns(dir) && !self.owns(victim) {
            return Err(FsError::NotPermitted);
        }
        Ok(())
    }

    /// The rules of `chmod`, `chown`, `truncate` and `utimes` for an unprivileged caller.
    fn may_set(
        &self,
        attr: &FsAttr,
        changes: &AttrChanges,
        via_handle: bool,
    ) -> Result<(), FsError> {
        if changes.uid.is_some_and(|u| u != attr.uid) {
            return Err(FsError::NotPermitted);
        }
        if let Some(g) = changes.gid {
            if g != attr.gid && !(self.owns(attr) && g == self.gid) {
                return Err(FsError::NotPermitted);
            }
        }
        if changes.mode.is_some() && !self.owns(attr) {
            return Err(FsError::NotPermitted);
        }
        if changes.size.is_some() && !via_handle {
            self.need(attr, WRITE)?;
        }
        for time in [changes.atime, changes.mtime].into_iter().flatten() {
            match time {
                TimeSet::AtNs(_) if !self.owns(attr) => return Err(FsError::NotPermitted),
                TimeSet::Now if !self.owns(attr) => self.need(attr, WRITE)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the squashed root may do `access`; reads the attributes it needs.
    pub async fn check(&self, backend: &dyn FsBackend, access: Access<'_>) -> Result<(), FsError> {
        match access {
            Access::Lookup { dir } => self.need(&attr_of(backend, dir).await?, SEARCH),
            Access::Open { ino, flags } => {
                self.need(&attr_of(backend, ino).await?, open_wants(flags))
            }
            Access::List { dir } => self.need(&attr_of(backend, dir).await?, READ),
            Access::AddName { dir } => self.need(&attr_of(backend, dir).await?, WRITE | SEARCH),
            Access::MakeNode { dir, mode } => {
                // Device nodes take CAP_MKNOD, which an unprivileged user lacks.
                if matches!(mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) {
                    return Err(FsError::NotPermitted);
                }
                self.need(&attr_of(backend, dir).await?, WRITE | SEARCH)
            }
            Access::Create { dir, name, flags } => match backend.lookup(dir, name).await {
                Ok(existing) => self.need(&existing, open_wants(flags)),
                Err(FsError::NotFound) => self.need(&attr_of(backend, dir).await?, WRITE | SEARCH),
                Err(e) => Err(e),
            },
            Access::RemoveName { dir, name } => {
                let victim = backend.lookup(dir, name).await?;
                self.may_remove(&attr_of(backend, dir).await?, &victim)
            }
            Access::Rename {
                dir,
                name,
                new_dir,
                new_name,
            } => {
                let moved = backend.lookup(dir, name).await?;
                self.may_remove(&attr_of(backend, dir).await?, &moved)?;
                let target_dir = attr_of(backend, new_dir).await?;
                self.need(&target_dir, WRITE | SEARCH)?;
                match backend.lookup(new_dir, new_name).await {
                    Ok(replaced) => self.may_remove(&target_dir, &replaced)?,
                    Err(FsError::NotFound) => {}
                    Err(e) => return Err(e),
                }
                // A directory moved elsewhere has its `..` rewritten.
                if moved.kind == FileType::Dir && dir != new_dir {
                    self.need(&moved, WRITE)?;
                }
                Ok(())
            }
            Access::SetAttr {
                ino,
                changes,
                via_handle,
            } => self.may_set(&attr_of(backend, ino).await?, changes, via_handle),
            Access::ReadXattr { ino } => self.need(&attr_of(backend, ino).await?, READ),
            Access::WriteXattr { ino } => self.need(&attr_of(backend, ino).await?, WRITE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(mode: u32, uid: u32, gid: u32) -> FsAttr {
        FsAttr {
            ino: 7,
            kind: FileType::File,
            size: 0,
            allocated: 0,
            mode,
            uid,
            gid,
            nlink: 1,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            generation: 1,
            rdev: 0,
        }
    }

    const ANON: RootSquash = RootSquash { uid: 9, gid: 9 };

    #[test]
    fn owner_group_and_other_bits_are_chosen_in_that_order() {
        // Owner bits apply to the owner even when the other bits would allow more.
        assert!(!permits(&attr(0o007, 9, 1), 9, 1, READ));
        assert!(permits(&attr(0o400, 9, 1), 9, 1, READ));
        assert!(permits(&attr(0o040, 1, 9), 9, 9, READ));
        assert!(!permits(&attr(0o004, 1, 9), 9, 9, READ));
        assert!(permits(&attr(0o006, 1, 1), 9, 9, READ | WRITE));
        assert!(!permits(&attr(0o004, 1, 1), 9, 9, READ | WRITE));
    }

    #[test]
    fn open_needs_the_bits_of_its_access_mode_and_truncation() {
        assert_eq!(open_wants(libc::O_RDONLY), READ);
        assert_eq!(open_wants(libc::O_WRONLY), WRITE);
        assert_eq!(open_wants(libc::O_RDWR | libc::O_APPEND), READ | WRITE);
        assert_eq!(open_wants(libc::O_RDONLY | libc::O_TRUNC), READ | WRITE);
    }

    #[test]
    fn sticky_directories_keep_others_files() {
        let sticky = attr(0o1777, 1, 1);
        assert!(matches!(
            ANON.may_remove(&sticky, &attr(0o644, 2, 2)),
            Err(FsError::NotPermitted)
        ));
        assert!(matches!(
            ANON.may_remove(&sticky, &attr(0o644, 9, 9)),
            Ok(())
        ));
        assert!(matches!(
            ANON.may_remove(&attr(0o777, 1, 1), &attr(0o600, 2, 2)),
            Ok(())
        ));
        assert!(matches!(
            ANON.may_remove(&attr(0o755, 1, 1), &attr(0o600, 9, 9)),
            Err(FsError::PermissionDenied)
        ));
    }

    #[test]
    fn only_owners_change_modes_and_nobody_gives_files_away() {
        let theirs = attr(0o666, 1, 1);
        let mine = attr(0o600, 9, 9);
        let chmod = AttrChanges {
            mode: Some(0o777),
            ..AttrChanges::default()
        };
        assert!(matches!(
            ANON.may_set(&theirs, &chmod, false),
            Err(FsError::NotPermitted)
        ));
        assert!(matches!(ANON.may_set(&mine, &chmod, false), Ok(())));
        let chown = AttrChanges {
            uid: Some(1),
            ..AttrChanges::default()
        };
        assert!(matches!(
            ANON.may_set(&mine, &chown, false),
            Err(FsError::NotPermitted)
        ));
        let chgrp_own = AttrChanges {
            gid: Some(9),
            ..AttrChanges::default()
        };
        assert!(matches!(
            ANON.may_set(&attr(0o600, 9, 1), &chgrp_own, false),
            Ok(())
        ));
        let truncate = AttrChanges {
            size: Some(0),
            ..AttrChanges::default()
        };
        assert!(matches!(
            ANON.may_set(&attr(0o644, 1, 1), &truncate, false),
            Err(FsError::PermissionDenied)
        ));
        assert!(matches!(ANON.may_set(&theirs, &truncate, false), Ok(())));
        let touch = AttrChanges {
            mtime: Some(TimeSet::Now),
            ..AttrChanges::default()
        };
        assert!(matches!(ANON.may_set(&theirs, &touch, false), Ok(())));
        let backdate = AttrChanges {
            mtime: Some(TimeSet::AtNs(0)),
            ..AttrChanges::default()
        };
        assert!(matches!(
            ANON.may_set(&theirs, &backdate, false),
            Err(FsError::NotPermitted)
        ));
    }
}
