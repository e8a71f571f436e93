//! A file's content and extended attributes for mounts: writes of extents (with the
//! reference counts of the chunks they point into), holes punched in them, clones sharing
//! them, compaction of a fragmented file, and xattrs. Each checks everything before it modifies anything. Pure: no IO.

use cairn_common::chunk::ChunkMeta;
use cairn_common::fs::{
    FileExtent, FsErrorKind, Ino, NewNode, XattrMode, MAX_EXTENTS_PER_WRITE, MAX_FILE_SIZE,
    ROOT_INO, XATTRS_PER_INODE_MAX, XATTR_NAME_MAX, XATTR_VALUE_MAX,
};
use cairn_common::ChunkId;

use super::extents::{self, RefChange};
use super::fs::{fail, FsRes};
use super::{Extent, InodeKind, Namespace};

impl Namespace {
    pub(super) fn fs_write(
        &mut self,
        ino: Ino,
        new_extents: Vec<FileExtent>,
        chunks: Vec<(ChunkId, ChunkMeta)>,
        size_at_least: u64,
        now: u64,
    ) -> FsRes<()> {
        let InodeKind::File { .. } = self.inode(ino)?.kind else {
            return fail(FsErrorKind::IsDir, "write to something not a regular file");
        };
        // A retry of a write that already applied (its chunks are known or were already
        // replaced and released): answer as the first time.
        if let Some((first, _)) = chunks.first() {
            if self.chunks.contains_key(first) || self.retired.contains_key(first) {
                return Ok(());
            }
        }
        if new_extents.len() > MAX_EXTENTS_PER_WRITE {
            return fail(
                FsErrorKind::InvalidArgument,
                "too many extents in one write",
            );
        }
        let mut sizes = std::collections::BTreeMap::new();
        for (id, chunk) in &chunks {
            if let Some(reason) = self.new_chunk_problem(id, chunk) {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!("chunk {id}: {reason}"),
                );
            }
            if sizes.insert(*id, chunk.size).is_some() {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!("chunk {id} listed twice"),
                );
            }
        }
        let mut end = size_at_least;
        for e in &new_extents {
            let Some(&chunk_size) = sizes.get(&e.chunk) else {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!(
                        "extent names chunk {} that the write does not carry",
                        e.chunk
                    ),
                );
            };
            let file_end = e.offset.checked_add(e.len).filter(|&x| x <= MAX_FILE_SIZE);
            let chunk_end = e
                .chunk_offset
                .checked_add(e.len)
                .filter(|&x| x <= chunk_size);
            match (file_end, chunk_end) {
                (Some(file_end), Some(_)) if e.len > 0 => end = end.max(file_end),
                _ => return fail(FsErrorKind::InvalidArgument, "extent out of range"),
            }
        }
        if end > MAX_FILE_SIZE {
            return fail(FsErrorKind::FileTooBig, format!("size {end}"));
        }
        for (id, chunk) in chunks {
            self.put_chunk(id, chunk);
        }
        let generation = self.bump_generation();
        let had_inline = self.has_inline(ino);
        let mut refs = Vec::new();
        let inode = self.inode_mut(ino)?;
        let InodeKind::File { size, extents, .. } = &mut inode.kind else {
            unreachable!("checked above");
        };
        for e in &new_extents {
            extents::overlay(
                extents,
                Extent {
                    offset: e.offset,
                    len: e.len,
                    chunk: e.chunk,
                    chunk_offset: e.chunk_offset,
                },
                &mut refs,
            );
        }
        *size = (*size).max(end);
        inode.mtime_ns = now;
        inode.ctime_ns = now;
        inode.generation = generation;
        let covering = had_inline.then(|| extents.clone());
        self.apply_refs(refs);
        if let Some(covering) = covering {
            self.drop_covered_inline(ino, &covering);
        }
        // A chunk the write carried but no extent kept (overwritten within the same
        // write) is released at once.
        let unreferenced: Vec<ChunkId> = sizes
            .keys()
            .filter(|id| !self.chunk_refs.contains_key(id))
            .copied()
            .collect();
        for id in unreferenced {
            self.release_chunk(id);
        }
        Ok(())
    }

    pub(super) fn fs_punch_hole(&mut self, ino: Ino, offset: u64, len: u64, now: u64) -> FsRes<()> {
        let InodeKind::File { size, .. } = self.inode(ino)?.kind else {
            return fail(
                FsErrorKind::IsDir,
                "punch a hole in something not a regular file",
            );
        };
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok(());
        }
        let mut inline = self.inline_of(ino);
        let inline_changed = (offset as usize) < inline.len();
        if inline_changed {
            let to = (end as usize).min(inline.len());
            if to == inline.len() {
                inline.truncate(offset as usize);
            } else {
                inline[offset as usize..to].fill(0);
            }
        }
        let generation = self.bump_generation();
        let mut refs = Vec::new();
        let inode = self.inode_mut(ino)?;
        let InodeKind::File { extents, .. } = &mut inode.kind else {
            unreachable!("checked above");
        };
        extents::punch(extents, offset, end, &mut refs);
        inode.mtime_ns = now;
        inode.ctime_ns = now;
        inode.generation = generation;
        self.apply_refs(refs);
        if inline_changed {
            self.set_inline(ino, inline);
        }
        Ok(())
    }

    /// `CloneFile`: checks the source, creates the new file, then shares the content.
    pub(super) fn fs_clone_file(
        &mut self,
        src: Ino,
        parent: Ino,
        name: &str,
        mode: u32,
        owner: (u32, u32),
        now: u64,
    ) -> FsRes<Ino> {
        let (size, extents, attrs) = match &self.inode(src)?.kind {
            InodeKind::File {
                size,
                extents,
                attrs,
            } => (*size, extents.clone(), attrs.clone()),
            InodeKind::Dir { .. } => return fail(FsErrorKind::IsDir, "clone of a directory"),
            _ => return fail(FsErrorKind::InvalidArgument, "clone of a non-regular file"),
        };
        if parent == ROOT_INO {
            return fail(FsErrorKind::NotPermitted, "only buckets live at the root");
        }
        let inline = self.inline_of(src);
        let ino = self.fs_create(parent, name, NewNode::File, mode, owner, now)?;
        let refs: Vec<RefChange> = extents.iter().map(|e| RefChange::Take(e.chunk)).collect();
        let inode = self.inode_mut(ino)?;
        inode.kind = InodeKind::File {
            size,
            extents,
            attrs,
        };
        self.apply_refs(refs);
        if !inline.is_empty() {
            self.set_inline(ino, inline);
        }
        Ok(ino)
    }

    pub(super) fn fs_compact(
        &mut self,
        ino: Ino,
        generation: u64,
        new_extents: Vec<FileExtent>,
        chunks: Vec<(ChunkId, ChunkMeta)>,
    ) -> FsRes<()> {
        for (id, chunk) in &chunks {
            if let Some(reason) = self.new_chunk_problem(id, chunk) {
                return fail(
                    FsErrorKind::InvalidArgument,
                    format!("chunk {id}: {reason}"),
                );
            }
        }
        let held = self.holds.get(&ino).is_some_and(|h| !h.is_empty());
        let inode = self.inode(ino)?;
        let same_runs = match &inode.kind {
            InodeKind::File { extents, .. } => {
                // The new extents must cover exactly the bytes the old ones did (in
                // order, without overlaps).
                let covered = |runs: &mut dyn Iterator<Item = (u64, u64)>| {
                    let mut merged: Vec<(u64, u64)> = Vec::new();
                    for (start, end) in runs {
                        match merged.last_mut() {
                            Some(last) if start < last.1 => return None,
                            Some(last) if last.1 == start => last.1 = end,
                            _ => merged.push((start, end)),
                        }
                    }
                    Some(merged)
                };
                let sizes: std::collections::BTreeMap<ChunkId, u64> =
                    chunks.iter().map(|(id, c)| (*id, c.size)).collect();
                let fits = new_extents.iter().all(|e| {
                    e.len > 0
                        && sizes.get(&e.chunk).is_some_and(|&size| {
                            e.chunk_offset
                                .checked_add(e.len)
                                .is_some_and(|end| end <= size)
                        })
                });
                let old = covered(&mut extents.iter().map(|e| (e.offset, e.end())));
                fits && old.is_some()
                    && old
                        == covered(
                            &mut new_extents
                                .iter()
                                .map(|e| (e.offset, e.offset.saturating_add(e.len))),
                        )
            }
            _ => false,
        };
        if held || inode.generation != generation || !same_runs {
            return fail(
                FsErrorKind::Changed,
                "file changed, open or not the same runs",
            );
        }
        for (id, chunk) in chunks {
            self.put_chunk(id, chunk);
        }
        let mut refs = Vec::new();
        let inode = self.inode_mut(ino)?;
        let InodeKind::File { extents, .. } = &mut inode.kind else {
            unreachable!("checked above");
        };
        for old in extents.drain(..) {
            refs.push(RefChange::Drop(old.chunk));
        }
        for e in &new_extents {
            refs.push(RefChange::Take(e.chunk));
            extents.push(Extent {
                offset: e.offset,
                len: e.len,
                chunk: e.chunk,
                chunk_offset: e.chunk_offset,
            });
        }
        extents.sort_by_key(|e| e.offset);
        self.apply_refs(refs);
        Ok(())
    }

    /// Applies reference changes: takes first, so a chunk that only moved is not released.
    pub(super) fn apply_refs(&mut self, refs: Vec<RefChange>) {
        for r in &refs {
            if let RefChange::Take(c) = r {
                self.ref_chunk(*c);
            }
        }
        for r in refs {
            if let RefChange::Drop(c) = r {
                self.unref_chunk(c);
            }
        }
    }

    pub(super) fn fs_setxattr(
        &mut self,
        ino: Ino,
        name: String,
        value: Vec<u8>,
        mode: XattrMode,
        now: u64,
    ) -> FsRes<()> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return fail(FsErrorKind::InvalidArgument, "bad attribute name length");
        }
        if value.len() > XATTR_VALUE_MAX {
            return fail(
                FsErrorKind::TooBig,
                format!("value of {} bytes", value.len()),
            );
        }
        let inode = self.inode_mut(ino)?;
        let exists = inode.xattrs.contains_key(&name);
        match mode {
            XattrMode::Create if exists => {
                return fail(FsErrorKind::Exists, format!("attribute {name:?} exists"))
            }
            XattrMode::Replace if !exists => {
                return fail(FsErrorKind::NoData, format!("no attribute {name:?}"))
            }
            _ => {}
        }
        if !exists && inode.xattrs.len() >= XATTRS_PER_INODE_MAX {
            return fail(FsErrorKind::NoSpace, "too many attributes on one inode");
        }
        inode.xattrs.insert(name, value);
        inode.ctime_ns = now;
        Ok(())
    }
}
