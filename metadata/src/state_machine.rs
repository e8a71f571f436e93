//! The Raft state machine (openraft `RaftStateMachine`) on the state database.
//!
//! Each `apply` call turns its entries into one RocksDB write batch that also records the
//! applied log id and the membership, so after a crash state and applied index agree and
//! openraft re-applies only the log after it. The batch is not synced: the log is.
//!
//! A snapshot is a RocksDB checkpoint (hard links to the table files), built without
//! any lock on the namespace; a lagging replica is sent the checkpoint's files as one
//! stream (`snapshot_archive`) and swaps them in as its new database.
//!
//! Layout of the state directory:
//! - `CURRENT_DB`: the name of the live database directory (replaced atomically);
//! - `db-N/`: the live database (older ones are removed at the next start);
//! - `snapshots/<id>/` and `snapshots/<id>.meta`: the latest snapshot and its metadata;
//! - `incoming-*`: snapshots being received.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};

use crate::namespace::{CommandResult, Namespace};
use crate::snapshot_archive::{ArchiveReader, ArchiveWriter, SnapshotData};
use crate::state_db::{CacheConfig, StateDb, StateDbError, ALL_CFS, KEY_APPLIED};
use crate::types::TypeConfig;

const KEY_MEMBERSHIP: &[u8] = b"membership";
const CURRENT_DB: &str = "CURRENT_DB";
const SNAPSHOTS: &str = "snapshots";
/// Prefix of a checkpoint being taken in `snapshots/`.
const BUILDING: &str = "building-";

type StorageResult<T> = Result<T, StorageError<u64>>;
/// The applied log id and membership a state database records.
type Applied = (Option<LogId<u64>>, StoredMembership<u64, BasicNode>);

pub struct SmData {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    pub namespace: Namespace,
}

/// Read access to the applied state, shared with the gRPC services.
pub type SharedState = Arc<RwLock<SmData>>;

/// A handle on the live state database (it outlives a snapshot install that replaces it).
pub fn live_db(state: &SharedState) -> StateDb {
    state
        .read()
        .expect("state lock poisoned")
        .namespace
        .db()
        .clone()
}

#[derive(Clone)]
pub struct StateMachine {
    dir: Arc<PathBuf>,
    cache: CacheConfig,
    state: SharedState,
    seq: Arc<AtomicU64>,
    /// Serialises choosing the snapshot to keep (a build and an install may overlap).
    keeping: Arc<std::sync::Mutex<()>>,
}

fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::error(e)).into()
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    io_err(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(
    meta: Option<&SnapshotMeta<u64, BasicNode>>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<u64> {
    io_err(ErrorSubject::Snapshot(meta.map(|m| m.signature())), verb, e)
}

/// The applied log id and membership recorded in a state database.
fn applied_in(db: &StateDb) -> Applied {
    let json = |key| {
        db.raw()
            .get_cf(db.cf(crate::state_db::CF_META), key)
            .ok()
            .flatten()
    };
    let applied = json(KEY_APPLIED)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .flatten();
    let membership = json(KEY_MEMBERSHIP)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    (applied, membership)
}

/// The applied log id and membership recorded in the checkpoint at `path` (opened read
/// only).
pub(crate) fn applied_in_checkpoint(path: &Path) -> Result<Applied, String> {
    let mut opts = rocksdb::Options::default();
    opts.set_max_open_files(16);
    let copy = rocksdb::DB::open_cf_for_read_only(&opts, path, ALL_CFS, false)
        .map_err(|e| e.to_string())?;
    let read = |key: &[u8]| {
        copy.cf_handle(crate::state_db::CF_META)
            .and_then(|cf| copy.get_cf(cf, key).ok().flatten())
    };
    let applied: Option<LogId<u64>> = read(KEY_APPLIED)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .flatten();
    let membership: StoredMembership<u64, BasicNode> = read(KEY_MEMBERSHIP)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Ok((applied, membership))
}

/// Writes `contents` to `path` atomically (a synced temporary file renamed over it).
fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().expect("a file in a directory"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl StateMachine {
    /// Opens the state in `dir` (creating an empty one).
    pub fn open(dir: &Path, cache: CacheConfig) -> Result<Self, StateDbError> {
        let open_err = |source: io::Error| StateDbError::Directory {
            path: dir.into(),
            source,
        };
        std::fs::create_dir_all(dir.join(SNAPSHOTS)).map_err(open_err)?;
        let current = match std::fs::read_to_string(dir.join(CURRENT_DB)) {
            Ok(name) => name.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                replace_file(&dir.join(CURRENT_DB), b"db-0").map_err(open_err)?;
                "db-0".to_string()
            }
            Err(e) => return Err(open_err(e)),
        };
        // Left behind by an install that was interrupted or replaced, or by a snapshot
        // build that was.
        let snapshots = std::fs::read_dir(dir.join(SNAPSHOTS)).map_err(open_err)?;
        for entry in snapshots.flatten() {
            if entry.file_name().to_string_lossy().starts_with(BUILDING) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        for entry in std::fs::read_dir(dir).map_err(open_err)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if (name.starts_with("db-") && name != current)
                || name.starts_with("incoming-")
                || name.starts_with(crate::backup::CHECKPOINT_PREFIX)
            {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        let db = StateDb::open(&dir.join(&current), &cache)?;
        let (last_applied, membership) = applied_in(&db);
        let seq = current
            .strip_prefix("db-")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(StateMachine {
            dir: Arc::new(dir.into()),
            cache,
            state: Arc::new(RwLock::new(SmData {
                last_applied,
                membership,
                namespace: Namespace::open(db),
            })),
            seq: Arc::new(AtomicU64::new(seq + 1)),
            keeping: Arc::default(),
        })
    }

    /// Makes the state restored from a backup that of a new metadata group with
    /// `members` (`backup.rs`): every mount session ended, the counters of ids that
    /// clients see moved past what was handed out after the backup, and the membership
    /// replaced, at the same applied id. Returns that id and the sessions ended.
    pub fn prepare_restored(
        &mut self,
        members: openraft::Membership<u64, BasicNode>,
    ) -> Result<(Option<LogId<u64>>, usize), StateDbError> {
        let mut state = self.state.write().expect("state lock poisoned");
        let state = &mut *state;
        let ended = state.namespace.prepare_restored();
        state.membership = StoredMembership::new(state.last_applied, members);
        let mut batch = state.namespace.write_batch();
        let db = state.namespace.db();
        batch.put_cf(
            db.cf(crate::state_db::CF_META),
            KEY_MEMBERSHIP,
            serde_json::to_vec(&state.membership).expect("encodes"),
        );
        db.write_synced(batch)?;
        Ok((state.last_applied, ended))
    }

    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    fn snapshots(&self) -> PathBuf {
        self.dir.join(SNAPSHOTS)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The newest snapshot on disk: its metadata and directory.
    fn newest_snapshot(&self) -> io::Result<Option<(SnapshotMeta<u64, BasicNode>, PathBuf)>> {
        let mut newest: Option<(SnapshotMeta<u64, BasicNode>, PathBuf)> = None;
        for entry in std::fs::read_dir(self.snapshots())? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "meta") {
                continue;
            }
            let Ok(meta) =
                serde_json::from_slice::<SnapshotMeta<u64, BasicNode>>(&std::fs::read(&path)?)
            else {
                continue;
            };
            let dir = path.with_extension("");
            if dir.is_dir()
                && newest
                    .as_ref()
                    .is_none_or(|(n, _)| meta.last_log_id > n.last_log_id)
            {
                newest = Some((meta, dir));
            }
        }
        Ok(newest)
    }

    /// Keeps `checkpoint` as the snapshot `meta` (unless a newer one exists) and removes
    /// older snapshots (a transfer still reading one keeps its open files).
    fn keep_snapshot(
        &self,
        meta: &SnapshotMeta<u64, BasicNode>,
        checkpoint: &Path,
    ) -> io::Result<bool> {
        let _keeping = self.keeping.lock().expect("snapshot keeping lock poisoned");
        if let Some((newest, _)) = self.newest_snapshot()? {
            if newest.last_log_id > meta.last_log_id {
                std::fs::remove_dir_all(checkpoint)?;
                return Ok(false);
            }
        }
        let dir = self.snapshots().join(&meta.snapshot_id);
        if dir != checkpoint {
            std::fs::rename(checkpoint, &dir)?;
        }
        replace_file(
            &dir.with_extension("meta"),
            &serde_json::to_vec(meta).expect("snapshot meta encodes"),
        )?;
        for entry in std::fs::read_dir(self.snapshots())? {
            let path = entry?.path();
            let stem = path.with_extension("");
            let building = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(BUILDING));
            if stem != dir && !building {
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        Ok(true)
    }

    /// Checkpoints `db` into a new directory and reads what it holds.
    fn checkpoint(&self, db: &StateDb) -> Result<(SnapshotMeta<u64, BasicNode>, PathBuf), String> {
        let seq = self.next_seq();
        let tmp = self.snapshots().join(format!("{BUILDING}{seq}"));
        db.checkpoint(&tmp).map_err(|e| e.to_string())?;
        // The checkpoint's own applied id: applies went on while it was taken.
        let (last_applied, membership) = applied_in_checkpoint(&tmp)?;
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        Ok((meta, tmp))
    }
}

/// Removes the database a snapshot install replaced once nothing uses it any more (a
/// snapshot being built or a digest may still read it); a restart removes it otherwise.
fn remove_when_unused(old: Namespace) {
    let db = old.db().clone();
    drop(old);
    std::thread::spawn(move || {
        for _ in 0..600 {
            if db.handles() == 1 {
                let path = db.path().to_path_buf();
                drop(db);
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(?path, "remove a replaced state database: {e}");
                }
                return;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    });
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let db = live_db(&self.state);
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (meta, tmp) = this.checkpoint(&db)?;
            this.keep_snapshot(&meta, &tmp).map_err(|e| e.to_string())?;
            let dir = this.snapshots().join(&meta.snapshot_id);
            let reader = ArchiveReader::open(&dir).map_err(|e| e.to_string())?;
            tracing::info!(
                last_log_id = ?meta.last_log_id,
                bytes = reader.total_bytes(),
                ms = started.elapsed().as_millis() as u64,
                "built a snapshot (a checkpoint of the state database)"
            );
            metrics::counter!("cairn_meta_snapshots_built_total").increment(1);
            Ok::<_, String>((meta, reader))
        })
        .await
        .map_err(|e| snap_err(None, ErrorVerb::Write, e))?
        .map_err(|e| snap_err(None, ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: built.0,
            snapshot: Box::new(SnapshotData::Outgoing(built.1)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let state = self.state.read().expect("state lock poisoned");
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.write().expect("state lock poisoned");
        let state = &mut *state;
        let mut results = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(cmd) => state.namespace.apply(cmd),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::Done
                }
            };
            results.push(result);
        }
        let mut batch = state.namespace.write_batch();
        let db = state.namespace.db();
        let meta = db.cf(crate::state_db::CF_META);
        batch.put_cf(
            meta,
            KEY_APPLIED,
            serde_json::to_vec(&state.last_applied).expect("encodes"),
        );
        batch.put_cf(
            meta,
            KEY_MEMBERSHIP,
            serde_json::to_vec(&state.membership).expect("encodes"),
        );
        db.write(batch).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<SnapshotData>> {
        let dir = self.dir.join(format!("incoming-{}", self.next_seq()));
        let writer = ArchiveWriter::create(dir).map_err(|e| snap_err(None, ErrorVerb::Write, e))?;
        Ok(Box::new(SnapshotData::Incoming(writer)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> StorageResult<()> {
        let err = |e: &dyn std::fmt::Display| snap_err(Some(meta), ErrorVerb::Write, e);
        let started = std::time::Instant::now();
        let name = format!("db-{}", self.next_seq());
        let new_dir = self.dir.join(&name);
        let target = new_dir.clone();
        tokio::task::spawn_blocking(move || snapshot.into_dir(&target))
            .await
            .map_err(|e| err(&e))?
            .map_err(|e| err(&e))?;
        let db = StateDb::open(&new_dir, &self.cache).map_err(|e| err(&e))?;
        let (last_applied, membership) = applied_in(&db);
        if last_applied != meta.last_log_id {
            return Err(err(&format!(
                "the snapshot's database is at {last_applied:?}, its metadata says {:?}",
                meta.last_log_id
            )));
        }
        // Keep it as this replica's snapshot too, for replicas that lag behind it.
        let copy = self
            .snapshots()
            .join(format!("{BUILDING}{}", self.next_seq()));
        db.checkpoint(&copy).map_err(|e| err(&e))?;
        self.keep_snapshot(meta, &copy).map_err(|e| err(&e))?;
        let old = {
            let mut state = self.state.write().expect("state lock poisoned");
            replace_file(&self.dir.join(CURRENT_DB), name.as_bytes()).map_err(|e| err(&e))?;
            state.last_applied = last_applied;
            state.membership = membership;
            std::mem::replace(&mut state.namespace, Namespace::open(db))
        };
        remove_when_unused(old);
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            ms = started.elapsed().as_millis() as u64,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let read_err = |e: io::Error| snap_err(None, ErrorVerb::Read, e);
        let Some((meta, dir)) = self.newest_snapshot().map_err(read_err)? else {
            return Ok(None);
        };
        let reader = ArchiveReader::open(&dir).map_err(read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Outgoing(reader)),
        }))
    }
}
