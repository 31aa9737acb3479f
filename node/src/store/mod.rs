//! The shard store: where a node keeps the shards it holds.
//!
//! [`ShardStore`] knows nothing of RocksDB; [`RocksShardStore`] implements it for production and
//! [`MemoryShardStore`] for tests, and one conformance suite (`conformance.rs`) runs against both, as TiKV does
//! with `engine_traits`. A store verifies every shard's checksum when it is written and again on every read: a
//! shard that fails is reported as [`StoreError::Corrupt`] and its bytes are never returned. The store enforces
//! its configured capacity and reports a full disk as [`StoreError::NoSpace`] without damaging what it holds.
//! It is synchronous; async callers run it on the blocking pool.

mod format;
mod memory;
mod rocks;

#[cfg(test)]
mod conformance;

use strata_proto::{ChunkId, PartitionId, ShardHeader, ShardKey, TenantId};

pub use format::{decode_key, encode_key, key_prefix};
pub use memory::MemoryShardStore;
pub use rocks::RocksShardStore;

/// Errors at the shard store boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stored shard fails its checksum or its record is unreadable; it must be rebuilt.
    #[error("shard {key} is corrupt: {reason}")]
    Corrupt {
        /// Which shard (displayed form).
        key: String,
        /// What failed.
        reason: String,
    },
    /// Data offered for writing does not match the checksum in its header.
    #[error("shard {key} does not match its checksum; not stored")]
    ChecksumMismatch {
        /// Which shard.
        key: String,
    },
    /// Writing would exceed the configured capacity or the disk is full.
    #[error("no space for shard: {0}")]
    NoSpace(String),
    /// The storage engine failed.
    #[error("shard store I/O error: {0}")]
    Io(String),
}

/// How much a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of shards.
    pub shards: u64,
    /// Bytes of shard data (headers excluded).
    pub bytes: u64,
}

/// A stored shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Verification data.
    pub header: ShardHeader,
    /// The shard bytes.
    pub data: Vec<u8>,
}

/// Storage of shards on one node.
pub trait ShardStore: Send + Sync + 'static {
    /// Stores a shard after checking `data` against `header`. Storing the same shard again is a no-op;
    /// storing different bytes under an existing key replaces them (used to repair a corrupt shard).
    fn put(&self, key: &ShardKey, header: &ShardHeader, data: &[u8]) -> Result<(), StoreError>;

    /// Stores several shards, with one durable write where the engine allows; one result per shard, in order.
    fn put_many(&self, shards: &[(ShardKey, ShardHeader, &[u8])]) -> Vec<Result<(), StoreError>> {
        shards.iter().map(|(k, h, d)| self.put(k, h, d)).collect()
    }

    /// Reads a shard, verifying its checksum. `Ok(None)` when absent.
    fn get(&self, key: &ShardKey) -> Result<Option<Shard>, StoreError>;

    /// Deletes a shard; returns whether it existed.
    fn delete(&self, key: &ShardKey) -> Result<bool, StoreError>;

    /// Bit mask of the shard indices held for one chunk of one tenant. Condemned shards (see `condemn`) count
    /// only with `include_condemned`.
    fn held(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId, include_condemned: bool) -> Result<u64, StoreError>;

    /// Up to `limit` shard keys of `partition` in key order, strictly after `after` when given.
    fn scan_partition(
        &self,
        partition: PartitionId,
        after: Option<&ShardKey>,
        limit: usize,
    ) -> Result<Vec<(ShardKey, ShardHeader)>, StoreError>;

    /// Current usage.
    fn usage(&self) -> Usage;

    /// Configured capacity in bytes.
    fn capacity_bytes(&self) -> u64;

    /// Marks every shard of a tenant's chunk held here as condemned (garbage collection, RFC 0001): `held`
    /// stops counting them, `get` still returns them, and storing the shard again clears the mark. Returns
    /// how many shards were marked.
    fn condemn(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError>;

    /// Clears the condemned mark of a chunk's shards; returns how many were marked.
    fn uncondemn(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError>;

    /// Deletes those shards of a chunk that are still condemned; returns how many and their bytes.
    fn delete_condemned(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<(u64, u64), StoreError>;

    /// Up to `limit` distinct chunk ids a tenant has shards of in `partition`, in order, after `after`.
    fn list_chunks(
        &self,
        tenant: TenantId,
        partition: PartitionId,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkId>, StoreError>;
}

/// Test access that bypasses verification, to simulate bit rot. Never used on a serving path.
pub trait CorruptForTest {
    /// Flips one bit of the stored bytes of `key`; returns whether the shard existed.
    fn flip_bit(&self, key: &ShardKey, byte: usize) -> bool;
}

/// Human-readable form of a key for errors and logs.
pub fn display_key(key: &ShardKey) -> String {
    format!("{}/{}/{}/{}", key.partition, key.tenant, key.chunk.to_hex(), key.index)
}

/// Checks `data` against `header` before a write.
fn verify_incoming(key: &ShardKey, header: &ShardHeader, data: &[u8]) -> Result<(), StoreError> {
    if header.verifies(key.index, data) { Ok(()) } else { Err(StoreError::ChecksumMismatch { key: display_key(key) }) }
}

/// Checks a stored record before returning it.
fn verify_stored(key: &ShardKey, header: ShardHeader, data: Vec<u8>) -> Result<Shard, StoreError> {
    if header.verifies(key.index, &data) {
        Ok(Shard { header, data })
    } else {
        Err(StoreError::Corrupt { key: display_key(key), reason: "checksum mismatch".into() })
    }
}
