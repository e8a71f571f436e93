//! The format of a replica's Raft log store on disk, checked when the store opens.
//!
//! The store records the version of its records (`codec::FORMAT_VERSION`) under the key
//! `log_format` of the store column family. At open:
//! - that version: nothing to do;
//! - no key and nothing in the store: a new replica; the key is written;
//! - another version, or records without a version: refused with the fix. (A data
//!   directory of the release before binary records is refused earlier, by its layout:
//!   `store.rs`, README "Upgrading".)

use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec::FORMAT_VERSION;
use crate::log_store::{CF_LOGS, CF_STORE};

/// The key, in the store column family, of the format version of the log store's records.
pub const KEY_LOG_FORMAT: &[u8] = b"log_format";

#[derive(Debug, thiserror::Error)]
pub enum LogFormatError {
    #[error(
        "the Raft log store is in format version {found:?}, but this release reads version \
         {FORMAT_VERSION} only: another Cairn release wrote it. Run that release, or move \
         this replica's data directory aside and add the replica again (`cairn meta add`) \
         so that it catches up from the others"
    )]
    OtherVersion { found: Vec<u8> },
    #[error(
        "the Raft log store holds records but no format version: it was not written by \
         this release. Move this replica's data directory aside and add the replica again \
         (`cairn meta add`) so that it catches up from the others"
    )]
    Unversioned,
    #[error("check the Raft log store's format: {0}")]
    RocksDb(#[from] rocksdb::Error),
}

/// Checks the store's format version, and records it in a new store.
pub fn check(db: &DB) -> Result<(), LogFormatError> {
    let store = db
        .cf_handle(CF_STORE)
        .expect("column family created at open");
    let logs = db
        .cf_handle(CF_LOGS)
        .expect("column family created at open");
    match db.get_cf(store, KEY_LOG_FORMAT)? {
        Some(v) if v == [FORMAT_VERSION] => return Ok(()),
        Some(found) => return Err(LogFormatError::OtherVersion { found }),
        None => {}
    }
    let empty = |cf| db.iterator_cf(cf, IteratorMode::Start).next().is_none();
    if !empty(logs) || !empty(store) {
        return Err(LogFormatError::Unversioned);
    }
    let mut batch = WriteBatch::default();
    batch.put_cf(store, KEY_LOG_FORMAT, [FORMAT_VERSION]);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rocksdb::{Options, DB};

    use super::*;
    use crate::log_store::index_key;
    use crate::state_db::CacheConfig;
    use crate::store::{self, OpenStoreError};

    fn raw_db(path: &Path) -> DB {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        DB::open_cf(&opts, path, [CF_LOGS, CF_STORE]).unwrap()
    }

    #[test]
    fn a_new_store_records_its_format() {
        let dir = tempfile::tempdir().unwrap();
        let db = raw_db(dir.path());
        check(&db).unwrap();
        let st = db.cf_handle(CF_STORE).unwrap();
        assert_eq!(
            db.get_cf(st, KEY_LOG_FORMAT).unwrap().as_deref(),
            Some(&[FORMAT_VERSION][..])
        );
        check(&db).unwrap();
    }

    #[test]
    fn a_store_of_another_format_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = raw_db(&dir.path().join("log"));
            let st = db.cf_handle(CF_STORE).unwrap();
            db.put_cf(st, KEY_LOG_FORMAT, [FORMAT_VERSION + 1]).unwrap();
        }
        let err = match store::open(dir.path(), CacheConfig::default()) {
            Err(e @ OpenStoreError::LogFormat { .. }) => e,
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a store of another format opened"),
        };
        let message = format!("{err}");
        assert!(message.contains("another Cairn release"), "{message}");
        assert!(message.contains("cairn meta add"), "{message}");
    }

    #[test]
    fn records_without_a_version_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = raw_db(dir.path());
        let logs = db.cf_handle(CF_LOGS).unwrap();
        db.put_cf(logs, index_key(1), [FORMAT_VERSION, 0, 0])
            .unwrap();
        assert!(matches!(check(&db), Err(LogFormatError::Unversioned)));
        let st = db.cf_handle(CF_STORE).unwrap();
        assert_eq!(db.get_cf(st, KEY_LOG_FORMAT).unwrap(), None);
    }

    #[test]
    fn a_data_directory_of_the_release_before_the_state_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // The earlier release kept one RocksDB (log and JSON snapshots) right there.
        drop(raw_db(dir.path()));
        let err = match store::open(dir.path(), CacheConfig::default()) {
            Err(e @ OpenStoreError::OldLayout { .. }) => e,
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("an old data directory opened"),
        };
        assert!(format!("{err}").contains("fresh cluster"), "{err}");
    }
}
