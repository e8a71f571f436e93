//! The shard store on one data directory: where shard files live, the verified read path,
//! quarantine of corrupt files, usage accounting and the node-id marker. Writes go
//! through [`crate::durable`], bytes through the [`IoEngine`]; knows nothing of gRPC.
//!
//! Layout:
//! ```text
//! DATA/cairn-node.id                     the node id and the directory's disk id (see `marker`)
//! DATA/shards/<2 hex>/<chunk hex>.<idx>  shard files (see `shard_file`)
//! DATA/quarantine/<chunk hex>.<idx>.<unix ns>.<random>   corrupt files, never deleted
//! ```

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_common::ids::hex;
use cairn_common::{failpoint, ChunkId, DiskId, NodeId};

use crate::aligned::AlignedBuf;
use crate::durable::{self, DurableWriteError, WriteMode};
use crate::io_engine::{blocking, IoEngine, SharedFile};
use crate::marker::{self, MarkerError};
use crate::shard_file::{self, BlockMismatch, FormatError, ShardHeader, HEADER_LEN};

const SHARDS_DIR: &str = "shards";
const QUARANTINE_DIR: &str = "quarantine";
/// Number of per-key lock stripes serialising put, delete and quarantine of one shard.
const LOCK_STRIPES: usize = 256;
/// Hashing more than this is moved off the async worker threads.
const INLINE_HASH_BYTES: usize = 256 * 1024;

/// One shard of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub chunk: ChunkId,
    pub index: u32,
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.chunk, self.index)
    }
}

impl ShardKey {
    /// The shard's file name: `<chunk hex>.<index>`.
    pub fn file_name(&self) -> String {
        self.to_string()
    }

    /// The key a shard file name stands for, if it is one.
    pub fn from_file_name(name: &str) -> Option<ShardKey> {
        let (chunk, index) = name.split_once('.')?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(ShardKey {
            chunk: chunk.parse().ok()?,
            index: index.parse().ok()?,
        })
    }

    fn stripe(&self) -> usize {
        (usize::from(self.chunk.0[15]) ^ self.index as usize) % LOCK_STRIPES
    }
}

/// Length and whole-data blake3 of a stored shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub length: u64,
    pub blake3: [u8; 32],
}

/// Verified bytes of a shard range, with the whole shard's info.
#[derive(Clone, Debug)]
pub struct ShardRead {
    pub data: Bytes,
    pub info: ShardInfo,
}

/// What the store holds, kept in memory (scanned at open, updated on every change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub shard_count: u64,
    /// Bytes of shard files, headers and block tables included.
    pub used_bytes: u64,
    pub quarantined_count: u64,
}

/// Size of the file system holding the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Why a stored shard cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    #[error("damaged header: {0}")]
    Header(#[from] FormatError),
    #[error(transparent)]
    Block(#[from] BlockMismatch),
    #[error("file ends before the data its header announces")]
    Truncated,
    /// The disk could not read the file (EIO, or a file system's checksum error): a bad
    /// sector is as lost as a flipped bit, and waiting does not bring it back.
    #[error("unreadable: {}", io::Error::from_raw_os_error(*errno))]
    Unreadable { errno: i32 },
}

impl CorruptReason {
    /// The reason an I/O error reading a shard file stands for, if it is a media error
    /// (the data under the file is gone) rather than a passing failure of the system.
    pub fn of_read_error(e: &io::Error) -> Option<CorruptReason> {
        match e.raw_os_error()? {
            errno @ (libc::EIO | libc::EBADMSG | libc::EUCLEAN) => {
                Some(CorruptReason::Unreadable { errno })
            }
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shard {id} not found")]
    NotFound { id: ShardKey },
    #[error("shard {id} is corrupt ({reason}) and was quarantined")]
    Corrupt { id: ShardKey, reason: CorruptReason },
    /// The shard's file cannot even be opened because the disk cannot read it (EIO on
    /// its inode): lost like a corrupt shard, but left where it is (nothing to check a
    /// quarantine against); a rebuilt copy replaces it.
    #[error("shard {id} cannot be opened ({reason}); left in place")]
    Unopenable { id: ShardKey, reason: CorruptReason },
    #[error(
        "shard {id}: data hashes to {} but {} was announced",
        hex(actual),
        hex(expected)
    )]
    HashMismatch {
        id: ShardKey,
        expected: [u8; 32],
        actual: [u8; 32],
    },
    #[error("shard {id}: range {offset}+{len} is outside its {shard_len} bytes")]
    RangeOutOfBounds {
        id: ShardKey,
        offset: u64,
        len: u64,
        shard_len: u64,
    },
    #[error("no space left for {path:?}")]
    NoSpace { path: PathBuf },
    #[error("{op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Marker(#[from] MarkerError),
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| classify(op, path, source)
}

fn classify(op: &'static str, path: PathBuf, source: io::Error) -> StoreError {
    match source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::NoSpace { path },
        _ => StoreError::Io { op, path, source },
    }
}

impl From<DurableWriteError> for StoreError {
    fn from(e: DurableWriteError) -> StoreError {
        classify(e.op, e.path, e.source)
    }
}

/// The shards of one data directory.
pub struct ShardStore {
    root: PathBuf,
    shards_dir: PathBuf,
    quarantine_dir: PathBuf,
    /// This data directory's identity (from its marker).
    disk_id: DiskId,
    engine: IoEngine,
    /// Direct when the data directory's file system supports it (probed at open).
    write_mode: WriteMode,
    usage: Mutex<Usage>,
    locks: Box<[tokio::sync::Mutex<()>]>,
}

impl ShardStore {
    /// Opens (creating if needed) the store in `data_dir` for node `node_id`: checks or
    /// writes the node-id marker, creates the layout, removes temporary files a crash left
    /// behind, and counts shards and quarantined files.
    pub async fn open(
        data_dir: &Path,
        node_id: NodeId,
        engine: IoEngine,
    ) -> Result<ShardStore, StoreError> {
        let root = data_dir.to_path_buf();
        {
            let root = root.clone();
            blocking(move || std::fs::create_dir_all(root))
                .await
                .map_err(io_error("create data directory", data_dir))?;
        }
        let mut store = ShardStore {
            shards_dir: root.join(SHARDS_DIR),
            quarantine_dir: root.join(QUARANTINE_DIR),
            disk_id: DiskId([0; 16]),
            root,
            engine,
            write_mode: WriteMode::Buffered,
            usage: Mutex::new(Usage::default()),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        };
        let has_data = store.shards_dir.exists();
        store.disk_id =
            marker::check_or_create(&store.engine, &store.root, node_id, has_data).await?;
        store.create_layout().await?;
        if durable::direct_io_supported(&store.engine, &store.shards_dir).await {
            store.write_mode = WriteMode::Direct;
        }
        let usage = {
            let (shards, quarantine) = (store.shards_dir.clone(), store.quarantine_dir.clone());
            blocking(move || scan(&shards, &quarantine))
                .await
                .map_err(io_error("scan", &store.root))?
        };
        *store.usage.lock().unwrap_or_else(|p| p.into_inner()) = usage;
        Ok(store)
    }

    /// Creates `shards/00..ff` and `quarantine/` up front, so no write needs a new
    /// directory (and its own directory fsync) on the hot path.
    async fn create_layout(&self) -> Result<(), StoreError> {
        let (shards, quarantine) = (self.shards_dir.clone(), self.quarantine_dir.clone());
        blocking(move || {
            std::fs::create_dir_all(&quarantine)?;
            for prefix in 0..=255u8 {
                std::fs::create_dir_all(shards.join(format!("{prefix:02x}")))?;
            }
            Ok(())
        })
        .await
        .map_err(io_error("create layout in", &self.root))?;
        durable::sync_dir(&self.engine, &self.shards_dir).await?;
        durable::sync_dir(&self.engine, &self.root).await?;
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory's identity, which the node presents to the metadata service.
    pub fn disk_id(&self) -> DiskId {
        self.disk_id
    }

    /// Whether shard data is written with O_DIRECT or through the page cache.
    pub fn write_mode(&self) -> WriteMode {
        self.write_mode
    }

    pub fn engine(&self) -> &IoEngine {
        &self.engine
    }

    fn path_of(&self, id: &ShardKey) -> PathBuf {
        self.shards_dir
            .join(format!("{:02x}", id.chunk.0[0]))
            .join(id.file_name())
    }

    fn lock_for(&self, id: &ShardKey) -> &tokio::sync::Mutex<()> {
        &self.locks[id.stripe()]
    }

    fn update_usage(&self, f: impl FnOnce(&mut Usage)) {
        f(&mut self.usage.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Up to `limit` shards whose files were last modified more than `age` ago (for the
    /// orphan sweep and scrub). Reads directory entries only, never shard data. A shard
    /// deleted or quarantined while the listing runs is left out, not an error.
    pub async fn shards_older_than(
        &self,
        age: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ShardKey>, StoreError> {
        let shards = self.shards_dir.clone();
        blocking(move || {
            let now = std::time::SystemTime::now();
            let mut out = Vec::new();
            for prefix in std::fs::read_dir(&shards)? {
                let prefix = prefix?;
                if !prefix.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(prefix.path())? {
                    let entry = entry?;
                    let Some(key) = ShardKey::from_file_name(&entry.file_name().to_string_lossy())
                    else {
                        continue;
                    };
                    let Some(modified) = modified_if_present(&entry)? else {
                        continue;
                    };
                    if now.duration_since(modified).is_ok_and(|d| d > age) {
                        out.push(key);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(io_error("list shards in", &self.shards_dir))
    }

    /// Deletes quarantined files moved aside more than `age` ago (by the time they were
    /// quarantined, their chunks were reported and rebuilt elsewhere). Returns how many.
    pub async fn purge_quarantine(&self, age: std::time::Duration) -> Result<u64, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.quarantine_dir.clone();
        let removed = blocking(move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let mut removed = 0u64;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                // The rename into quarantine set the change time: that is its age.
                let quarantined_at = entry.metadata()?.ctime();
                if now.saturating_sub(quarantined_at) >= age.as_secs() as i64 {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(io_error("purge quarantine in", &self.quarantine_dir))?;
        self.update_usage(|u| u.quarantined_count = u.quarantined_count.saturating_sub(removed));
        Ok(removed)
    }

    /// Counts kept in memory; no IO.
    pub fn usage(&self) -> Usage {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Total and available bytes of the data directory's file system (statvfs).
    pub fn capacity(&self) -> Result<Capacity, StoreError> {
        statvfs(&self.root).map_err(io_error("statvfs", &self.root))
    }

    /// Stores `data` durably as shard `id` after checking it hashes to `expected`; on a
    /// mismatch nothing is written. Replacing a shard (e.g. with identical content) is fine.
    ///
    /// Cancel safety: a dropped call leaves either the old file or the complete new one,
    /// never a partial one; the usage counts may then lag until the next start's scan.
    #[tracing::instrument(level = "debug", skip_all, fields(shard = %id))]
    pub async fn put(
        &self,
        id: ShardKey,
        expected: [u8; 32],
        data: Vec<Bytes>,
    ) -> Result<ShardInfo, StoreError> {
        let path = self.path_of(&id);
        let len: usize = data.iter().map(Bytes::len).sum();
        // The file laid out in one aligned buffer (the only copy of the data): prefix
        // space, the data, then the prefix filled in from the data's hashes.
        let (built, file) = hash_work(len, move || {
            let gap = usize::try_from(shard_file::prefix_len(len as u64))
                .expect("a prefix of an in-memory shard fits");
            let mut file = AlignedBuf::with_gap_then(gap, &data);
            let built = shard_file::build(&file.as_slice()[gap..]);
            file.as_mut_slice()[..gap].copy_from_slice(&built.prefix);
            (built, file)
        })
        .await
        .map_err(io_error("hash data for", &path))?;
        if built.header.blake3 != expected {
            return Err(StoreError::HashMismatch {
                id,
                expected,
                actual: built.header.blake3,
            });
        }
        let new_len = built.header.file_len();
        let _guard = self.lock_for(&id).lock().await;
        let old_len = file_len_if_exists(&path).await?;
        durable::write_shard_durably(&self.engine, &path, file, self.write_mode).await?;
        self.update_usage(|u| match old_len {
            Some(old) => u.used_bytes = u.used_bytes.saturating_sub(old) + new_len,
            None => {
                u.shard_count += 1;
                u.used_bytes += new_len;
            }
        });
        tracing::debug!(shard = %id, bytes = built.header.data_len, "stored shard");
        Ok(ShardInfo {
            length: built.header.data_len,
            blake3: built.header.blake3,
        })
    }

    /// Reads `len` bytes at `offset` (`len == 0`: to the end), verifying only the blocks
    /// the range touches. A damaged file, or one the disk cannot read (EIO), is
    /// quarantined and reported as `Corrupt`.
    #[tracing::instrument(level = "debug", skip_all, fields(shard = %id))]
    pub async fn get(&self, id: ShardKey, offset: u64, len: u64) -> Result<ShardRead, StoreError> {
        let (path, file, header) = self.open_verified_header(id).await?;
        let plan = header
            .plan_read(offset, len)
            .map_err(|e| StoreError::RangeOutOfBounds {
                id,
                offset: e.offset,
                len: e.len,
                shard_len: e.data_len,
            })?;
        let read = |at: u64, n: u64| {
            let n = usize::try_from(n).expect("a validated shard's parts fit in memory");
            self.read_at(id, &file, at, n)
        };
        let read_result = futures::future::try_join(
            read(plan.table_offset, plan.table_len),
            read(plan.data_offset, plan.data_len),
        )
        .await;
        let (table, data) = match read_result {
            Ok(parts) => parts,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(self.quarantine(id, &file, CorruptReason::Truncated).await)
            }
            Err(e) => {
                return Err(match CorruptReason::of_read_error(&e) {
                    Some(reason) => self.quarantine(id, &file, reason).await,
                    None => classify("read", path, e),
                })
            }
        };
        let verified = {
            let plan = plan.clone();
            hash_work(data.len(), move || {
                plan.verify(&table, &data)?;
                Ok::<_, BlockMismatch>(data)
            })
            .await
            .map_err(io_error("verify", &path))?
        };
        let data = match verified {
            Ok(data) => Bytes::from(data),
            Err(mismatch) => return Err(self.quarantine(id, &file, mismatch.into()).await),
        };
        let skip = plan.skip as usize;
        Ok(ShardRead {
            data: data.slice(skip..skip + plan.take as usize),
            info: ShardInfo {
                length: header.data_len,
                blake3: header.blake3,
            },
        })
    }

    /// Length and blake3 from the shard's header (checked, data not read).
    #[tracing::instrument(level = "debug", skip_all, fields(shard = %id))]
    pub async fn stat(&self, id: ShardKey) -> Result<ShardInfo, StoreError> {
        let (_, _, header) = self.open_verified_header(id).await?;
        Ok(ShardInfo {
            length: header.data_len,
            blake3: header.blake3,
        })
    }

    /// Removes shard `id`; false when it did not exist.
    #[tracing::instrument(level = "debug", skip_all, fields(shard = %id))]
    pub async fn delete(&self, id: ShardKey) -> Result<bool, StoreError> {
        let path = self.path_of(&id);
        let _guard = self.lock_for(&id).lock().await;
        let Some(len) = file_len_if_exists(&path).await? else {
            return Ok(false);
        };
        {
            let p = path.clone();
            blocking(move || std::fs::remove_file(p))
                .await
                .map_err(io_error("remove", &path))?;
        }
        self.update_usage(|u| {
            u.shard_count = u.shard_count.saturating_sub(1);
            u.used_bytes = u.used_bytes.saturating_sub(len);
        });
        if let Some(dir) = path.parent() {
            durable::sync_dir(&self.engine, dir).await?;
        }
        tracing::debug!(shard = %id, "deleted shard");
        Ok(true)
    }

    /// Reads `len` bytes at `offset` of shard `id`'s open file: every shard read goes
    /// through here (and past the `shard-read` failpoint, which fails it with EIO).
    async fn read_at(
        &self,
        id: ShardKey,
        file: &SharedFile,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        failpoint::hit_eio_for(failpoint::SHARD_READ, &id.file_name())?;
        self.engine.read_exact_at(file, offset, len).await
    }

    /// Opens shard `id` and parses its header; a bad header quarantines the file.
    async fn open_verified_header(
        &self,
        id: ShardKey,
    ) -> Result<(PathBuf, SharedFile, ShardHeader), StoreError> {
        let path = self.path_of(&id);
        let (file, file_len) = {
            let p = path.clone();
            let opened = blocking(move || {
                let file = std::fs::File::open(p)?;
                let len = file.metadata()?.len();
                Ok((file, len))
            })
            .await;
            match opened {
                Ok((file, len)) => (Arc::new(file), len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::NotFound { id })
                }
                Err(e) => {
                    return Err(match CorruptReason::of_read_error(&e) {
                        Some(reason) => {
                            tracing::warn!(shard = %id, %reason, "cannot open shard file");
                            StoreError::Unopenable { id, reason }
                        }
                        None => classify("open", path, e),
                    })
                }
            }
        };
        let head_len = file_len.min(HEADER_LEN as u64) as usize;
        let head = match self.read_at(id, &file, 0, head_len).await {
            Ok(head) => head,
            Err(e) => {
                return Err(match CorruptReason::of_read_error(&e) {
                    Some(reason) => self.quarantine(id, &file, reason).await,
                    None => classify("read header of", path, e),
                })
            }
        };
        match ShardHeader::parse(&head, file_len) {
            Ok(header) => Ok((path, file, header)),
            Err(e) => Err(self.quarantine(id, &file, e.into()).await),
        }
    }

    /// Moves the damaged file `opened` (shard `id`) into quarantine — if it is still the
    /// file at the shard's path, not a good one written meanwhile — and returns the
    /// `Corrupt` error to give the caller. Never deletes. From then on the shard is
    /// missing here (`NotFound`), which is what the node answers anyone who asks for it,
    /// a leader verifying a loss report included.
    async fn quarantine(
        &self,
        id: ShardKey,
        opened: &SharedFile,
        reason: CorruptReason,
    ) -> StoreError {
        let path = self.path_of(&id);
        let _guard = self.lock_for(&id).lock().await;
        let dest = self.quarantine_dir.join(format!(
            "{}.{}.{:08x}",
            id.file_name(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
            rand::random::<u32>()
        ));
        let moved = {
            let (opened, path, dest) = (opened.clone(), path.clone(), dest.clone());
            blocking(move || {
                let ours = opened.metadata()?;
                match std::fs::metadata(&path) {
                    Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                        std::fs::rename(&path, &dest)?;
                        Ok(Some(ours.len()))
                    }
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
        };
        match moved {
            Ok(Some(len)) => {
                self.update_usage(|u| {
                    u.shard_count = u.shard_count.saturating_sub(1);
                    u.used_bytes = u.used_bytes.saturating_sub(len);
                    u.quarantined_count += 1;
                });
                tracing::warn!(shard = %id, %reason, to = ?dest, "corrupt shard quarantined");
                for dir in [Some(self.quarantine_dir.as_path()), path.parent()]
                    .into_iter()
                    .flatten()
                {
                    if let Err(e) = durable::sync_dir(&self.engine, dir).await {
                        tracing::warn!(error = %e, "cannot sync directory after quarantine");
                    }
                }
            }
            Ok(None) => {
                tracing::debug!(shard = %id, "corrupt shard already replaced or removed");
            }
            Err(e) => {
                tracing::error!(shard = %id, %reason, error = %e, "cannot quarantine corrupt shard");
            }
        }
        StoreError::Corrupt { id, reason }
    }
}

/// Runs hashing work of `bytes` bytes: inline when small, else on the blocking pool so
/// large shards do not stall the async worker threads.
async fn hash_work<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    if bytes <= INLINE_HASH_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io::Error::other(format!("hashing task failed: {e}")))
}

async fn file_len_if_exists(path: &Path) -> Result<Option<u64>, StoreError> {
    let p = path.to_path_buf();
    blocking(move || match std::fs::metadata(p) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
    .map_err(io_error("stat", path))
}

/// When a listed file was last modified; `None` when it is gone since it was listed
/// (deleted, or moved to quarantine, by a request running meanwhile).
fn modified_if_present(entry: &std::fs::DirEntry) -> io::Result<Option<std::time::SystemTime>> {
    match entry.metadata() {
        Ok(m) => m.modified().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Counts shards and quarantined files; removes temporary files left by a crash.
fn scan(shards: &Path, quarantine: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    let mut removed = 0u64;
    for prefix in std::fs::read_dir(shards)? {
        let prefix = prefix?;
        if !prefix.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(prefix.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if durable::is_temp_name(&name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            } else if ShardKey::from_file_name(&name).is_some() && entry.file_type()?.is_file() {
                usage.shard_count += 1;
                usage.used_bytes += entry.metadata()?.len();
            } else {
                tracing::debug!(path = ?entry.path(), "ignoring unknown file in shard directory");
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            count = removed,
            "removed temporary files left by an earlier crash"
        );
    }
    usage.quarantined_count = std::fs::read_dir(quarantine)?.count() as u64;
    Ok(usage)
}

fn statvfs(path: &Path) -> io::Result<Capacity> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `statvfs` is plain old data, so all-zero is a valid value to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `st` is a valid, writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(Capacity {
        total_bytes: (st.f_blocks as u64).saturating_mul(frsize),
        available_bytes: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

#[cfg(test)]
mod tests;
