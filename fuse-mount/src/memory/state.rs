//! The memory backend's inode table and the rules that keep it consistent: link counts,
//! directory parent pointers, setgid inheritance, rename replacement, freeing an inode when
//! its last name and last handle are gone. Synchronous; `memory.rs` wraps it in a mutex.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_common::locks::LockTable;

use super::sparse::{SparseData, PAGE};
use super::MemoryOptions;
use crate::backend::*;

/// The wall clock in nanoseconds since the epoch (what attribute times are kept in).
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(super) enum Content {
    File(SparseData),
    Dir {
        entries: BTreeMap<OsString, Ino>,
        parent: Ino,
    },
    Symlink(OsString),
    /// A FIFO, socket or device node: a type and a device number, no content.
    Special(Special),
}

pub(super) struct Inode {
    /// Everything but `size`, `allocated`, `kind` and `rdev`, which `attr()` derives from
    /// `content`.
    pub(super) meta: FsAttr,
    pub(super) content: Content,
    pub(super) xattrs: BTreeMap<OsString, Vec<u8>>,
    pub(super) open_handles: u32,
    pub(super) locks: LockTable<LockOwner>,
}

impl Inode {
    /// The file's bytes changed: new modification and change times, a new generation.
    pub(super) fn content_changed(&mut self) {
        let t = now();
        self.meta.mtime_ns = t;
        self.meta.ctime_ns = t;
        self.meta.generation += 1;
    }

    pub(super) fn attr(&self) -> FsAttr {
        let mut a = self.meta;
        match &self.content {
            Content::File(d) => {
                a.kind = FileType::File;
                a.size = d.size();
                a.allocated = d.allocated_pages() * PAGE;
            }
            Content::Dir { .. } => {
                a.kind = FileType::Dir;
                a.size = PAGE;
                a.allocated = PAGE;
            }
            Content::Symlink(t) => {
                a.kind = FileType::Symlink;
                a.size = t.len() as u64;
                a.allocated = 0;
            }
            Content::Special(special) => {
                a.kind = special.file_type();
                a.rdev = special.rdev();
                a.size = 0;
                a.allocated = 0;
            }
        }
        a
    }
}

pub(super) struct State {
    pub(super) inodes: HashMap<Ino, Inode>,
    pub(super) handles: HashMap<HandleId, (Ino, AccessMode)>,
    pub(super) next_ino: Ino,
    pub(super) next_handle: u64,
    pub(super) used_pages: u64,
    pub(super) opts: MemoryOptions,
}

impl State {
    pub(super) fn new(opts: MemoryOptions) -> Self {
        let t = now();
        let root = Inode {
            meta: FsAttr {
                ino: ROOT_INO,
                kind: FileType::Dir,
                size: 0,
                allocated: 0,
                mode: opts.root_mode & 0o7777,
                uid: opts.root_uid,
                gid: opts.root_gid,
                nlink: 2,
                atime_ns: t,
                mtime_ns: t,
                ctime_ns: t,
                generation: 1,
                rdev: 0,
            },
            content: Content::Dir {
                entries: BTreeMap::new(),
                parent: ROOT_INO,
            },
            xattrs: BTreeMap::new(),
            open_handles: 0,
            locks: LockTable::default(),
        };
        State {
            inodes: HashMap::from([(ROOT_INO, root)]),
            handles: HashMap::new(),
            next_ino: ROOT_INO + 1,
            next_handle: 1,
            used_pages: 0,
            opts,
        }
    }

    pub(super) fn inode(&self, ino: Ino) -> Result<&Inode, FsError> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, FsError> {
        self.inodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn entries(&self, dir: Ino) -> Result<&BTreeMap<OsString, Ino>, FsError> {
        match &self.inode(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            _ => Err(FsError::NotDir),
        }
    }

    pub(super) fn entries_mut(
        &mut self,
        dir: Ino,
    ) -> Result<&mut BTreeMap<OsString, Ino>, FsError> {
        match &mut self.inode_mut(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            _ => Err(FsError::NotDir),
        }
    }

    pub(super) fn child(&self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        check_name(name)?;
        self.entries(parent)?
            .get(name)
            .copied()
            .ok_or(FsError::NotFound)
    }

    pub(super) fn is_dir(&self, ino: Ino) -> bool {
        matches!(
            self.inodes.get(&ino).map(|i| &i.content),
            Some(Content::Dir { .. })
        )
    }

    /// Marks `dir` as changed (an entry was added or removed).
    pub(super) fn touch_dir(&mut self, dir: Ino) {
        if let Some(d) = self.inodes.get_mut(&dir) {
            let t = now();
            d.meta.mtime_ns = t;
            d.meta.ctime_ns = t;
        }
    }

    pub(super) fn add_nlink(&mut self, ino: Ino, delta: i32) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.meta.nlink = i.meta.nlink.saturating_add_signed(delta);
            i.meta.ctime_ns = now();
        }
    }

    /// Inserts a new inode under `parent/name` (which the caller checked is free).
    pub(super) fn new_inode(
        &mut self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
        content: Content,
    ) -> Result<Ino, FsError> {
        if self.inodes.len() as u64 >= self.opts.max_inodes {
            return Err(FsError::NoSpace);
        }
        let p = self.inode(parent)?.meta;
        let mut mode = mode & 0o7777;
        let gid = if p.mode & libc::S_ISGID != 0 {
            if matches!(content, Content::Dir { .. }) {
                mode |= libc::S_ISGID;
            }
            p.gid
        } else {
            caller.gid
        };
        let is_dir = matches!(content, Content::Dir { .. });
        let ino = self.next_ino;
        self.next_ino += 1;
        let t = now();
        let meta = FsAttr {
            ino,
            kind: FileType::File,
            size: 0,
            allocated: 0,
            mode,
            uid: caller.uid,
            gid,
            nlink: if is_dir { 2 } else { 1 },
            atime_ns: t,
            mtime_ns: t,
            ctime_ns: t,
            generation: 1,
            rdev: 0,
        };
        self.inodes.insert(
            ino,
            Inode {
                meta,
                content,
                xattrs: BTreeMap::new(),
                open_handles: 0,
                locks: LockTable::default(),
            },
        );
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        if is_dir {
            self.add_nlink(parent, 1);
        }
        self.touch_dir(parent);
        Ok(ino)
    }

    /// Checks that `parent/name` can be created.
    pub(super) fn check_free(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        check_name(name)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        Ok(())
    }

    pub(super) fn open_handle(
        &mut self,
        ino: Ino,
        access: AccessMode,
    ) -> Result<HandleId, FsError> {
        let inode = self.inode_mut(ino)?;
        match inode.content {
            Content::File(_) => {}
            Content::Dir { .. } => return Err(FsError::IsDir),
            Content::Symlink(_) | Content::Special(_) => return Err(FsError::InvalidArgument),
        }
        inode.open_handles += 1;
        let h = HandleId(self.next_handle);
        self.next_handle += 1;
        self.handles.insert(h, (ino, access));
        Ok(h)
    }

    pub(super) fn check_handle(&self, ino: Ino, h: HandleId, write: bool) -> Result<(), FsError> {
        match self.handles.get(&h) {
            Some(&(i, access)) if i == ino => {
                let ok = match access {
                    AccessMode::ReadWrite => true,
                    AccessMode::Read => !write,
                    AccessMode::Write => write,
                };
                if ok {
                    Ok(())
                } else {
                    Err(FsError::BadHandle)
                }
            }
            _ => Err(FsError::BadHandle),
        }
    }

    /// Frees `ino` if no name and no handle refers to it.
    pub(super) fn maybe_free(&mut self, ino: Ino) {
        let gone = self
            .inodes
            .get(&ino)
            .is_some_and(|i| i.meta.nlink == 0 && i.open_handles == 0);
        if gone {
            if let Some(Inode {
                content: Content::File(d),
                ..
            }) = self.inodes.remove(&ino)
            {
                self.used_pages -= d.allocated_pages();
            }
        }
    }

    /// True if `ino` is `ancestor` or lies below it.
    pub(super) fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.inodes.get(&ino).map(|i| &i.content) {
                Some(Content::Dir { parent, .. }) if *parent != ino => ino = *parent,
                _ => return false,
            }
        }
    }

    pub(super) fn set_parent(&mut self, dir: Ino, new_parent: Ino) {
        if let Some(Inode {
            content: Content::Dir { parent, .. },
            ..
        }) = self.inodes.get_mut(&dir)
        {
            *parent = new_parent;
        }
    }

    pub(super) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), FsError> {
        check_name(newname)?;
        let src = self.child(parent, name)?;
        let dst = self.entries(newparent)?.get(newname).copied();
        let src_dir = self.is_dir(src);
        if flags.exchange {
            let dst = dst.ok_or(FsError::NotFound)?;
            let dst_dir = self.is_dir(dst);
            if (src_dir && self.is_within(newparent, src))
                || (dst_dir && self.is_within(parent, dst))
            {
                return Err(FsError::InvalidArgument);
            }
            self.entries_mut(parent)?.insert(name.to_owned(), dst);
            self.entries_mut(newparent)?.insert(newname.to_owned(), src);
            if parent != newparent && src_dir != dst_dir {
                let (gains, loses) = if src_dir {
                    (newparent, parent)
                } else {
                    (parent, newparent)
                };
                self.add_nlink(gains, 1);
                self.add_nlink(loses, -1);
            }
            if src_dir {
                self.set_parent(src, newparent);
            }
            if dst_dir {
                self.set_parent(dst, parent);
            }
            self.add_nlink(src, 0);
            self.add_nlink(dst, 0);
            self.touch_dir(parent);
            self.touch_dir(newparent);
            return Ok(());
        }
        if flags.noreplace && dst.is_some() {
            return Err(FsError::Exists);
        }
        if dst == Some(src) {
            return Ok(());
        }
        if src_dir && self.is_within(newparent, src) {
            return Err(FsError::InvalidArgument);
        }
        if let Some(dst) = dst {
            match (src_dir, self.is_dir(dst)) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !self.entries(dst)?.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
            if src_dir {
                self.add_nlink(newparent, -1);
                self.inode_mut(dst)?.meta.nlink = 0;
            } else {
                self.add_nlink(dst, -1);
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(newparent)?.insert(newname.to_owned(), src);
        if let Some(dst) = dst {
            self.maybe_free(dst);
        }
        if src_dir && parent != newparent {
            self.add_nlink(parent, -1);
            self.add_nlink(newparent, 1);
            self.set_parent(src, newparent);
        }
        self.add_nlink(src, 0);
        self.touch_dir(parent);
        self.touch_dir(newparent);
        Ok(())
    }
}
