//! The state database: the applied metadata state in its own RocksDB, one column family
//! per table (inodes, directory entries, chunks and their placements, ...), values in a
//! compact binary encoding (postcard). The namespace reads it through typed `Table`s;
//! the state machine writes each applied batch of commands as one `WriteBatch` together
//! with the applied log id, so state and applied index never disagree.
//!
//! Memory is bounded by configuration, not by the namespace: one block cache for every
//! table (index and filter blocks included) and one memtable budget.

pub mod keys;
pub mod table;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use keys::Key;
pub use table::{Change, Table};

/// Settings, counters, the applied log id and the membership.
pub const CF_META: &str = "meta";
pub const CF_INODES: &str = "inodes";
/// Directory entries: (parent, name) -> inode.
pub const CF_DENTRIES: &str = "dentries";
pub const CF_BUCKETS: &str = "buckets";
/// Bucket root inode -> bucket name.
pub const CF_BUCKET_NAMES: &str = "bucket_names";
pub const CF_CHUNKS: &str = "chunks";
pub const CF_DEGRADED: &str = "degraded";
/// (node, chunk, shard index) for every placed shard: derived from `chunks`.
pub const CF_NODE_SHARDS: &str = "node_shards";
pub const CF_CHUNK_REFS: &str = "chunk_refs";
pub const CF_NODES: &str = "nodes";
pub const CF_GC: &str = "gc";
pub const CF_RETIRED: &str = "retired";
pub const CF_RETIRED_ORDER: &str = "retired_order";
pub const CF_SESSIONS: &str = "sessions";
/// (session, change sequence number) -> the change's first answer.
pub const CF_ANSWERS: &str = "answers";
pub const CF_HOLDS: &str = "holds";
pub const CF_LOCKS: &str = "locks";
pub const CF_GRANTS: &str = "grants";
pub const CF_TOKENS: &str = "tokens";
/// Inode -> the file's inline bytes.
pub const CF_INLINE: &str = "inline";

pub const ALL_CFS: [&str; 20] = [
    CF_META,
    CF_INODES,
    CF_DENTRIES,
    CF_BUCKETS,
    CF_BUCKET_NAMES,
    CF_CHUNKS,
    CF_DEGRADED,
    CF_NODE_SHARDS,
    CF_CHUNK_REFS,
    CF_NODES,
    CF_GC,
    CF_RETIRED,
    CF_RETIRED_ORDER,
    CF_SESSIONS,
    CF_ANSWERS,
    CF_HOLDS,
    CF_LOCKS,
    CF_GRANTS,
    CF_TOKENS,
    CF_INLINE,
];

/// The applied log id (JSON), written with every batch by the state machine.
pub const KEY_APPLIED: &[u8] = b"applied";

/// The layout of the tables and their values; a database of another version is refused.
/// Version 2: files' inline bytes (the `inline` table, their count and limits).
pub const FORMAT_VERSION: u32 = 2;
const KEY_FORMAT: &[u8] = b"format";

/// Memory the state database may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Block cache for every table, index and filter blocks included.
    pub block_cache_bytes: usize,
    /// Memtables of every table together.
    pub memtable_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            block_cache_bytes: 256 << 20,
            memtable_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    #[error("open the metadata state database at {path:?}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error(
        "the metadata state database at {path:?} has format version {found}, this release \
         reads version {FORMAT_VERSION}; it was written by another release of Cairn"
    )]
    Format {
        path: std::path::PathBuf,
        found: u32,
    },
    #[error("prepare the metadata state directory {path:?}: {source}")]
    Directory {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write the metadata state database: {0}")]
    Write(#[source] rocksdb::Error),
    #[error("checkpoint the metadata state database to {path:?}: {source}")]
    Checkpoint {
        path: std::path::PathBuf,
        #[source]
        source: rocksdb::Error,
    },
}

/// A RocksDB database's memory by kind, in bytes, from RocksDB's own accounting: the
/// block cache (data, index and filter blocks), the memtables of every column family,
/// and table readers outside the cache. `None` for a figure RocksDB does not report.
#[derive(Clone, Copy, Debug, Default)]
pub struct DbMemory {
    pub block_cache: Option<u64>,
    pub memtables: Option<u64>,
    pub table_readers: Option<u64>,
}

/// `db`'s memory over the column families `cfs` (which share one block cache).
pub fn db_memory(db: &DB, cfs: &[&ColumnFamily]) -> DbMemory {
    let sum = |property: &str| -> Option<u64> {
        cfs.iter().try_fold(0u64, |total, cf| {
            Some(total + db.property_int_value_cf(*cf, property).ok()??)
        })
    };
    DbMemory {
        // Every column family reports the whole shared cache: ask one.
        block_cache: cfs.first().and_then(|cf| {
            db.property_int_value_cf(*cf, "rocksdb.block-cache-usage")
                .ok()?
        }),
        memtables: sum("rocksdb.cur-size-all-mem-tables"),
        table_readers: sum("rocksdb.estimate-table-readers-mem"),
    }
}

/// A handle on the state database (cheap to clone).
#[derive(Clone)]
pub struct StateDb {
    db: Arc<DB>,
    /// A test database lives in a temporary directory as long as a handle does.
    #[cfg(test)]
    _dir: Option<Arc<tempfile::TempDir>>,
}

fn options(cache: &CacheConfig) -> (Options, Vec<ColumnFamilyDescriptor>) {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_db_write_buffer_size(cache.memtable_bytes);
    opts.set_max_background_jobs(2);
    let block_cache = Cache::new_lru_cache(cache.block_cache_bytes);
    let cfs = ALL_CFS
        .iter()
        .map(|name| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&block_cache);
            // Index and filter blocks live in the bounded block cache, in partitions of
            // about 4 KiB under a small pinned top level: a table file of millions of
            // keys has a filter of megabytes, and whole such blocks, evicted from their
            // cache shard by other reads, were read again and checksummed for every
            // point lookup that consulted them (listings at 10 million inodes took 30
            // times longer, all in reading filter blocks).
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_metadata_block_size(4096);
            table.set_pin_top_level_index_and_filter(true);
            table.set_bloom_filter(10.0, false);
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf)
        })
        .collect();
    (opts, cfs)
}

impl StateDb {
    /// Opens (or creates) the state database at `path`.
    pub fn open(path: &Path, cache: &CacheConfig) -> Result<Self, StateDbError> {
        let (opts, cfs) = options(cache);
        let db =
            DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StateDbError::Open {
                path: path.into(),
                source,
            })?;
        let state = StateDb {
            db: Arc::new(db),
            #[cfg(test)]
            _dir: None,
        };
        match state.get_meta::<u32>(KEY_FORMAT) {
            None => {
                let mut batch = WriteBatch::default();
                state.put_meta(&mut batch, KEY_FORMAT, &FORMAT_VERSION);
                state.write_synced(batch)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(StateDbError::Format {
                    path: path.into(),
                    found,
                })
            }
        }
        Ok(state)
    }

    /// An empty database in a temporary directory (unit tests).
    #[cfg(test)]
    pub fn temporary() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let mut db = StateDb::open(dir.path(), &CacheConfig::default()).expect("open state db");
        db._dir = Some(Arc::new(dir));
        db
    }

    /// What the database holds in memory now (`db_memory`).
    pub fn memory(&self) -> DbMemory {
        let cfs: Vec<&ColumnFamily> = ALL_CFS.iter().map(|name| self.cf(name)).collect();
        db_memory(&self.db, &cfs)
    }

    pub fn raw(&self) -> &DB {
        &self.db
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    pub fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Option<T> {
        self.db
            .get_pinned_cf(self.cf(CF_META), key)
            .unwrap_or_else(|e| table::unreadable(CF_META, &e))
            .map(|b| decode_value(CF_META, &b))
    }

    pub fn put_meta<T: Serialize>(&self, batch: &mut WriteBatch, key: &[u8], value: &T) {
        batch.put_cf(self.cf(CF_META), key, encode_value(value));
    }

    /// Writes a batch of applied commands. Not synced: the Raft log is, and after a crash
    /// the log after the applied id stored here is applied again.
    pub fn write(&self, batch: WriteBatch) -> Result<(), StateDbError> {
        self.db.write(batch).map_err(StateDbError::Write)
    }

    pub fn write_synced(&self, batch: WriteBatch) -> Result<(), StateDbError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(StateDbError::Write)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// How many handles on the database exist (1: only this one).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.db)
    }

    /// A consistent copy of the database in `path` (hard links to its table files, after
    /// a flush of the memtables, so the live database is durable up to it as well).
    pub fn checkpoint(&self, path: &Path) -> Result<(), StateDbError> {
        let err = |source| StateDbError::Checkpoint {
            path: path.into(),
            source,
        };
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(err)?;
        checkpoint.create_checkpoint(path).map_err(err)
    }

    /// The applied log id and a blake3 of every table's keys and values, both from one
    /// consistent view (replicas at the same applied id have the same digest).
    pub fn digest(&self) -> (Option<openraft::LogId<u64>>, blake3::Hash) {
        let view = self.db.snapshot();
        let applied = view
            .get_cf(self.cf(CF_META), KEY_APPLIED)
            .unwrap_or_else(|e| table::unreadable(CF_META, &e))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .flatten();
        let mut hasher = blake3::Hasher::new();
        for cf in ALL_CFS {
            hasher.update(cf.as_bytes());
            for item in view.iterator_cf(self.cf(cf), rocksdb::IteratorMode::Start) {
                let (k, v) = item.unwrap_or_else(|e| table::unreadable(cf, &e));
                hasher.update(&(k.len() as u64).to_le_bytes());
                hasher.update(&k);
                hasher.update(&(v.len() as u64).to_le_bytes());
                hasher.update(&v);
            }
        }
        (applied, hasher.finalize())
    }
}

pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("state values always encode")
}

pub fn decode_value<T: DeserializeOwned>(cf: &str, bytes: &[u8]) -> T {
    postcard::from_bytes(bytes)
        .unwrap_or_else(|e| table::unreadable(cf, &format!("undecodable value: {e}")))
}
