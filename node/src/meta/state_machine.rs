//! The Raft state machine: [`MetaState`] in memory, made durable by snapshots stored in RocksDB.
//!
//! Applying a committed entry changes only memory; durability comes from the log (entries are kept until a
//! snapshot covers them) and from snapshots, which are written to `raft_state` with a sync before openraft may
//! purge the log behind them. At start-up the last snapshot is loaded and openraft re-applies the committed
//! entries after it. Readers in the node see the state through [`MetaReader`]; map changes are also pushed on a
//! watch channel so routing tables update without polling.

// openraft's StorageError is large, and it is what the storage traits must return; boxing it in our helpers
// would only add conversions at every call.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::WriteOptions;
use serde::{Deserialize, Serialize};
use strata_proto::ClusterMap;
use tokio::sync::watch;

use super::command::MetaResponse;
use super::state::MetaState;
use super::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::db::{CF_RAFT_STATE, Db, cf};

const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// What is applied, with the Raft bookkeeping openraft asks for.
#[derive(Default)]
struct Applied {
    state: MetaState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Shared read access to the applied state.
#[derive(Clone)]
pub struct MetaReader {
    applied: Arc<RwLock<Applied>>,
    map_tx: Arc<watch::Sender<Arc<ClusterMap>>>,
}

impl MetaReader {
    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&MetaState) -> T) -> T {
        f(&self.guard().state)
    }

    fn guard(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current cluster map.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.map_tx.borrow().clone()
    }

    /// A receiver that sees every new map.
    pub fn subscribe_map(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.map_tx.subscribe()
    }

    /// Index of the last applied entry.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.guard().last_applied.map(|l| l.index)
    }

    /// A reader over a fixed state, for tests of code that only reads the map.
    #[cfg(test)]
    pub fn for_test(state: MetaState) -> Self {
        let map = Arc::new(state.map.clone());
        let applied = Applied { state, ..Applied::default() };
        MetaReader { applied: Arc::new(RwLock::new(applied)), map_tx: Arc::new(watch::channel(map).0) }
    }

    /// Replaces the map seen by readers made with [`MetaReader::for_test`].
    #[cfg(test)]
    pub fn set_map_for_test(&self, map: ClusterMap) {
        self.map_tx.send_replace(Arc::new(map));
    }
}

/// Snapshot as stored on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Db>,
    reader: MetaReader,
    snapshots_built: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the state machine, loading the last snapshot from `db`.
    pub fn open(db: Arc<Db>) -> Result<Self, StorageError> {
        let mut applied = Applied::default();
        if let Some(bytes) =
            db.get_cf(cf(&db, CF_RAFT_STATE), KEY_SNAPSHOT).map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?
        {
            let stored: StoredSnapshot =
                postcard::from_bytes(&bytes).map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
            applied.state = MetaState::decode(&stored.data)
                .map_err(|e| StorageIOError::read_snapshot(Some(stored.meta.signature()), AnyError::error(e)))?;
            applied.last_applied = stored.meta.last_log_id;
            applied.membership = stored.meta.last_membership;
        }
        let (map_tx, _) = watch::channel(Arc::new(applied.state.map.clone()));
        let reader = MetaReader { applied: Arc::new(RwLock::new(applied)), map_tx: Arc::new(map_tx) };
        Ok(StateMachineStore { db, reader, snapshots_built: Arc::new(AtomicU64::new(0)) })
    }

    /// Read access for the rest of the node.
    pub fn reader(&self) -> MetaReader {
        self.reader.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.reader.applied.write().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_map_if_changed(&self, map: &ClusterMap) {
        if self.reader.map_tx.borrow().as_ref() != map {
            self.reader.map_tx.send_replace(Arc::new(map.clone()));
        }
    }

    fn persist(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let sig = Some(stored.meta.signature());
        let bytes = postcard::to_stdvec(stored).map_err(|e| StorageIOError::write_snapshot(sig.clone(), AnyError::new(&e)))?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT_STATE), KEY_SNAPSHOT, bytes, &opts)
            .map_err(|e| StorageIOError::write_snapshot(sig, AnyError::new(&e)).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_log_id, last_membership) = {
            let a = self.reader.guard();
            (a.state.encode(), a.last_applied, a.membership.clone())
        };
        let n = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{n}", l.leader_id.term, l.index),
            None => format!("empty-{n}"),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.persist(&stored)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.reader.guard();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let map = {
            let mut a = self.write();
            for entry in entries {
                a.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => MetaResponse::Ok,
                    EntryPayload::Normal(cmd) => a.state.apply(&cmd),
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        MetaResponse::Ok
                    }
                };
                out.push(response);
            }
            a.state.map.clone()
        };
        self.publish_map_if_changed(&map);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = MetaState::decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e)))?;
        self.persist(&StoredSnapshot { meta: meta.clone(), data })?;
        let map = state.map.clone();
        {
            let mut a = self.write();
            a.state = state;
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
        }
        self.publish_map_if_changed(&map);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self
            .db
            .get_cf(cf(&self.db, CF_RAFT_STATE), KEY_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot = postcard::from_bytes(&bytes).map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}
