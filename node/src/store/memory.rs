//! In-memory shard store, the twin of the RocksDB store for tests and simulations.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use strata_proto::{ChunkId, Holding, PartitionId, ShardHeader, ShardKey, TenantId};

use super::{
    CorruptForTest, Existing, Shard, ShardStore, ShardWrite, StoreError, Usage, WriteDecision, WriteMode, add_to_holding, decide,
    display_key, verify_incoming, verify_stored,
};

/// Shards in a `BTreeMap`, ordered like the on-disk keys.
pub struct MemoryShardStore {
    inner: RwLock<Inner>,
    capacity_bytes: u64,
}

#[derive(Default)]
struct Inner {
    shards: BTreeMap<ShardKey, Shard>,
    used_bytes: u64,
    condemned: std::collections::BTreeSet<ShardKey>,
}

fn chunk_range(tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> std::ops::RangeInclusive<ShardKey> {
    ShardKey { partition, tenant, chunk: *chunk, index: 0 }..=ShardKey { partition, tenant, chunk: *chunk, index: u8::MAX }
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
    fn put_many(&self, shards: &[ShardWrite<'_>], mode: WriteMode) -> Vec<Result<(), StoreError>> {
        let mut inner = self.write();
        shards.iter().map(|w| put_one(&mut inner, w, mode, self.capacity_bytes)).collect()
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
        inner.condemned.remove(key);
        if let Some(s) = &removed {
            inner.used_bytes -= s.data.len() as u64;
        }
        Ok(removed.is_some())
    }

    fn held(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId, include_condemned: bool) -> Result<Holding, StoreError> {
        let inner = self.read();
        let mut holding = Holding::default();
        for (k, s) in inner.shards.range(chunk_range(tenant, partition, chunk)) {
            if include_condemned || !inner.condemned.contains(k) {
                add_to_holding(&mut holding, k.index, s.header.stripe_tag());
            }
        }
        Ok(holding)
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

    fn condemn(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let keys: Vec<ShardKey> = inner.shards.range(chunk_range(tenant, partition, chunk)).map(|(k, _)| *k).collect();
        inner.condemned.extend(keys.iter().copied());
        Ok(keys.len() as u64)
    }

    fn uncondemn(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let keys: Vec<ShardKey> = inner.condemned.range(chunk_range(tenant, partition, chunk)).copied().collect();
        for k in &keys {
            inner.condemned.remove(k);
        }
        Ok(keys.len() as u64)
    }

    fn delete_condemned(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<(u64, u64), StoreError> {
        let mut inner = self.write();
        let keys: Vec<ShardKey> = inner.condemned.range(chunk_range(tenant, partition, chunk)).copied().collect();
        let mut bytes = 0;
        for k in &keys {
            inner.condemned.remove(k);
            if let Some(s) = inner.shards.remove(k) {
                bytes += s.data.len() as u64;
            }
        }
        inner.used_bytes -= bytes;
        Ok((keys.len() as u64, bytes))
    }

    fn list_chunks(
        &self,
        tenant: TenantId,
        partition: PartitionId,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkId>, StoreError> {
        let start = match after {
            Some(c) => ShardKey { partition, tenant, chunk: *c, index: u8::MAX },
            None => ShardKey { partition, tenant, chunk: ChunkId([0; 32]), index: 0 },
        };
        let inner = self.read();
        let mut out: Vec<ChunkId> = Vec::new();
        for (k, _) in inner
            .shards
            .range((Bound::Excluded(start), Bound::Unbounded))
            .take_while(|(k, _)| k.partition == partition && k.tenant == tenant)
        {
            if out.last() != Some(&k.chunk) && after != Some(&k.chunk) {
                if out.len() == limit {
                    break;
                }
                out.push(k.chunk);
            }
        }
        Ok(out)
    }
}

fn put_one(inner: &mut Inner, w: &ShardWrite<'_>, mode: WriteMode, capacity_bytes: u64) -> Result<(), StoreError> {
    verify_incoming(&w.key, &w.header, w.data)?;
    let existing = match inner.shards.get(&w.key) {
        None => Existing::Empty,
        Some(s) if s.header.verifies(w.key.index, &s.data) => Existing::Intact(s.header),
        Some(_) => Existing::Damaged,
    };
    match decide(&existing, &w.header, mode, w.replaces) {
        WriteDecision::Keep => {
            inner.condemned.remove(&w.key);
            Ok(())
        }
        WriteDecision::Conflict(reason) => {
            if mode == WriteMode::Create {
                inner.condemned.remove(&w.key);
            }
            Err(StoreError::Conflict { key: display_key(&w.key), reason })
        }
        WriteDecision::Write => {
            let previous = inner.shards.get(&w.key).map(|s| s.data.len() as u64).unwrap_or(0);
            if inner.used_bytes - previous + w.data.len() as u64 > capacity_bytes {
                return Err(StoreError::NoSpace(format!("{} bytes used of {capacity_bytes} capacity", inner.used_bytes)));
            }
            inner.used_bytes = inner.used_bytes - previous + w.data.len() as u64;
            inner.condemned.remove(&w.key);
            inner.shards.insert(w.key, Shard { header: w.header, data: w.data.to_vec() });
            Ok(())
        }
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
