//! Metadata backups and restores.
//!
//! A backup is a consistent checkpoint of the leader's state database (every change
//! acknowledged before the backup was asked for), written as one file:
//!
//! - the magic `CAIRNBACKUP1\n`;
//! - a little-endian u32 length, then that many bytes of JSON: [`BackupHeader`];
//! - the checkpoint's files as a state-snapshot archive (`snapshot_archive.rs`);
//! - the blake3 of every byte before it (32 bytes).
//!
//! A restore builds a new metadata group of one replica from such a file, in an empty
//! data directory: the state as backed up, with the membership replaced by the new
//! replica alone, every mount session ended (a mount that lived through the disaster is
//! fenced, not resumed on a state that forgot its later writes), and the counters of
//! ids that mounts and clients see moved far past anything handed out after the backup.
//! Other replicas join it as usual (`cairn meta add`). Storage nodes re-attach by their
//! heartbeats; shards written after the backup are orphans their scrub reports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, LogId, Membership, RaftSnapshotBuilder, StoredMembership, Vote};
use serde::{Deserialize, Serialize};

use crate::snapshot_archive::{ArchiveReader, ArchiveWriter};
use crate::state_db::{CacheConfig, StateDb, FORMAT_VERSION};

pub const MAGIC: &[u8] = b"CAIRNBACKUP1\n";
/// Largest header accepted.
const HEADER_MAX: u32 = 1 << 20;
/// Prefix of a checkpoint taken for a backup, beside the live database (removed when
/// the backup is sent, or at the next start of the replica).
pub const CHECKPOINT_PREFIX: &str = "backup-";

/// What a backup file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The state database's format (`state_db::FORMAT_VERSION`).
    pub state_format: u32,
    /// The last Raft entry the backup includes.
    pub last_applied: Option<LogId<u64>>,
    /// The metadata replicas when it was taken.
    pub membership: StoredMembership<u64, BasicNode>,
    /// Seconds since the Unix epoch.
    pub created_unix_secs: u64,
    /// The release of Cairn that took it.
    pub cairn_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("checkpoint the state database for a backup: {0}")]
    Checkpoint(String),
    #[error("read the backup checkpoint: {0}")]
    Read(#[source] io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("read the backup file {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path:?} is not a Cairn metadata backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error(
        "{path:?} is damaged: its blake3 is {found}, its trailer says {expected}; \
         use another copy of the backup"
    )]
    Damaged {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "the backup has state format {found}, this release reads format {FORMAT_VERSION}: \
         restore it with the release that took it ({version})"
    )]
    Format { found: u32, version: String },
    #[error(
        "{path:?} already holds a metadata replica's store: restore only into an empty \
         data directory (move the old one aside first)"
    )]
    NotEmpty { path: PathBuf },
    #[error("write the restored store in {path:?}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::OpenStoreError),
    #[error("prepare the restored state: {0}")]
    Prepare(String),
}

/// A backup being sent: its header and the checkpoint's archive, read in order; the
/// checkpoint is removed when this is dropped.
pub struct BackupSource {
    header: Vec<u8>,
    pos: usize,
    archive: ArchiveReader,
    checkpoint: PathBuf,
    pub info: BackupHeader,
}

impl BackupSource {
    /// Checkpoints `db` beside it (hard links to its table files; the memtables are
    /// flushed) and opens it for reading.
    pub fn take(db: &StateDb) -> Result<Self, BackupError> {
        let parent = db.path().parent().unwrap_or(Path::new("."));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let checkpoint = parent.join(format!("{CHECKPOINT_PREFIX}{nanos}"));
        db.checkpoint(&checkpoint)
            .map_err(|e| BackupError::Checkpoint(e.to_string()))?;
        let opened = open_checkpoint(&checkpoint);
        match opened {
            Ok((header, archive, info)) => Ok(BackupSource {
                header,
                pos: 0,
                archive,
                checkpoint,
                info,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&checkpoint);
                Err(e)
            }
        }
    }

    /// Bytes of the whole file but its trailer.
    pub fn body_bytes(&self) -> u64 {
        self.header.len() as u64 + self.archive.total_bytes()
    }

    /// Reads the next bytes of the file's body (header, then archive); 0 at its end.
    /// The trailer is the blake3 of these bytes, computed by whoever writes the file.
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.header.len() {
            let n = out.len().min(self.header.len() - self.pos);
            out[..n].copy_from_slice(&self.header[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.archive.read(out)
    }
}

impl Drop for BackupSource {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.checkpoint) {
            tracing::warn!(path = ?self.checkpoint, "remove a backup checkpoint: {e}");
        }
    }
}

/// The header of a backup of `checkpoint`, and its archive.
fn open_checkpoint(
    checkpoint: &Path,
) -> Result<(Vec<u8>, ArchiveReader, BackupHeader), BackupError> {
    let (last_applied, membership) =
        crate::state_machine::applied_in_checkpoint(checkpoint).map_err(BackupError::Checkpoint)?;
    let info = BackupHeader {
        state_format: FORMAT_VERSION,
        last_applied,
        membership,
        created_unix_secs: crate::service::now_secs(),
        cairn_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let json = serde_json::to_vec(&info).expect("a backup header encodes");
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&(json.len() as u32).to_le_bytes());
    header.extend_from_slice(&json);
    let archive = ArchiveReader::open(checkpoint).map_err(BackupError::Read)?;
    Ok((header, archive, info))
}

/// A reader of a backup file's body that hashes what it reads.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What a restore built.
#[derive(Debug)]
pub struct Restored {
    pub header: BackupHeader,
    /// Mount sessions of the backup, ended by the restore.
    pub sessions_ended: usize,
}

/// Reads and checks a backup file's header (not its body's hash).
pub fn read_header(path: &Path) -> Result<BackupHeader, RestoreError> {
    let mut file = std::fs::File::open(path).map_err(|source| RestoreError::Read {
        path: path.into(),
        source,
    })?;
    header_of(path, &mut file)
}

fn header_of(path: &Path, file: &mut impl Read) -> Result<BackupHeader, RestoreError> {
    let not = |reason: String| RestoreError::NotABackup {
        path: path.into(),
        reason,
    };
    let mut magic = vec![0; MAGIC.len()];
    file.read_exact(&mut magic)
        .map_err(|e| not(format!("reading its first bytes: {e}")))?;
    if magic != MAGIC {
        return Err(not("bad magic".into()));
    }
    let mut len = [0; 4];
    file.read_exact(&mut len)
        .map_err(|e| not(format!("reading its header: {e}")))?;
    let len = u32::from_le_bytes(len);
    if len > HEADER_MAX {
        return Err(not(format!("a header of {len} bytes")));
    }
    let mut json = vec![0; len as usize];
    file.read_exact(&mut json)
        .map_err(|e| not(format!("reading its header: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| not(format!("its header: {e}")))
}

/// Builds a one-replica metadata group, replica `id` reachable at `addr`, in `data_dir`
/// (which must hold no store yet) from the backup file `path`.
pub async fn restore(
    path: &Path,
    data_dir: &Path,
    id: u64,
    addr: &str,
    cache: CacheConfig,
) -> Result<Restored, RestoreError> {
    let store_dir = data_dir.join("raft");
    let occupied = std::fs::read_dir(&store_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(RestoreError::NotEmpty { path: store_dir });
    }
    let result = restore_into(path, &store_dir, id, addr, cache).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&store_dir);
    }
    result
}

async fn restore_into(
    path: &Path,
    store_dir: &Path,
    id: u64,
    addr: &str,
    cache: CacheConfig,
) -> Result<Restored, RestoreError> {
    let read_err = |source| RestoreError::Read {
        path: path.into(),
        source,
    };
    let write_err = |source| RestoreError::Write {
        path: store_dir.into(),
        source,
    };
    let state_dir = store_dir.join("state");
    std::fs::create_dir_all(&state_dir).map_err(write_err)?;
    // Unpack while checking the file's hash; the database is adopted only if it matches.
    let header = {
        let file = std::fs::File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let body = len
            .checked_sub(32)
            .ok_or_else(|| RestoreError::NotABackup {
                path: path.into(),
                reason: format!("{len} bytes"),
            })?;
        let mut reader = Hashing {
            inner: io::BufReader::with_capacity(1 << 20, file).take(body),
            hasher: blake3::Hasher::new(),
        };
        let header = header_of(path, &mut reader)?;
        if header.state_format != FORMAT_VERSION {
            return Err(RestoreError::Format {
                found: header.state_format,
                version: header.cairn_version,
            });
        }
        let unpacking = state_dir.join("unpacking");
        let mut writer = ArchiveWriter::create(unpacking).map_err(write_err)?;
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            writer
                .write(&buf[..n])
                .map_err(|e| RestoreError::NotABackup {
                    path: path.into(),
                    reason: format!("its state archive: {e}"),
                })?;
        }
        let found = reader.hasher.finalize();
        let mut trailer = [0; 32];
        reader
            .inner
            .into_inner()
            .read_exact(&mut trailer)
            .map_err(read_err)?;
        if found.as_bytes() != &trailer {
            return Err(RestoreError::Damaged {
                path: path.into(),
                found: found.to_hex().to_string(),
                expected: blake3::Hash::from_bytes(trailer).to_hex().to_string(),
            });
        }
        let unpacked = writer.finish().map_err(|e| RestoreError::NotABackup {
            path: path.into(),
            reason: format!("its state archive: {e}"),
        })?;
        // `StateMachine::open` adopts `db-0` when no CURRENT_DB names another.
        std::fs::rename(&unpacked, state_dir.join("db-0")).map_err(write_err)?;
        header
    };

    let (mut log, mut sm) = crate::store::open(store_dir, cache)?;
    let members = Membership::new(
        vec![BTreeSet::from([id])],
        BTreeMap::from([(
            id,
            BasicNode {
                addr: addr.to_string(),
            },
        )]),
    );
    let (last_applied, sessions_ended) = sm
        .prepare_restored(members)
        .map_err(|e| RestoreError::Prepare(e.to_string()))?;
    // The new replica's first election must be of a later term than the last entry it
    // holds: start from that entry's term (openraft purges the log up to it at start).
    let term = last_applied.map_or(0, |l| l.leader_id.term);
    log.save_vote(&Vote::new(term, id))
        .await
        .map_err(|e| RestoreError::Prepare(e.to_string()))?;
    // A snapshot of the restored state, for the replicas that join it.
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .map_err(|e| RestoreError::Prepare(e.to_string()))?;
    let (applied, _) = sm
        .applied_state()
        .await
        .map_err(|e| RestoreError::Prepare(e.to_string()))?;
    debug_assert_eq!(applied, last_applied);
    Ok(Restored {
        header,
        sessions_ended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{Command, CommandResult};
    use cairn_common::fs::FsReply;
    use openraft::{Entry, EntryPayload};

    /// Writes a whole backup file from `source` to `out` (trailer included); returns its
    /// length.
    fn write_file(source: &mut BackupSource, out: &mut impl io::Write) -> io::Result<u64> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0; 1 << 20];
        let mut len = 0;
        loop {
            let n = source.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            len += n as u64;
        }
        out.write_all(hasher.finalize().as_bytes())?;
        Ok(len + 32)
    }

    fn entry(index: u64, cmd: Command) -> Entry<crate::types::TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    /// A state with a bucket and an open session, backed up to a file.
    async fn backed_up(dir: &Path) -> (PathBuf, u64) {
        let (_, mut sm) = crate::store::open(&dir.join("raft"), CacheConfig::default()).unwrap();
        let results = sm
            .apply([
                entry(
                    1,
                    Command::CreateBucket {
                        name: "kept".into(),
                        redundancy: cairn_common::Redundancy::DEFAULT,
                        mtime: 0,
                    },
                ),
                entry(
                    2,
                    Command::OpenSession {
                        name: "mount".into(),
                        now_ns: 1,
                    },
                ),
            ])
            .await
            .unwrap();
        let session = match &results[1] {
            CommandResult::Fs(Ok(FsReply::Session { id, .. })) => *id,
            r => panic!("{r:?}"),
        };
        let db = crate::state_machine::live_db(&sm.shared());
        let mut source = BackupSource::take(&db).unwrap();
        let path = dir.join("meta.backup");
        let mut out = std::fs::File::create(&path).unwrap();
        let len = write_file(&mut source, &mut out).unwrap();
        assert_eq!(len, source.body_bytes() + 32);
        drop(source);
        let leftovers: Vec<_> = std::fs::read_dir(db.path().parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(CHECKPOINT_PREFIX)
            })
            .collect();
        assert!(leftovers.is_empty(), "the backup checkpoint is removed");
        (path, session)
    }

    #[tokio::test]
    async fn a_restored_store_is_a_group_of_one_at_the_backed_up_state() {
        let dir = tempfile::tempdir().unwrap();
        let (path, session) = backed_up(dir.path()).await;
        let header = read_header(&path).unwrap();
        assert_eq!(header.last_applied.map(|l| l.index), Some(2));

        let target = dir.path().join("restored");
        let restored = restore(&path, &target, 7, "10.0.0.7:7100", CacheConfig::default())
            .await
            .unwrap();
        assert_eq!(restored.sessions_ended, 1);
        assert_eq!(restored.header, header);

        let (mut log, mut sm) =
            crate::store::open(&target.join("raft"), CacheConfig::default()).unwrap();
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, header.last_applied);
        let voters: Vec<u64> = membership.membership().voter_ids().collect();
        assert_eq!(voters, vec![7]);
        assert_eq!(
            membership.membership().get_node(&7).unwrap().addr,
            "10.0.0.7:7100"
        );
        let vote = log.read_vote().await.unwrap().unwrap();
        assert_eq!(vote.leader_id().term, 3);
        assert!(!vote.is_committed());
        assert!(sm.get_current_snapshot().await.unwrap().is_some());
        {
            let state = sm.shared();
            let state = state.read().unwrap();
            assert!(state.namespace.bucket("kept").is_ok());
            assert!(!state.namespace.session_is_open(session));
        }

        // Over a store: refused, and the store is untouched.
        let again = restore(&path, &target, 7, "10.0.0.7:7100", CacheConfig::default()).await;
        assert!(
            matches!(again, Err(RestoreError::NotEmpty { .. })),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_damaged_or_truncated_backup_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = backed_up(dir.path()).await;
        let bytes = std::fs::read(&path).unwrap();
        let target = dir.path().join("restored");
        let mut flipped = bytes.clone();
        let at = bytes.len() - 100;
        flipped[at] ^= 1;
        let cases = [
            ("flipped", flipped, "damaged"),
            ("truncated", bytes[..bytes.len() - 40].to_vec(), "damaged"),
            ("not a backup", b"hello".to_vec(), "not a Cairn"),
        ];
        for (what, content, expected) in cases {
            let bad = dir.path().join("bad.backup");
            std::fs::write(&bad, &content).unwrap();
            let err = restore(&bad, &target, 1, "a:1", CacheConfig::default())
                .await
                .expect_err(what);
            assert!(err.to_string().contains(expected), "{what}: {err}");
            assert!(!target.join("raft").exists(), "{what}: nothing left");
        }
    }
}
