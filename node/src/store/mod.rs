//! The shard store: where a node keeps the shards it holds.
//!
//! [`ShardStore`] knows nothing of RocksDB; [`RocksShardStore`] implements it for production and
//! [`MemoryShardStore`] for tests, and one conformance suite (`conformance.rs`) runs against both, as TiKV does
//! with `engine_traits`. A store verifies every shard's checksum when it is written and again on every read: a
//! shard that fails is reported as [`StoreError::Corrupt`] and its bytes are never returned. The store enforces
//! its configured capacity and reports a full disk as [`StoreError::NoSpace`] without damaging what it holds.
//! It is synchronous; async callers run it on the blocking pool.
//!
//! Writes never destroy what a slot holds by accident: an intact shard is kept as it is unless the writer is
//! repairing and names its stripe (see [`decide`]), so a tenant's put can create shards but never replace
//! stored data, whatever bytes it sends under an existing chunk id.

pub(crate) mod format;
mod memory;
mod reserve;
mod rocks;

#[cfg(test)]
mod conformance;

use strata_proto::{ChunkId, Holding, PartitionId, ShardHeader, ShardKey, StripeTag, TenantId};

pub use strata_proto::WriteMode;

pub use format::{decode_key, encode_key, key_prefix};
pub use memory::MemoryShardStore;
pub use reserve::DiskReserve;
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
    /// The slot holds a shard this write may not replace (another stripe, or a damaged shard and the write
    /// is not a repair); the stored shard is kept.
    #[error("shard {key} was not stored: {reason}")]
    Conflict {
        /// Which shard.
        key: String,
        /// What the slot holds.
        reason: String,
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

/// One shard to store.
#[derive(Debug, Clone, Copy)]
pub struct ShardWrite<'a> {
    /// Where.
    pub key: ShardKey,
    /// Verification data.
    pub header: ShardHeader,
    /// The bytes.
    pub data: &'a [u8],
    /// Repair only: the stripe whose intact shard in this slot may be replaced.
    pub replaces: Option<StripeTag>,
}

impl<'a> ShardWrite<'a> {
    /// A write that replaces nothing.
    pub fn new(key: ShardKey, header: ShardHeader, data: &'a [u8]) -> Self {
        ShardWrite { key, header, data, replaces: None }
    }
}

/// What a slot holds before a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Empty,
    /// A shard that passes its checksum.
    Intact(ShardHeader),
    /// A record whose header or bytes fail verification.
    Damaged,
}

/// What a write does to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteDecision {
    /// Store the new shard (the slot was empty, damaged, or repair replaces what it held).
    Write,
    /// The same shard is already there, intact.
    Keep,
    /// Leave the slot alone and refuse the write, saying why.
    Conflict(String),
}

/// The one rule both stores follow for a write to a slot that may hold something (pure).
///
/// An intact shard identical to the incoming one is kept. Any other intact shard is replaced only by a repair
/// that writes the same blob (same stripe identity) or names the stripe it replaces; a tenant's put (create)
/// never replaces it. A damaged record is replaced by a repair and refused to a create, which must not decide
/// what a damaged slot should hold.
pub fn decide(existing: &Existing, incoming: &ShardHeader, mode: WriteMode, replaces: Option<StripeTag>) -> WriteDecision {
    match (existing, mode) {
        (Existing::Empty, _) => WriteDecision::Write,
        (Existing::Intact(h), _) if h == incoming => WriteDecision::Keep,
        (Existing::Intact(h), WriteMode::Repair)
            if (h.blob_digest.is_some() && h.blob_digest == incoming.blob_digest) || replaces == Some(h.stripe_tag()) =>
        {
            WriteDecision::Write
        }
        (Existing::Intact(h), _) => WriteDecision::Conflict(format!(
            "the slot holds an intact shard of another stripe ({:016x}); the stored shard is kept",
            h.stripe_tag().0
        )),
        (Existing::Damaged, WriteMode::Repair) => WriteDecision::Write,
        (Existing::Damaged, WriteMode::Create) => WriteDecision::Conflict("the slot holds a damaged shard; only repair rewrites it".into()),
    }
}

/// Storage of shards on one node.
pub trait ShardStore: Send + Sync + 'static {
    /// Stores a shard after checking `data` against `header`, as a tenant's put would (create).
    fn put(&self, key: &ShardKey, header: &ShardHeader, data: &[u8]) -> Result<(), StoreError> {
        self.put_many(&[ShardWrite::new(*key, *header, data)], WriteMode::Create)
            .pop()
            .unwrap_or_else(|| Err(StoreError::Io("no result".into())))
    }

    /// Stores several shards, with one durable write where the engine allows; one result per shard, in order.
    /// What happens to a slot that already holds something is [`decide`]d by `mode`. Storing a shard again,
    /// or a create refused because the slot holds another stripe, clears the garbage-collection mark: the
    /// chunk is wanted again (RFC 0001).
    fn put_many(&self, shards: &[ShardWrite<'_>], mode: WriteMode) -> Vec<Result<(), StoreError>>;

    /// Reads a shard, verifying its checksum. `Ok(None)` when absent.
    fn get(&self, key: &ShardKey) -> Result<Option<Shard>, StoreError>;

    /// Deletes a shard; returns whether it existed.
    fn delete(&self, key: &ShardKey) -> Result<bool, StoreError>;

    /// The shard indices held for one chunk of one tenant, and their stripe. Condemned shards (see `condemn`)
    /// count only with `include_condemned`.
    fn held(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId, include_condemned: bool) -> Result<Holding, StoreError>;

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

/// Adds one held shard to a holding: its index to the mask, its stripe to the tag.
pub fn add_to_holding(holding: &mut Holding, index: u8, stripe: StripeTag) {
    if index >= 64 {
        return;
    }
    holding.stripe = if holding.mask == 0 || holding.stripe == stripe { stripe } else { StripeTag::MIXED };
    holding.mask |= 1 << index;
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
