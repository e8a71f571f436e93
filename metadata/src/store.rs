//! Opens a replica's two databases, the Raft log (with the vote) and the applied state,
//! as the two openraft storage halves. The log store checks its format first.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::log_format::LogFormatError;
use crate::log_store::{LogStore, CF_LOGS, CF_STORE};
use crate::state_db::{CacheConfig, StateDbError};
use crate::state_machine::StateMachine;

#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("open RocksDB at {path:?}: {source}")]
    RocksDb {
        path: std::path::PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error(
        "{path:?} holds metadata written by a release before the on-disk state database \
         (its log and whole-namespace snapshots are in one RocksDB there). This release \
         cannot read it: start a fresh cluster and copy the data over (README, \"Upgrading\")"
    )]
    OldLayout { path: std::path::PathBuf },
    #[error("open the Raft log store at {path:?}: {source}")]
    LogFormat {
        path: std::path::PathBuf,
        #[source]
        source: LogFormatError,
    },
    #[error(transparent)]
    State(#[from] StateDbError),
}

/// Memtable memory of the Raft log's RocksDB.
const LOG_MEMTABLE_BYTES: usize = 32 << 20;

/// Opens a replica's store in `path`: the Raft log and vote in `path/log`, the applied
/// state in `path/state`.
pub fn open(path: &Path, cache: CacheConfig) -> Result<(LogStore, StateMachine), OpenStoreError> {
    if path.join("CURRENT").exists() {
        return Err(OpenStoreError::OldLayout { path: path.into() });
    }
    let log_path = path.join("log");
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // A fixed memtable budget (RocksDB's default is 64 MiB per column family, which a
    // replica filled over minutes of load: BENCHMARKS.md, memory).
    opts.set_db_write_buffer_size(LOG_MEMTABLE_BYTES);
    let cfs = [CF_LOGS, CF_STORE].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, &log_path, cfs).map_err(|source| {
        OpenStoreError::RocksDb {
            path: log_path.clone(),
            source,
        }
    })?;
    let log = LogStore::open(Arc::new(db)).map_err(|source| OpenStoreError::LogFormat {
        path: log_path.clone(),
        source,
    })?;
    let sm = StateMachine::open(&path.join("state"), cache)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TypeConfig;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
            let dir = tempfile::tempdir().expect("create temp dir");
            let (log, sm) = open(dir.path(), CacheConfig::default()).expect("open store");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite against the RocksDB log and the state machine.
    #[test]
    fn rocksdb_store_passes_the_openraft_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[test]
    fn snapshot_survives_reopen() {
        use crate::namespace::Command;
        use openraft::storage::RaftStateMachine;
        use openraft::{Entry, EntryPayload, LogId, RaftSnapshotBuilder};
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (_, mut sm) = open(dir.path(), CacheConfig::default()).unwrap();
            let entry = Entry::<TypeConfig> {
                log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Normal(Command::CreateBucket {
                    name: "keep".into(),
                    redundancy: cairn_common::Redundancy::DEFAULT,
                    mtime: 0,
                }),
            };
            sm.apply([entry]).await.unwrap();
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
        });
        let (_, sm) = open(dir.path(), CacheConfig::default()).unwrap();
        let state = sm.shared();
        let state = state.read().unwrap();
        assert!(state.namespace.bucket("keep").is_ok());
        assert_eq!(state.last_applied.unwrap().index, 1);
    }
}
