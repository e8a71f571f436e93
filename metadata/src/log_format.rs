//! The format of a replica's Raft log store on disk, checked when the store opens.
//!
//! The store records the version of its records (`codec::FORMAT_VERSION`) under the key
//! `log_format` of the store column family. At open:
//! - that version: nothing to do;
//! - another version: refused with [`LogFormatError::Newer`] (a newer release wrote it;
//!   running an older release on it would misread it);
//! - no key and nothing in the log store (no entries, vote, committed or purged id): a
//!   new replica; the key is written;
//! - no key and records: a store of a release before binary records, whose records are
//!   JSON. They are converted in place, the key written in the same synced batch, so a
//!   crash during the conversion leaves the JSON store as it was and the next start
//!   converts again. A record that is not JSON there refuses the start
//!   ([`LogFormatError::NotJson`]).
//!
//! Only the log store's records are converted (entries, vote, committed and purged ids):
//! the state machine's keys in the same column family are not this module's.

use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, CodecError, FORMAT_VERSION, LEGACY_JSON_FIRST_BYTE};
use crate::log_store::{CF_LOGS, CF_STORE, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};
use crate::types::TypeConfig;

/// The key, in the store column family, of the format version of the log store's records.
pub const KEY_LOG_FORMAT: &[u8] = b"log_format";

#[derive(Debug, thiserror::Error)]
pub enum LogFormatError {
    #[error(
        "the Raft log store is in format version {found:?}, but this release reads version \
         {FORMAT_VERSION} only: a newer Cairn release wrote it. Run that release, or move \
         this replica's data directory aside and add the replica again (`cairn meta add`) \
         so that it catches up from the others"
    )]
    Newer { found: Vec<u8> },
    #[error(
        "the Raft log store has no format version and its record {key} is not the JSON of \
         an earlier release (first byte {first:#04x}): refusing to guess its format"
    )]
    NotJson { key: String, first: u8 },
    #[error("convert the Raft log store's JSON record {key} to format {FORMAT_VERSION}: {source}")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("convert the Raft log store's record {key} to format {FORMAT_VERSION}: {source}")]
    Encode {
        key: String,
        #[source]
        source: CodecError,
    },
    #[error("check the Raft log store's format: {0}")]
    RocksDb(#[from] rocksdb::Error),
}

/// Checks the store's format, writes it on a new store and converts a JSON one (see the
/// module doc). Returns how many log entries were converted.
pub fn check_or_convert(db: &DB) -> Result<usize, LogFormatError> {
    let store = db
        .cf_handle(CF_STORE)
        .expect("column family created at open");
    let logs = db
        .cf_handle(CF_LOGS)
        .expect("column family created at open");
    match db.get_cf(store, KEY_LOG_FORMAT)? {
        Some(v) if v == [FORMAT_VERSION] => return Ok(0),
        Some(found) => return Err(LogFormatError::Newer { found }),
        None => {}
    }
    let mut batch = WriteBatch::default();
    let mut entries = 0;
    for item in db.iterator_cf(logs, IteratorMode::Start) {
        let (key, value) = item?;
        let name = match <[u8; 8]>::try_from(&key[..]) {
            Ok(index) => format!("log entry {}", u64::from_be_bytes(index)),
            Err(_) => format!("log key {key:?}"),
        };
        let bytes = convert::<openraft::Entry<TypeConfig>>(&name, &value)?;
        batch.put_cf(logs, &key, bytes);
        entries += 1;
    }
    let mut others = 0;
    for (key, convert) in [
        (KEY_VOTE, convert::<openraft::Vote<u64>> as Converter),
        (KEY_COMMITTED, convert::<Option<openraft::LogId<u64>>>),
        (KEY_LAST_PURGED, convert::<openraft::LogId<u64>>),
    ] {
        if let Some(value) = db.get_cf(store, key)? {
            let bytes = convert(&String::from_utf8_lossy(key), &value)?;
            batch.put_cf(store, key, bytes);
            others += 1;
        }
    }
    batch.put_cf(store, KEY_LOG_FORMAT, [FORMAT_VERSION]);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    if entries + others > 0 {
        tracing::warn!(
            entries,
            "converted the Raft log store from the JSON format of an earlier release to \
             format {FORMAT_VERSION}"
        );
    }
    Ok(entries)
}

type Converter = fn(&str, &[u8]) -> Result<Vec<u8>, LogFormatError>;

/// One JSON record of an earlier release as a record of [`FORMAT_VERSION`].
fn convert<T: Serialize + DeserializeOwned>(
    key: &str,
    json: &[u8],
) -> Result<Vec<u8>, LogFormatError> {
    let first = json.first().copied().unwrap_or(0);
    // Every JSON record written is an object or `null` (a committed id of None).
    if first != LEGACY_JSON_FIRST_BYTE && json != b"null" {
        return Err(LogFormatError::NotJson {
            key: key.to_string(),
            first,
        });
    }
    let value: T = serde_json::from_slice(json).map_err(|source| LogFormatError::Json {
        key: key.to_string(),
        source,
    })?;
    codec::encode(&value).map_err(|source| LogFormatError::Encode {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
    use rocksdb::{Options, DB};

    use super::*;
    use crate::log_store::index_key;
    use crate::namespace::Command;
    use crate::store::{self, OpenStoreError};

    fn raw_db(path: &Path) -> DB {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        DB::open_cf(&opts, path, [CF_LOGS, CF_STORE]).unwrap()
    }

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Command::RemoveNode { node: index }),
        }
    }

    /// Writes what the release before binary records wrote: JSON values, no version.
    fn write_json_store(path: &Path, indexes: std::ops::RangeInclusive<u64>) {
        let db = raw_db(path);
        let (logs, st) = (
            db.cf_handle(CF_LOGS).unwrap(),
            db.cf_handle(CF_STORE).unwrap(),
        );
        for i in indexes {
            db.put_cf(logs, index_key(i), serde_json::to_vec(&entry(i)).unwrap())
                .unwrap();
        }
        let vote = Vote::new_committed(2, 1u64);
        db.put_cf(st, KEY_VOTE, serde_json::to_vec(&vote).unwrap())
            .unwrap();
        db.put_cf(st, KEY_COMMITTED, b"null").unwrap();
        let purged = LogId::new(CommittedLeaderId::new(1, 1), 2);
        db.put_cf(st, KEY_LAST_PURGED, serde_json::to_vec(&purged).unwrap())
            .unwrap();
    }

    #[test]
    fn a_json_store_of_an_earlier_release_is_converted_once() {
        let dir = tempfile::tempdir().unwrap();
        write_json_store(dir.path(), 3..=5);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let read_back = || {
            let (mut log, _) = store::open(dir.path()).unwrap();
            rt.block_on(async {
                let entries = log.try_get_log_entries(0..100).await.unwrap();
                let state = log.get_log_state().await.unwrap();
                let vote = log.read_vote().await.unwrap();
                let committed = log.read_committed().await.unwrap();
                (entries, state, vote, committed)
            })
        };
        let (entries, state, vote, committed) = read_back();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [3, 4, 5]);
        assert_eq!(format!("{:?}", entries[1]), format!("{:?}", entry(4)));
        assert_eq!(state.last_purged_log_id.unwrap().index, 2);
        assert_eq!(state.last_log_id.unwrap().index, 5);
        assert_eq!(vote, Some(Vote::new_committed(2, 1)));
        assert_eq!(committed, None);

        // Binary now, version recorded: a second open converts nothing.
        let db = raw_db(dir.path());
        assert_eq!(check_or_convert(&db).unwrap(), 0);
        let logs = db.cf_handle(CF_LOGS).unwrap();
        let raw = db.get_cf(logs, index_key(3)).unwrap().unwrap();
        assert_eq!(raw[0], FORMAT_VERSION);
        drop(db);
        assert_eq!(read_back().0.len(), 3);
    }

    #[test]
    fn a_new_store_records_its_format() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(raw_db(dir.path()));
        assert_eq!(check_or_convert(&db).unwrap(), 0);
        let st = db.cf_handle(CF_STORE).unwrap();
        assert_eq!(
            db.get_cf(st, KEY_LOG_FORMAT).unwrap().as_deref(),
            Some(&[FORMAT_VERSION][..])
        );
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = raw_db(dir.path());
            let st = db.cf_handle(CF_STORE).unwrap();
            db.put_cf(st, KEY_LOG_FORMAT, [FORMAT_VERSION + 1]).unwrap();
        }
        let err = match store::open(dir.path()) {
            Err(e @ OpenStoreError::LogFormat { .. }) => e,
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a newer store opened"),
        };
        let message = format!("{err}");
        assert!(message.contains("newer Cairn release"), "{message}");
        assert!(message.contains("cairn meta add"), "{message}");
    }

    #[test]
    fn a_store_without_version_that_is_not_json_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = raw_db(dir.path());
            let logs = db.cf_handle(CF_LOGS).unwrap();
            db.put_cf(logs, index_key(1), [FORMAT_VERSION, 0, 0])
                .unwrap();
        }
        let db = raw_db(dir.path());
        let err = check_or_convert(&db).unwrap_err();
        assert!(
            matches!(
                err,
                LogFormatError::NotJson {
                    first: FORMAT_VERSION,
                    ..
                }
            ),
            "{err}"
        );
        let st = db.cf_handle(CF_STORE).unwrap();
        assert_eq!(db.get_cf(st, KEY_LOG_FORMAT).unwrap(), None);
    }
}
