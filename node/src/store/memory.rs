//! In-memory shard store, the twin of the RocksDB store for tests and simulations.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use strata_proto::{ChunkId, PartitionId, ShardHeader, ShardKey, TenantId};

use super::{CorruptForTest, Shard, ShardStore, StoreError, Usage, verify_incoming, verify_stored};

/// Shards in a `BTreeMap`, ordered like the on-disk keys.
pub struct MemoryShardStore {
    inner: RwLock<Inner>,
    capacity_bytes: u64,
}

#[derive(Default)]
struct Inner {
    shards: BTreeMap<ShardKey, Shard>,
    used_bytes: u64,
}

impl MemoryShardStore {
    /// An empty store that accepts up to `capacity_bytes` of shard data.
    pub fn new(capacity_bytes: u64) -> Self {
        MemoryShardStore { inner: RwLock::new(Inner::default()), capacity_bytes }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShardStore for MemoryShardStore {
    fn put(&self, key: &ShardKey, header: &ShardHeader, data: &[u8]) -> Result<(), StoreError> {
        verify_incoming(key, header, data)?;
        let mut inner = self.write();
        let existing = inner.shards.get(key).map(|s| s.data.len() as u64).unwrap_or(0);
        if inner.shards.get(key).is_some_and(|s| s.header == *header && s.data == data) {
            return Ok(());
        }
        if inner.used_bytes - existing + data.len() as u64 > self.capacity_bytes {
            return Err(StoreError::NoSpace(format!("{} bytes used of {} capacity", inner.used_bytes, self.capacity_bytes)));
        }
        inner.used_bytes = inner.used_bytes - existing + data.len() as u64;
        inner.shards.insert(*key, Shard { header: *header, data: data.to_vec() });
        Ok(())
    }

    fn get(&self, key: &ShardKey) -> Result<Option<Shard>, StoreError> {
        let Some(shard) = self.read().shards.get(key).cloned() else {
            return Ok(None);
        };
        verify_stored(key, shard.header, shard.data).map(Some)
    }

    fn delete(&self, key: &ShardKey) -> Result<bool, StoreError> {
        let mut inner = self.write();
        let removed = inner.shards.remove(key);
        if let Some(s) = &removed {
            inner.used_bytes -= s.data.len() as u64;
        }
        Ok(removed.is_some())
    }

    fn held(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError> {
        let lo = ShardKey { partition, tenant, chunk: *chunk, index: 0 };
        let hi = ShardKey { partition, tenant, chunk: *chunk, index: u8::MAX };
        Ok(self.read().shards.range(lo..=hi).filter(|(k, _)| k.index < 64).fold(0u64, |mask, (k, _)| mask | 1 << k.index))
    }

    fn scan_partition(
        &self,
        partition: PartitionId,
        after: Option<&ShardKey>,
        limit: usize,
    ) -> Result<Vec<(ShardKey, ShardHeader)>, StoreError> {
        let start = match after {
            Some(k) => Bound::Excluded(*k),
            None => Bound::Included(ShardKey { partition, tenant: TenantId(0), chunk: ChunkId([0; 32]), index: 0 }),
        };
        Ok(self
            .read()
            .shards
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.partition == partition)
            .take(limit)
            .map(|(k, s)| (*k, s.header))
            .collect())
    }

    fn usage(&self) -> Usage {
        let inner = self.read();
        Usage { shards: inner.shards.len() as u64, bytes: inner.used_bytes }
    }

    fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}

impl CorruptForTest for MemoryShardStore {
    fn flip_bit(&self, key: &ShardKey, byte: usize) -> bool {
        match self.write().shards.get_mut(key) {
            Some(s) if !s.data.is_empty() => {
                let i = byte % s.data.len();
                s.data[i] ^= 1;
                true
            }
            _ => false,
        }
    }
}
