//! The Raft log and hard state on RocksDB.
//!
//! Entries live in `raft_log` under their big-endian index, so key order is log order and truncation and
//! purging are range deletes. Vote, committed id and the last purged id live in `raft_state`. Every write is
//! synced before openraft is told it is durable: Raft's safety depends on it.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, OptionalSend, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, StorageError, TypeConfig};
use crate::db::{CF_RAFT_LOG, CF_RAFT_STATE, Db, cf};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Raft log storage on the node database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

impl LogStore {
    /// Log storage on `db` (which must have the Raft column families).
    pub fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }

    fn get_state<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        match self.db.get_cf(cf(&self.db, CF_RAFT_STATE), key).map_err(|e| AnyError::new(&e))? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(|e| AnyError::new(&e)),
        }
    }

    fn put_state<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), AnyError> {
        let bytes = postcard::to_stdvec(value).map_err(|e| AnyError::new(&e))?;
        self.db.put_cf_opt(cf(&self.db, CF_RAFT_STATE), key, bytes, &synced()).map_err(|e| AnyError::new(&e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, AnyError> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_RAFT_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item.map_err(|e| AnyError::new(&e))?;
                let entry: Entry = postcard::from_bytes(&v).map_err(|e| AnyError::new(&e))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let from = start.to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_RAFT_LOG), IteratorMode::From(&from, Direction::Forward)) {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            let index = u64::from_be_bytes(
                k.as_ref().try_into().map_err(|_| StorageIOError::read_logs(AnyError::error("log key is not 8 bytes")))?,
            );
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = postcard::from_bytes(&v).map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_state(KEY_LAST_PURGED).map_err(StorageIOError::read_logs)?;
        let last = self.last_entry_id().map_err(StorageIOError::read_logs)?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_state(KEY_VOTE, vote).map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_state(KEY_VOTE).map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_state(KEY_COMMITTED, &committed).map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_state::<Option<LogId>>(KEY_COMMITTED).map_err(StorageIOError::read)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            batch.put_cf(cf(&self.db, CF_RAFT_LOG), entry.log_id.index.to_be_bytes(), bytes);
        }
        let result = self.db.write_opt(batch, &synced()).map_err(std::io::Error::other);
        let failed = result.as_ref().err().map(|e| StorageIOError::write_logs(AnyError::new(e)));
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(cf(&self.db, CF_RAFT_LOG), u64::MAX.to_be_bytes());
        self.db.write_opt(batch, &synced()).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_state(KEY_LAST_PURGED, &log_id).map_err(StorageIOError::write_logs)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_RAFT_LOG), 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes());
        self.db.write_opt(batch, &synced()).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}
