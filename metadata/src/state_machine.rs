//! The Raft state machine (openraft `RaftStateMachine`): the in-memory `Namespace`
//! image, persisted as RocksDB snapshots. After a restart the image is the last snapshot,
//! and openraft re-applies the committed log after it. Queries read the image through
//! `SharedState`; writes come only from `apply`.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::AnyError;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::log_store::CF_STORE;
use crate::namespace::CommandResult;
use crate::namespace::Namespace;
use crate::types::TypeConfig;

const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

type StorageResult<T> = Result<T, StorageError<u64>>;

pub struct SmData {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    pub namespace: Namespace,
}

/// Read access to the applied state, shared with the gRPC services.
pub type SharedState = Arc<RwLock<SmData>>;

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    state: SharedState,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

impl StateMachine {
    /// Loads the image from the last snapshot, or starts empty.
    pub fn open(db: Arc<DB>) -> StorageResult<Self> {
        let sm = StateMachine {
            db,
            state: Arc::new(RwLock::new(SmData {
                last_applied: None,
                membership: StoredMembership::default(),
                namespace: Namespace::new(),
            })),
            snapshot_seq: Arc::default(),
        };
        if let Some(snapshot) = sm.load_snapshot()? {
            let namespace = decode_namespace(&snapshot.meta, snapshot.snapshot.get_ref())?;
            let mut state = sm.state.write().expect("state lock poisoned");
            state.last_applied = snapshot.meta.last_log_id;
            state.membership = snapshot.meta.last_membership.clone();
            state.namespace = namespace;
        }
        Ok(sm)
    }

    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    fn load_snapshot(&self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let cf = self
            .db
            .cf_handle(CF_STORE)
            .expect("column family created at open");
        let Some(meta) = self
            .db
            .get_cf(cf, KEY_SNAPSHOT_META)
            .map_err(|e| read_err(&e))?
        else {
            return Ok(None);
        };
        let meta: SnapshotMeta<u64, BasicNode> =
            serde_json::from_slice(&meta).map_err(|e| read_err(&e))?;
        let data = self
            .db
            .get_cf(cf, KEY_SNAPSHOT_DATA)
            .map_err(|e| read_err(&e))?
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }

    fn save_snapshot(&self, meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> StorageResult<()> {
        // The builder runs in its own task: never let an older snapshot replace a newer
        // installed one (the log before the newer one may already be purged).
        if let Some(stored) = self.load_snapshot()? {
            if stored.meta.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let cf = self
            .db
            .cf_handle(CF_STORE)
            .expect("column family created at open");
        let write_err = |e: &dyn std::fmt::Display| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e))
        };
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| write_err(&e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, KEY_SNAPSHOT_META, meta_bytes);
        batch.put_cf(cf, KEY_SNAPSHOT_DATA, data);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| write_err(&e).into())
    }
}

fn read_err(e: &impl std::fmt::Display) -> StorageIOError<u64> {
    StorageIOError::read_snapshot(None, AnyError::error(e))
}

fn decode_namespace(meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> StorageResult<Namespace> {
    serde_json::from_slice(data)
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e).into())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (data, last_applied, membership) = {
            let state = self.state.read().expect("state lock poisoned");
            let data = serde_json::to_vec(&state.namespace)
                .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            (data, state.last_applied, state.membership.clone())
        };
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.save_snapshot(&meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
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
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let namespace = decode_namespace(meta, &data)?;
        self.save_snapshot(meta, &data)?;
        let mut state = self.state.write().expect("state lock poisoned");
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.namespace = namespace;
        tracing::info!(last_log_id = ?meta.last_log_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.load_snapshot()
    }
}
