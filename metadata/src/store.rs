//! Opens the replica's RocksDB (log, vote and snapshots) and builds the two openraft
//! storage halves on it. The log store checks (and once converts) its format first.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::log_format::LogFormatError;
use crate::log_store::{LogStore, CF_LOGS, CF_STORE};
use crate::state_machine::StateMachine;

#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("open RocksDB at {path:?}: {source}")]
    RocksDb {
        path: std::path::PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("open the Raft log store at {path:?}: {source}")]
    LogFormat {
        path: std::path::PathBuf,
        #[source]
        source: LogFormatError,
    },
    #[error("load the state-machine snapshot: {0}")]
    Snapshot(#[from] openraft::StorageError<u64>),
}

/// Memtable memory of a replica's RocksDB, all column families together.
const METADATA_MEMTABLE_BYTES: usize = 32 << 20;

pub fn open(path: &Path) -> Result<(LogStore, StateMachine), OpenStoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // A fixed memtable budget for the whole database (RocksDB's default is 64 MiB per
    // column family, which a replica filled over minutes of load: BENCHMARKS.md, memory).
    opts.set_db_write_buffer_size(METADATA_MEMTABLE_BYTES);
    let cfs = [CF_LOGS, CF_STORE].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db =
        DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| OpenStoreError::RocksDb {
            path: path.into(),
            source,
        })?;
    let db = Arc::new(db);
    let log = LogStore::open(db.clone()).map_err(|source| OpenStoreError::LogFormat {
        path: path.into(),
        source,
    })?;
    let sm = StateMachine::open(db)?;
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
            let (log, sm) = open(dir.path()).expect("open store");
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
            let (_, mut sm) = open(dir.path()).unwrap();
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
        let (_, sm) = open(dir.path()).unwrap();
        let state = sm.shared();
        let state = state.read().unwrap();
        assert!(state.namespace.bucket("keep").is_ok());
        assert_eq!(state.last_applied.unwrap().index, 1);
    }
}
