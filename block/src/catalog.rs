//! Where block volumes live in the namespace, and their life cycle: create, list, resize
//! and remove.
//!
//! A volume named `NAME` is the sparse regular file `volume` in the bucket `vol-NAME`
//! (ARCHITECTURE.md, "Block volumes", says why): the file's size is the volume's size,
//! unwritten ranges are holes (they read as zeros and cost nothing), the bucket's
//! redundancy is the volume's, and the bucket's grants say who may serve or read it. A
//! volume is attached while a server holds the exclusive lock on its file
//! ([`crate::volume::Volume::attach`]); resizing or removing an attached volume is
//! refused.
//!
//! A snapshot `NAME@SNAP` is the file `snapshots/SNAP` in the same bucket: a clone of the
//! volume's file (`FsChange::CloneFile`, one commit sharing every chunk), so it holds
//! every write flushed before it was taken and costs nothing until the volume is
//! overwritten. A clone of a snapshot is a new volume made the same way in its own
//! bucket. A chunk is freed when the last volume or snapshot pointing into it is gone.
//! Volumes, snapshots and their directories are made by, and belong to, root.

use std::ffi::OsStr;
use std::sync::Arc;

use cairn_common::fs::{FileType, Ino, MAX_FILE_SIZE, ROOT_INO};
use cairn_fuse_mount::backend::{
    AccessMode, AttrChanges, Caller, FileLock, FsBackend, FsError, LockKind, LockOwner,
};

/// Buckets holding a volume are named this, then the volume's name.
pub const BUCKET_PREFIX: &str = "vol-";
/// The file in a volume's bucket that holds the volume's bytes.
pub const VOLUME_FILE: &str = "volume";
/// The owner of a server's exclusive lock on a volume's file (the cluster qualifies
/// owners with the session, so one number serves every server).
pub const SERVER_LOCK_OWNER: LockOwner = LockOwner(0x766f_6c75_6d65);
/// The directory of a volume's bucket holding its snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Volume sizes are whole multiples of this (a sector).
pub const SECTOR: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("volume name {0:?} is invalid: use 1-{max} characters of a-z, 0-9 and '-', starting and ending with a letter or digit", max = 63 - BUCKET_PREFIX.len())]
    BadName(String),
    #[error("volume size {0} is invalid: it must be a positive multiple of {SECTOR} bytes, at most {MAX_FILE_SIZE}")]
    BadSize(u64),
    #[error("volume {0:?} does not exist")]
    NotFound(String),
    #[error("snapshot {0:?} does not exist")]
    SnapshotNotFound(String),
    #[error("snapshot {0:?} already exists")]
    SnapshotExists(String),
    #[error("volume {name:?} has {count} snapshots; remove them first (cairn volume snapshot-rm {name}@SNAP)")]
    HasSnapshots { name: String, count: usize },
    #[error("volume {0:?} already exists")]
    Exists(String),
    #[error("volume {0:?} is attached (a server holds it); stop that server first, or wait for its lease to expire if its host is gone")]
    Attached(String),
    #[error("volume {name:?} would shrink from {from} to {to} bytes, losing its data past {to}; pass --allow-shrink to do so")]
    Shrink { name: String, from: u64, to: u64 },
    #[error("volume {name:?}: {source}")]
    Fs {
        name: String,
        #[source]
        source: FsError,
    },
}

/// One volume, as `volume ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub size: u64,
    /// Bytes stored for it (before redundancy): written ranges, not holes.
    pub allocated: u64,
    /// A server holds it now.
    pub attached: bool,
    /// Its snapshots, by name.
    pub snapshots: Vec<String>,
}

/// Checks a volume's name: it starts with a letter or digit, and its bucket's name is a
/// valid bucket name.
pub fn check_name(name: &str) -> Result<(), CatalogError> {
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !starts_well || cairn_common::names::validate_bucket(&bucket_of(name)).is_err() {
        return Err(CatalogError::BadName(name.to_owned()));
    }
    Ok(())
}

/// The bucket holding volume `name`.
pub fn bucket_of(name: &str) -> String {
    format!("{BUCKET_PREFIX}{name}")
}

fn check_size(size: u64) -> Result<(), CatalogError> {
    if size == 0 || !size.is_multiple_of(SECTOR) || size > MAX_FILE_SIZE {
        return Err(CatalogError::BadSize(size));
    }
    Ok(())
}

/// The volumes of one cluster, through a filesystem backend (a cluster backend acting as
/// root; its session is used for the locks that show attachment).
pub struct Catalog {
    fs: Arc<dyn FsBackend>,
}

impl Catalog {
    pub fn new(fs: Arc<dyn FsBackend>) -> Catalog {
        Catalog { fs }
    }

    fn fs_error(name: &str) -> impl Fn(FsError) -> CatalogError + '_ {
        move |source| match source {
            FsError::NotFound => CatalogError::NotFound(name.to_owned()),
            source => CatalogError::Fs {
                name: name.to_owned(),
                source,
            },
        }
    }

    /// The inodes of volume `name`'s bucket and of its file.
    async fn locate(&self, name: &str) -> Result<(Ino, Ino), CatalogError> {
        check_name(name)?;
        let bucket = self
            .fs
            .lookup(ROOT_INO, OsStr::new(&bucket_of(name)))
            .await
            .map_err(Self::fs_error(name))?;
        let file = self
            .fs
            .lookup(bucket.ino, OsStr::new(VOLUME_FILE))
            .await
            .map_err(Self::fs_error(name))?;
        if file.kind != FileType::File {
            return Err(CatalogError::NotFound(name.to_owned()));
        }
        Ok((bucket.ino, file.ino))
    }

    /// The inode of volume `name`'s file.
    pub async fn find(&self, name: &str) -> Result<Ino, CatalogError> {
        Ok(self.locate(name).await?.1)
    }

    /// The UTF-8 names in directory `dir`, read page by page (`name` is the volume the
    /// errors are about).
    async fn names_in(&self, dir: Ino, name: &str) -> Result<Vec<String>, CatalogError> {
        let mut names = Vec::new();
        let mut after: Option<std::ffi::OsString> = None;
        loop {
            let page = self
                .fs
                .readdir(dir, after.as_deref(), 1000)
                .await
                .map_err(Self::fs_error(name))?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            names.extend(
                page.into_iter()
                    .filter_map(|e| e.name.to_str().map(str::to_owned)),
            );
        }
        Ok(names)
    }

    /// Creates an empty (all zeros, nothing stored) volume of `size` bytes in its own
    /// bucket. The bucket must not exist yet; `make_bucket` makes it (with the volume's
    /// redundancy) before the file is created in it.
    pub async fn create<F, Fut, E>(
        &self,
        name: &str,
        size: u64,
        make_bucket: F,
    ) -> Result<(), CatalogError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        check_name(name)?;
        check_size(size)?;
        let dir = self.new_bucket(name, make_bucket).await?;
        let (file, handle) = match self
            .fs
            .create(
                dir,
                OsStr::new(VOLUME_FILE),
                0o600,
                Caller::ROOT,
                AccessMode::ReadWrite,
            )
            .await
        {
            Ok(created) => created,
            Err(FsError::Exists) => return Err(CatalogError::Exists(name.to_owned())),
            Err(e) => return Err(Self::fs_error(name)(e)),
        };
        let grown = self.fs.grow(file.ino, handle, size).await;
        let released = self.fs.release(file.ino, handle).await;
        grown.map_err(Self::fs_error(name))?;
        released.map_err(Self::fs_error(name))?;
        Ok(())
    }

    /// Makes volume `name`'s bucket with `make_bucket`; `Exists` if it is there already.
    async fn new_bucket<F, Fut, E>(&self, name: &str, make_bucket: F) -> Result<Ino, CatalogError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let bucket = bucket_of(name);
        match self.fs.lookup(ROOT_INO, OsStr::new(&bucket)).await {
            Ok(_) => return Err(CatalogError::Exists(name.to_owned())),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(Self::fs_error(name)(e)),
        }
        make_bucket(bucket.clone())
            .await
            .map_err(|e| CatalogError::Fs {
                name: name.to_owned(),
                source: FsError::Unavailable {
                    op: "create the volume's bucket",
                    source: Box::new(e),
                },
            })?;
        let dir = self
            .fs
            .lookup(ROOT_INO, OsStr::new(&bucket))
            .await
            .map_err(Self::fs_error(name))?;
        Ok(dir.ino)
    }

    /// Whether a server holds volume file `ino` (a lock of another owner or session
    /// conflicts with an exclusive one).
    async fn attached(&self, ino: Ino, name: &str) -> Result<bool, CatalogError> {
        let probe = FileLock {
            start: 0,
            end: MAX_FILE_SIZE,
            kind: LockKind::Write,
            pid: 0,
        };
        let holder = self
            .fs
            .getlk(ino, LockOwner(0), probe)
            .await
            .map_err(Self::fs_error(name))?;
        Ok(holder.is_some())
    }

    /// Every volume, by name.
    pub async fn list(&self) -> Result<Vec<VolumeInfo>, CatalogError> {
        let buckets = self.names_in(ROOT_INO, "*").await?;
        let mut volumes = Vec::new();
        for name in buckets.iter().filter_map(|b| b.strip_prefix(BUCKET_PREFIX)) {
            let (bucket, ino) = match self.locate(name).await {
                Ok(found) => found,
                // A bucket named like a volume's but holding none.
                Err(CatalogError::NotFound(_) | CatalogError::BadName(_)) => continue,
                Err(e) => return Err(e),
            };
            let attr = self.fs.getattr(ino).await.map_err(Self::fs_error(name))?;
            volumes.push(VolumeInfo {
                size: attr.size,
                allocated: attr.allocated,
                attached: self.attached(ino, name).await?,
                snapshots: self.snapshots_in(bucket, name).await?,
                name: name.to_owned(),
            });
        }
        Ok(volumes)
    }

    /// Sets the size of a detached volume: growing adds zeros; shrinking drops the data
    /// past the new end and needs `allow_shrink`.
    pub async fn resize(
        &self,
        name: &str,
        size: u64,
        allow_shrink: bool,
    ) -> Result<(), CatalogError> {
        check_size(size)?;
        let ino = self.find(name).await?;
        if self.attached(ino, name).await? {
            return Err(CatalogError::Attached(name.to_owned()));
        }
        let from = self
            .fs
            .getattr(ino)
            .await
            .map_err(Self::fs_error(name))?
            .size;
        if size < from && !allow_shrink {
            return Err(CatalogError::Shrink {
                name: name.to_owned(),
                from,
                to: size,
            });
        }
        let changes = AttrChanges {
            size: Some(size),
            ..AttrChanges::default()
        };
        self.fs
            .setattr(ino, changes)
            .await
            .map_err(Self::fs_error(name))?;
        Ok(())
    }

    /// Removes a detached volume and its bucket; its chunks are reclaimed in the
    /// background.
    pub async fn remove(&self, name: &str) -> Result<(), CatalogError> {
        let (bucket, ino) = self.locate(name).await?;
        if self.attached(ino, name).await? {
            return Err(CatalogError::Attached(name.to_owned()));
        }
        let snapshots = self.snapshots_in(bucket, name).await?;
        if !snapshots.is_empty() {
            return Err(CatalogError::HasSnapshots {
                name: name.to_owned(),
                count: snapshots.len(),
            });
        }
        match self.fs.rmdir(bucket, OsStr::new(SNAPSHOT_DIR)).await {
            Ok(()) | Err(FsError::NotFound) => {}
            Err(e) => return Err(Self::fs_error(name)(e)),
        }
        self.fs
            .unlink(bucket, OsStr::new(VOLUME_FILE))
            .await
            .map_err(Self::fs_error(name))?;
        self.fs
            .rmdir(ROOT_INO, OsStr::new(&bucket_of(name)))
            .await
            .map_err(Self::fs_error(name))?;
        Ok(())
    }

    /// The directory of snapshots in volume `name`'s bucket, if it has one.
    async fn snapshot_dir(&self, bucket: Ino, name: &str) -> Result<Option<Ino>, CatalogError> {
        match self.fs.lookup(bucket, OsStr::new(SNAPSHOT_DIR)).await {
            Ok(dir) => Ok(Some(dir.ino)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(Self::fs_error(name)(e)),
        }
    }

    /// The names of the snapshots in volume `name`'s bucket.
    async fn snapshots_in(&self, bucket: Ino, name: &str) -> Result<Vec<String>, CatalogError> {
        match self.snapshot_dir(bucket, name).await? {
            Some(dir) => self.names_in(dir, name).await,
            None => Ok(Vec::new()),
        }
    }

    /// The inodes of the snapshot directory and of snapshot `volume@snapshot`.
    async fn locate_snapshot(
        &self,
        volume: &str,
        snapshot: &str,
    ) -> Result<(Ino, Ino), CatalogError> {
        let full = format!("{volume}@{snapshot}");
        check_name(snapshot).map_err(|_| CatalogError::BadName(full.clone()))?;
        let (bucket, _) = self.locate(volume).await?;
        let dir = self
            .snapshot_dir(bucket, volume)
            .await?
            .ok_or_else(|| CatalogError::SnapshotNotFound(full.clone()))?;
        match self.fs.lookup(dir, OsStr::new(snapshot)).await {
            Ok(attr) if attr.kind == FileType::File => Ok((dir, attr.ino)),
            Ok(_) | Err(FsError::NotFound) => Err(CatalogError::SnapshotNotFound(full)),
            Err(e) => Err(Self::fs_error(volume)(e)),
        }
    }

    /// The inode of snapshot `volume@snapshot`.
    pub async fn find_snapshot(&self, volume: &str, snapshot: &str) -> Result<Ino, CatalogError> {
        Ok(self.locate_snapshot(volume, snapshot).await?.1)
    }

    /// Records volume `volume` as it is committed now (every write a server flushed) as
    /// `volume@snapshot`, in one commit that shares all its chunks.
    pub async fn snapshot(&self, volume: &str, snapshot: &str) -> Result<(), CatalogError> {
        let full = format!("{volume}@{snapshot}");
        check_name(snapshot).map_err(|_| CatalogError::BadName(full.clone()))?;
        let (bucket, ino) = self.locate(volume).await?;
        let dir = match self.snapshot_dir(bucket, volume).await? {
            Some(dir) => dir,
            None => match self
                .fs
                .mkdir(bucket, OsStr::new(SNAPSHOT_DIR), 0o700, Caller::ROOT)
                .await
            {
                Ok(dir) => dir.ino,
                // Another snapshot made it meanwhile.
                Err(FsError::Exists) => self
                    .snapshot_dir(bucket, volume)
                    .await?
                    .ok_or_else(|| CatalogError::NotFound(volume.to_owned()))?,
                Err(e) => return Err(Self::fs_error(volume)(e)),
            },
        };
        match self
            .fs
            .clone_file(ino, dir, OsStr::new(snapshot), 0o400, Caller::ROOT)
            .await
        {
            Ok(_) => Ok(()),
            Err(FsError::Exists) => Err(CatalogError::SnapshotExists(full)),
            Err(e) => Err(Self::fs_error(volume)(e)),
        }
    }

    /// Removes snapshot `volume@snapshot`; chunks only it used are reclaimed in the
    /// background.
    pub async fn remove_snapshot(&self, volume: &str, snapshot: &str) -> Result<(), CatalogError> {
        let (dir, _) = self.locate_snapshot(volume, snapshot).await?;
        self.fs
            .unlink(dir, OsStr::new(snapshot))
            .await
            .map_err(Self::fs_error(volume))
    }

    /// Makes volume `new`, writable, from snapshot `volume@snapshot`, sharing its chunks
    /// (one commit); `make_bucket` makes the new volume's bucket, as for [`Catalog::create`].
    pub async fn clone_snapshot<F, Fut, E>(
        &self,
        volume: &str,
        snapshot: &str,
        new: &str,
        make_bucket: F,
    ) -> Result<(), CatalogError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        check_name(new)?;
        let src = self.find_snapshot(volume, snapshot).await?;
        let dir = self.new_bucket(new, make_bucket).await?;
        match self
            .fs
            .clone_file(src, dir, OsStr::new(VOLUME_FILE), 0o600, Caller::ROOT)
            .await
        {
            Ok(_) => Ok(()),
            Err(FsError::Exists) => Err(CatalogError::Exists(new.to_owned())),
            Err(e) => Err(Self::fs_error(new)(e)),
        }
    }
}
