//! The Raft log and vote on RocksDB (openraft `RaftLogStorage`), in the binary format of
//! `codec.rs` (the store records its version: `log_format.rs`).
//!
//! Durability, write by write (openraft 0.9.25 `storage/v2.rs` states what each needs):
//! - `append`: one synced write batch for all the entries of the call; `LogFlushed` is
//!   signalled only after it. An entry counts towards a commit quorum from then on.
//! - `save_vote`: synced before returning (openraft: "The vote must be persisted on disk
//!   before returning"): a replica that forgot its vote could vote twice in one term.
//! - `truncate` and `purge`: synced. Neither is on the commit path (conflicts after a
//!   leader change; purges after a snapshot), so they keep the simplest guarantee.
//! - `save_committed`: NOT synced. The committed id is a hint openraft reads at start-up
//!   to re-apply the log up to it (the state machine here is rebuilt from its last
//!   snapshot plus the log); its docs make saving it optional (`docs::data::log_pointers`,
//!   "optionally persisted committed"). A lost update only means a replica re-applies
//!   less at start and learns the rest from the leader. It can never be ahead of the
//!   entries it names: RocksDB recovers a prefix of its write-ahead log, and every entry
//!   up to a committed id was appended (synced) before the committed id was written.
//!   Syncing it cost a second fsync per commit on every replica, on the path of every
//!   client write (`Command::Commit` runs inside openraft's RaftCore task).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use metrics::counter;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec;
use crate::log_format::{self, LogFormatError};
use crate::types::TypeConfig;

pub const CF_LOGS: &str = "logs";
pub const CF_STORE: &str = "store";

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";

type StorageResult<T> = Result<T, StorageError<u64>>;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().expect("log keys are 8 bytes"))
}

fn write_options(sync: bool) -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(sync);
    opts
}

impl LogStore {
    /// The log store on `db` (whose column families [`CF_LOGS`] and [`CF_STORE`] exist),
    /// after checking the format of what it holds: a store in another format, or in
    /// none, is refused with the fix (`log_format.rs`).
    pub fn open(db: Arc<DB>) -> Result<Self, LogFormatError> {
        log_format::check(&db)?;
        Ok(LogStore { db })
    }

    /// The log database's memory (`state_db::db_memory`).
    pub fn memory(&self) -> crate::state_db::DbMemory {
        crate::state_db::db_memory(&self.db, &[self.logs(), self.store()])
    }

    fn logs(&self) -> &ColumnFamily {
        self.db
            .cf_handle(CF_LOGS)
            .expect("column family created at open")
    }

    fn store(&self) -> &ColumnFamily {
        self.db
            .cf_handle(CF_STORE)
            .expect("column family created at open")
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.store(), key)
            .map_err(|e| StorageIOError::read(&e))?;
        bytes
            .map(|b| codec::decode(&b).map_err(|e| StorageIOError::read(&e).into()))
            .transpose()
    }

    fn put<T: serde::Serialize>(&self, key: &[u8], value: &T, sync: bool) -> StorageResult<()> {
        let bytes = codec::encode(value).map_err(|e| StorageIOError::write(&e))?;
        self.write(|batch, store| batch.put_cf(store, key, bytes), sync)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    /// Writes one batch, filled by `fill` (given the store column family).
    fn write(
        &self,
        fill: impl FnOnce(&mut WriteBatch, &ColumnFamily),
        sync: bool,
    ) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        fill(&mut batch, self.store());
        if sync {
            counter!("cairn_meta_raft_log_synced_writes_total").increment(1);
        }
        self.db.write_opt(batch, &write_options(sync))
    }

    fn last_log_id(&self) -> StorageResult<Option<LogId<u64>>> {
        let mut iter = self.db.iterator_cf(self.logs(), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry<TypeConfig> =
                    codec::decode(&value).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.logs(),
            IteratorMode::From(&index_key(start), Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = key_index(&key);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry<TypeConfig> =
                codec::decode(&value).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<u64>> = self.get(KEY_LAST_PURGED)?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.put(KEY_VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get(KEY_VOTE)
    }

    /// Not synced: see the module doc.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        self.put(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self.get::<Option<LogId<u64>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            records.push((index_key(entry.log_id.index), bytes));
        }
        counter!("cairn_meta_raft_log_appends_total").increment(1);
        counter!("cairn_meta_raft_log_entries_appended_total").increment(records.len() as u64);
        let logs = self.logs();
        let result = self.write(
            |batch, _| {
                for (key, bytes) in records {
                    batch.put_cf(logs, key, bytes);
                }
            },
            true,
        );
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let logs = self.logs();
        self.write(
            |batch, _| batch.delete_range_cf(logs, index_key(log_id.index), index_key(u64::MAX)),
            true,
        )
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// The purged id and the deletion in one synced batch.
    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let bytes = codec::encode(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        let logs = self.logs();
        self.write(
            |batch, store| {
                batch.put_cf(store, KEY_LAST_PURGED, bytes);
                batch.delete_range_cf(logs, index_key(0), index_key(log_id.index + 1));
            },
            true,
        )
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
