//! RocksDB shard store: headers in `shard_meta`, bytes in `shard_data` (BlobDB), both written in one batch.
//!
//! Usage counters are rebuilt from the small header family at open and kept in memory; a striped lock makes
//! the "does it exist, how big was it" check and the write atomic per key, so concurrent puts of one shard
//! cannot double-count. Writes go through the WAL with `sync` when configured, which is what a put's
//! acknowledgement relies on.

use std::sync::{Arc, Mutex};

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use strata_proto::{ChunkId, Holding, PartitionId, ShardHeader, ShardKey, TenantId};

use super::format::{KEY_LEN, decode_header, decode_key, encode_header, encode_key, is_condemned, key_prefix, with_condemned};
use super::{
    CorruptForTest, DiskReserve, Existing, Shard, ShardStore, ShardWrite, StoreError, Usage, WriteDecision, WriteMode, add_to_holding,
    decide, display_key, verify_incoming, verify_stored,
};
use crate::db::{CF_SHARD_DATA, CF_SHARD_META, Db, cf};

const LOCK_STRIPES: usize = 64;

/// How a shard will be stored.
enum Prepared {
    /// Already stored and intact (only a garbage-collection mark may need clearing).
    Keep {
        /// Encoded key.
        enc: Vec<u8>,
        /// Its header record.
        record: Vec<u8>,
    },
    /// Refused: the slot holds something this write may not replace (kept as it is).
    Conflict {
        /// Encoded key.
        enc: Vec<u8>,
        /// Its header record.
        record: Vec<u8>,
        /// What the slot holds.
        reason: String,
    },
    /// Written (new, or replacing what decide() allows).
    Write {
        /// Encoded key.
        enc: Vec<u8>,
        /// Bytes of data.
        data_len: u32,
        /// Bytes the previous copy held.
        previous_len: u64,
        /// Whether no copy existed.
        is_new: bool,
    },
}

fn stripe_index(key: &ShardKey) -> usize {
    (key.chunk.0[31] as usize ^ key.index as usize) % LOCK_STRIPES
}

/// One shard's header record: its encoded key, its key and the record bytes.
type RecordEntry = (Vec<u8>, ShardKey, Vec<u8>);

/// A decoded header record and its data length, or why it could not be decoded.
type HeaderRecord = Result<(ShardHeader, u32), String>;

/// Shard store on the node's RocksDB.
pub struct RocksShardStore {
    db: Arc<Db>,
    capacity_bytes: u64,
    sync_writes: bool,
    usage: Mutex<Usage>,
    stripes: Vec<Mutex<()>>,
    reserve: Option<DiskReserve>,
}

fn io(e: rocksdb::Error) -> StoreError {
    let msg = e.to_string();
    if msg.contains("No space left") || msg.contains("ENOSPC") {
        StoreError::NoSpace(format!("disk full: {msg}"))
    } else {
        StoreError::Io(msg)
    }
}

impl RocksShardStore {
    /// Opens the store on `db`, counting what it already holds.
    pub fn open(db: Arc<Db>, capacity_bytes: u64, sync_writes: bool) -> Result<Self, StoreError> {
        let mut usage = Usage::default();
        for item in db.iterator_cf(cf(&db, CF_SHARD_META), IteratorMode::Start) {
            let (key, value) = item.map_err(io)?;
            // A record that cannot be decoded still occupies space; count what we can and let reads report it.
            if let Ok((_, len)) = decode_header(&value) {
                usage.bytes += u64::from(len);
            }
            if key.len() == KEY_LEN {
                usage.shards += 1;
            }
        }
        Ok(RocksShardStore {
            db,
            capacity_bytes,
            sync_writes,
            usage: Mutex::new(usage),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            reserve: None,
        })
    }

    /// Refuses shard writes that would leave less than the reserve free on the data directory's file system.
    pub fn with_reserve(mut self, reserve: DiskReserve) -> Self {
        self.reserve = Some(reserve);
        self
    }

    fn stripe(&self, key: &ShardKey) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[stripe_index(key)].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides how to store one shard, given `used` bytes so far; the caller holds its stripe lock.
    fn prepare(&self, w: &ShardWrite<'_>, mode: WriteMode, used: u64) -> Result<Prepared, StoreError> {
        verify_incoming(&w.key, &w.header, w.data)?;
        let data_len =
            u32::try_from(w.data.len()).map_err(|_| StoreError::NoSpace(format!("shard of {} bytes is over 4 GiB", w.data.len())))?;
        let enc = encode_key(&w.key).to_vec();
        let record = match self.db.get_pinned_cf(cf(&self.db, CF_SHARD_META), &enc) {
            Ok(r) => r.map(|r| r.to_vec()),
            // A rotten table block: the slot holds a record nobody can read. An empty record decodes as
            // damaged, which a repair may replace and a tenant's put may not.
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => Some(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let (existing, previous_len) = match record.as_deref().map(decode_header) {
            None => (Existing::Empty, 0),
            Some(Err(_)) => (Existing::Damaged, 0),
            Some(Ok((h, len))) => match self.get(&w.key) {
                Ok(Some(_)) => (Existing::Intact(h), u64::from(len)),
                Ok(None) | Err(_) => (Existing::Damaged, u64::from(len)),
            },
        };
        match decide(&existing, &w.header, mode, w.replaces) {
            WriteDecision::Keep => Ok(Prepared::Keep { enc, record: record.unwrap_or_default() }),
            WriteDecision::Conflict(reason) => Ok(Prepared::Conflict { enc, record: record.unwrap_or_default(), reason }),
            WriteDecision::Write => {
                if used - previous_len.min(used) + u64::from(data_len) > self.capacity_bytes {
                    return Err(StoreError::NoSpace(format!("{used} bytes used of {} capacity", self.capacity_bytes)));
                }
                Ok(Prepared::Write { enc, data_len, previous_len, is_new: record.is_none() })
            }
        }
    }

    fn usage_mut(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_opts(&self) -> WriteOptions {
        let mut o = WriteOptions::default();
        o.set_sync(self.sync_writes);
        o
    }

    /// Header records of one chunk's shards: (encoded key, shard key, record).
    fn chunk_records(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<Vec<RecordEntry>, StoreError> {
        let prefix = key_prefix(partition, Some((tenant, chunk)));
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_SHARD_META), IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(key) = decode_key(&k) {
                out.push((k.to_vec(), key, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Sets or clears the condemned mark on a chunk's shards; returns how many changed.
    fn mark(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId, condemned: bool) -> Result<u64, StoreError> {
        let mut changed = 0;
        for (enc, key, _) in self.chunk_records(tenant, partition, chunk)? {
            let _guard = self.stripe(&key);
            // Re-read under the lock: a concurrent put may have replaced the record.
            let meta = cf(&self.db, CF_SHARD_META);
            let Some(record) = self.db.get_pinned_cf(meta, &enc).map_err(io)? else { continue };
            if is_condemned(&record) != condemned {
                self.db.put_cf_opt(meta, &enc, with_condemned(&record, condemned), &self.write_opts()).map_err(io)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Stored header and data length of `key`, if present and decodable.
    fn stored_header(&self, enc: &[u8]) -> Result<Option<HeaderRecord>, StoreError> {
        match self.db.get_pinned_cf(cf(&self.db, CF_SHARD_META), enc) {
            Ok(raw) => Ok(raw.map(|v| decode_header(&v))),
            // A rotten table block: the record is there but unreadable, so the slot is damaged (and may be
            // rebuilt), not absent.
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => Ok(Some(Err(format!("unreadable header record: {e}")))),
            Err(e) => Err(io(e)),
        }
    }
}

impl ShardStore for RocksShardStore {
    fn put_many(&self, shards: &[ShardWrite<'_>], mode: WriteMode) -> Vec<Result<(), StoreError>> {
        // Lock every stripe involved, in order, so concurrent batches cannot deadlock.
        let mut stripes: Vec<usize> = shards.iter().map(|w| stripe_index(&w.key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = stripes.iter().map(|i| self.stripes[*i].lock().unwrap_or_else(|e| e.into_inner())).collect();
        let mut used = self.usage_mut().bytes;
        let reserve = self.reserve.as_ref().and_then(|d| Some((d, d.room()?)));
        let over_reserve = |adding: u64| reserve.filter(|(_, room)| adding > room.for_shards).map(|(d, room)| d.refusal(room));
        let mut batch = WriteBatch::default();
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(shards.len());
        let (mut added_bytes, mut removed_bytes, mut new_shards) = (0u64, 0u64, 0u64);
        let mut written = Vec::new();
        let unmark = |batch: &mut WriteBatch, enc: &[u8], record: &[u8]| {
            if is_condemned(record) {
                batch.put_cf(cf(&self.db, CF_SHARD_META), enc, with_condemned(record, false));
            }
        };
        for (i, w) in shards.iter().enumerate() {
            match self.prepare(w, mode, used) {
                Ok(Prepared::Keep { enc, record }) => {
                    unmark(&mut batch, &enc, &record);
                    results.push(Ok(()));
                }
                Ok(Prepared::Conflict { enc, record, reason }) => {
                    // A tenant uploading the chunk again wants it kept: the stored copy stays, unmarked.
                    if mode == WriteMode::Create {
                        unmark(&mut batch, &enc, &record);
                    }
                    results.push(Err(StoreError::Conflict { key: display_key(&w.key), reason }));
                }
                Ok(Prepared::Write { enc, data_len, previous_len, is_new }) => {
                    if let Some(refusal) = over_reserve(added_bytes + u64::from(data_len)) {
                        results.push(Err(refusal));
                        continue;
                    }
                    batch.put_cf(cf(&self.db, CF_SHARD_META), &enc, encode_header(&w.header, data_len));
                    batch.put_cf(cf(&self.db, CF_SHARD_DATA), &enc, w.data);
                    used = used - previous_len.min(used) + u64::from(data_len);
                    added_bytes += u64::from(data_len);
                    removed_bytes += previous_len;
                    new_shards += u64::from(is_new);
                    written.push(i);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if batch.is_empty() {
            return results;
        }
        if let Err(e) = self.db.write_opt(batch, &self.write_opts()).map_err(io) {
            for i in written {
                results[i] = Err(e.clone());
            }
            return results;
        }
        let mut usage = self.usage_mut();
        usage.bytes = (usage.bytes + added_bytes).saturating_sub(removed_bytes);
        usage.shards += new_shards;
        results
    }

    fn get(&self, key: &ShardKey) -> Result<Option<Shard>, StoreError> {
        let enc = encode_key(key);
        let Some(header) = self.stored_header(&enc)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt { key: display_key(key), reason };
        let (header, len) = header.map_err(corrupt)?;
        let data = match self.db.get_cf(cf(&self.db, CF_SHARD_DATA), enc) {
            Ok(data) => data.ok_or_else(|| corrupt("header present, data missing".into()))?,
            // A rotten blob record or table block fails RocksDB's own checksum: this shard is corrupt and
            // must be rebuilt from the others, like one failing ours.
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => return Err(corrupt(e.to_string())),
            Err(e) => return Err(io(e)),
        };
        if data.len() != len as usize {
            return Err(corrupt(format!("data is {} bytes, header says {len}", data.len())));
        }
        verify_stored(key, header, data).map(Some)
    }

    fn delete(&self, key: &ShardKey) -> Result<bool, StoreError> {
        let enc = encode_key(key);
        let _guard = self.stripe(key);
        let Some(previous) = self.stored_header(&enc)? else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&self.db, CF_SHARD_META), enc);
        batch.delete_cf(cf(&self.db, CF_SHARD_DATA), enc);
        self.db.write_opt(batch, &self.write_opts()).map_err(io)?;
        let mut usage = self.usage_mut();
        if let Ok((_, len)) = previous {
            usage.bytes = usage.bytes.saturating_sub(u64::from(len));
        }
        usage.shards = usage.shards.saturating_sub(1);
        Ok(true)
    }

    fn held(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId, include_condemned: bool) -> Result<Holding, StoreError> {
        let prefix = key_prefix(partition, Some((tenant, chunk)));
        let mut holding = Holding::default();
        for item in self.db.iterator_cf(cf(&self.db, CF_SHARD_META), IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(key) = decode_key(&k).filter(|_| include_condemned || !is_condemned(&v)) else { continue };
            // A record that does not decode holds no usable shard: it is not counted.
            if let Ok((header, _)) = decode_header(&v) {
                add_to_holding(&mut holding, key.index, header.stripe_tag());
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
        let prefix = key_prefix(partition, None);
        let start = after.map(|k| encode_key(k).to_vec()).unwrap_or_else(|| prefix.clone());
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_SHARD_META), IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let Some(key) = decode_key(&k) else { continue };
            if after == Some(&key) {
                continue;
            }
            let header = decode_header(&v).map_err(|reason| StoreError::Corrupt { key: display_key(&key), reason })?.0;
            out.push((key, header));
        }
        Ok(out)
    }

    fn usage(&self) -> Usage {
        *self.usage_mut()
    }

    fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    fn condemn(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError> {
        self.mark(tenant, partition, chunk, true)
    }

    fn uncondemn(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<u64, StoreError> {
        self.mark(tenant, partition, chunk, false)
    }

    fn delete_condemned(&self, tenant: TenantId, partition: PartitionId, chunk: &ChunkId) -> Result<(u64, u64), StoreError> {
        let (mut count, mut bytes) = (0, 0);
        for (enc, key, _) in self.chunk_records(tenant, partition, chunk)? {
            let _guard = self.stripe(&key);
            let meta = cf(&self.db, CF_SHARD_META);
            let Some(record) = self.db.get_pinned_cf(meta, &enc).map_err(io)? else { continue };
            if !is_condemned(&record) {
                continue;
            }
            let len = decode_header(&record).map(|(_, l)| u64::from(l)).unwrap_or(0);
            let mut batch = WriteBatch::default();
            batch.delete_cf(meta, &enc);
            batch.delete_cf(cf(&self.db, CF_SHARD_DATA), &enc);
            self.db.write_opt(batch, &self.write_opts()).map_err(io)?;
            let mut usage = self.usage_mut();
            usage.bytes = usage.bytes.saturating_sub(len);
            usage.shards = usage.shards.saturating_sub(1);
            count += 1;
            bytes += len;
        }
        Ok((count, bytes))
    }

    fn list_chunks(
        &self,
        tenant: TenantId,
        partition: PartitionId,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkId>, StoreError> {
        let mut prefix = partition.0.to_be_bytes().to_vec();
        prefix.extend_from_slice(&tenant.0.to_be_bytes());
        let start = match after {
            // Just past every shard of `after`.
            Some(c) => encode_key(&ShardKey { partition, tenant, chunk: *c, index: u8::MAX }).to_vec(),
            None => prefix.clone(),
        };
        let mut out: Vec<ChunkId> = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_SHARD_META), IteratorMode::From(&start, Direction::Forward)) {
            let (k, _) = item.map_err(io)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(key) = decode_key(&k) else { continue };
            if after == Some(&key.chunk) || out.last() == Some(&key.chunk) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(key.chunk);
        }
        Ok(out)
    }
}

impl CorruptForTest for RocksShardStore {
    fn flip_bit(&self, key: &ShardKey, byte: usize) -> bool {
        let enc = encode_key(key);
        let data_cf = cf(&self.db, CF_SHARD_DATA);
        match self.db.get_cf(data_cf, enc) {
            Ok(Some(mut data)) if !data.is_empty() => {
                let i = byte % data.len();
                data[i] ^= 1;
                self.db.put_cf(data_cf, enc, data).is_ok()
            }
            _ => false,
        }
    }
}
