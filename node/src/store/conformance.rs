//! One behavioural suite for every [`ShardStore`] implementation (the model is openraft's `Suite::test_all`).
//!
//! Each check gets a fresh store from the builder. Adding an implementation means adding one `#[test]` that
//! calls [`run_all`]; adding a behaviour means adding one check here, and every implementation is held to it.

use strata_proto::{ChunkId, EcProfile, PartitionId, ShardHeader, ShardKey, StripeTag, TenantId};

use super::{CorruptForTest, ShardStore, ShardWrite, StoreError, Usage, WriteMode};

/// Builds a fresh store with the given capacity; the second value keeps temporary resources alive.
pub trait StoreBuilder {
    /// The store under test.
    type Store: ShardStore + CorruptForTest;
    /// Builds one.
    fn build(&self, capacity_bytes: u64) -> (Self::Store, Box<dyn std::any::Any>);
}

type Check<B> = fn(&B);

/// Runs every check against stores from `builder`.
pub fn run_all<B: StoreBuilder>(builder: &B) {
    let checks: &[(&str, Check<B>)] = &[
        ("round_trip", round_trip),
        ("absent_is_none", absent_is_none),
        ("idempotent_put", idempotent_put),
        ("create_never_replaces_an_intact_shard", create_never_replaces_an_intact_shard),
        ("repair_replaces_only_what_it_names", repair_replaces_only_what_it_names),
        ("delete", delete),
        ("held_mask", held_mask),
        ("tenants_are_isolated", tenants_are_isolated),
        ("scan_partition_in_order_with_cursor", scan_partition_in_order_with_cursor),
        ("mismatched_checksum_is_refused", mismatched_checksum_is_refused),
        ("corruption_is_reported_not_returned", corruption_is_reported_not_returned),
        ("capacity_is_enforced", capacity_is_enforced),
        ("empty_shard", empty_shard),
        ("condemned_shards_are_not_counted_but_still_read", condemned_shards_are_not_counted_but_still_read),
        ("storing_again_clears_the_mark_and_survives_the_sweep", storing_again_clears_the_mark_and_survives_the_sweep),
        ("list_chunks_pages_one_tenant", list_chunks_pages_one_tenant),
        ("put_many_reports_each_shard", put_many_reports_each_shard),
    ];
    for (name, check) in checks {
        eprintln!("shard store conformance: {name}");
        check(builder);
    }
}

fn key(partition: u32, tenant: u64, chunk: u8, index: u8) -> ShardKey {
    ShardKey { partition: PartitionId(partition), tenant: TenantId(tenant), chunk: ChunkId([chunk; 32]), index }
}

/// The header of `data` as shard `key.index` of a stripe whose identity is derived from `data` (so different
/// bytes are a different stripe, as they would be for a real blob).
fn shard(key: &ShardKey, data: &[u8]) -> ShardHeader {
    ShardHeader::for_shard(EcProfile::DEFAULT, data.len() as u64 * 4, key.index, Some(ShardHeader::digest_of_blob(data)), data)
}

fn repair<S: ShardStore>(s: &S, key: &ShardKey, data: &[u8], replaces: Option<StripeTag>) -> Result<(), StoreError> {
    let w = ShardWrite { key: *key, header: shard(key, data), data, replaces };
    s.put_many(&[w], WriteMode::Repair).pop().unwrap()
}

fn put<S: ShardStore>(s: &S, key: &ShardKey, data: &[u8]) {
    s.put(key, &shard(key, data), data).unwrap();
}

fn round_trip<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(3, 1, 7, 2);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    put(&s, &k, &data);
    let got = s.get(&k).unwrap().unwrap();
    assert_eq!(got.data, data);
    assert_eq!(got.header, shard(&k, &data));
    assert_eq!(s.usage(), Usage { shards: 1, bytes: 10_000 });
}

fn absent_is_none<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    assert_eq!(s.get(&key(0, 0, 0, 0)).unwrap(), None);
    assert!(!s.delete(&key(0, 0, 0, 0)).unwrap());
}

fn idempotent_put<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(1, 1, 1, 0);
    put(&s, &k, b"same bytes");
    put(&s, &k, b"same bytes");
    assert_eq!(s.usage(), Usage { shards: 1, bytes: 10 });
}

fn create_never_replaces_an_intact_shard<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(1, 1, 1, 0);
    put(&s, &k, b"first version");
    s.condemn(TenantId(1), PartitionId(1), &ChunkId([1; 32])).unwrap();
    let err = s.put(&k, &shard(&k, b"second"), b"second").unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(s.get(&k).unwrap().unwrap().data, b"first version", "the stored bytes are kept");
    assert_eq!(s.usage(), Usage { shards: 1, bytes: 13 });
    // The chunk is wanted again: the refused create still clears the garbage-collection mark.
    assert_eq!(s.held(TenantId(1), PartitionId(1), &ChunkId([1; 32]), false).unwrap().mask, 1);
    // A legacy shard (no stripe identity) is kept just the same.
    let legacy = key(1, 1, 2, 0);
    let old = ShardHeader::for_shard(EcProfile::DEFAULT, 40, 0, None, b"legacy bytes");
    s.put(&legacy, &old, b"legacy bytes").unwrap();
    assert!(matches!(s.put(&legacy, &shard(&legacy, b"new"), b"new"), Err(StoreError::Conflict { .. })));
    assert_eq!(s.get(&legacy).unwrap().unwrap().data, b"legacy bytes");
}

fn repair_replaces_only_what_it_names<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(1, 1, 1, 0);
    put(&s, &k, b"first version");
    let first = shard(&k, b"first version").stripe_tag();
    assert!(matches!(repair(&s, &k, b"second", None), Err(StoreError::Conflict { .. })), "not without naming the stripe");
    assert!(matches!(repair(&s, &k, b"second", Some(StripeTag(first.0 ^ 2))), Err(StoreError::Conflict { .. })));
    assert_eq!(s.get(&k).unwrap().unwrap().data, b"first version");
    repair(&s, &k, b"second", Some(first)).unwrap();
    assert_eq!(s.get(&k).unwrap().unwrap().data, b"second");
    assert_eq!(s.usage(), Usage { shards: 1, bytes: 6 });
    // The same blob under another profile (a re-encoding) is the same stripe: repair rewrites it.
    let digest = shard(&k, b"second").blob_digest;
    let other_profile = ShardHeader::for_shard(EcProfile { data_shards: 2, parity_shards: 1 }, 24, 0, digest, b"second");
    let w = ShardWrite { key: k, header: other_profile, data: b"second", replaces: None };
    s.put_many(&[w], WriteMode::Repair).pop().unwrap().unwrap();
    assert_eq!(s.get(&k).unwrap().unwrap().header, other_profile);
}

fn delete<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(1, 1, 1, 0);
    put(&s, &k, b"bytes");
    assert!(s.delete(&k).unwrap());
    assert_eq!(s.get(&k).unwrap(), None);
    assert!(!s.delete(&k).unwrap());
    assert_eq!(s.usage(), Usage::default());
}

fn held_mask<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    for i in [0u8, 3, 5] {
        put(&s, &key(9, 4, 2, i), &[i; 8]);
    }
    put(&s, &key(9, 4, 3, 1), b"other chunk");
    let two = s.held(TenantId(4), PartitionId(9), &ChunkId([2; 32]), false).unwrap();
    assert_eq!(two.mask, 0b101001);
    assert_eq!(two.stripe, StripeTag::MIXED, "each test shard is its own stripe");
    let three = s.held(TenantId(4), PartitionId(9), &ChunkId([3; 32]), false).unwrap();
    assert_eq!((three.mask, three.stripe), (0b10, shard(&key(9, 4, 3, 1), b"other chunk").stripe_tag()));
    assert_eq!(s.held(TenantId(4), PartitionId(9), &ChunkId([4; 32]), false).unwrap().mask, 0);
    // Shards of one stripe report its tag.
    let digest = Some(ShardHeader::digest_of_blob(b"one blob"));
    for i in [1u8, 2] {
        let k = key(9, 4, 7, i);
        s.put(&k, &ShardHeader::for_shard(EcProfile::DEFAULT, 8, i, digest, &[i; 2]), &[i; 2]).unwrap();
    }
    let seven = s.held(TenantId(4), PartitionId(9), &ChunkId([7; 32]), false).unwrap();
    assert_eq!((seven.mask, seven.stripe), (0b110, StripeTag::of(digest.as_ref())));
}

fn tenants_are_isolated<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    put(&s, &key(2, 10, 5, 0), b"tenant ten");
    assert_eq!(s.held(TenantId(11), PartitionId(2), &ChunkId([5; 32]), false).unwrap().mask, 0);
    assert_eq!(s.get(&key(2, 11, 5, 0)).unwrap(), None);
}

fn scan_partition_in_order_with_cursor<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let mut keys = Vec::new();
    for chunk in [9u8, 1, 5] {
        for idx in 0..3 {
            let k = key(7, 1, chunk, idx);
            put(&s, &k, &[chunk, idx]);
            keys.push(k);
        }
    }
    put(&s, &key(6, 1, 1, 0), b"before");
    put(&s, &key(8, 1, 1, 0), b"after");
    keys.sort();
    let first: Vec<_> = s.scan_partition(PartitionId(7), None, 4).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(first, keys[..4]);
    let rest: Vec<_> = s.scan_partition(PartitionId(7), Some(&first[3]), 100).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(rest, keys[4..]);
    assert!(s.scan_partition(PartitionId(5), None, 10).unwrap().is_empty());
}

fn mismatched_checksum_is_refused<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(1, 1, 1, 0);
    let header = shard(&k, b"original");
    assert!(matches!(s.put(&k, &header, b"tampered"), Err(StoreError::ChecksumMismatch { .. })));
    // The header binds the shard index too: the right bytes in the wrong slot are refused.
    let other = key(1, 1, 1, 1);
    assert!(matches!(s.put(&other, &header, b"original"), Err(StoreError::ChecksumMismatch { .. })));
    assert_eq!(s.get(&k).unwrap(), None);
}

fn corruption_is_reported_not_returned<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(1, 1, 1, 0);
    let data = vec![42u8; 5000];
    put(&s, &k, &data);
    assert!(s.flip_bit(&k, 1234));
    assert!(matches!(s.get(&k), Err(StoreError::Corrupt { .. })));
    // A tenant's put does not decide what a damaged slot holds ...
    assert!(matches!(s.put(&k, &shard(&k, &data), &data), Err(StoreError::Conflict { .. })));
    // ... a repair re-writing the good bytes heals it, even though the header is unchanged.
    repair(&s, &k, &data, None).unwrap();
    assert_eq!(s.get(&k).unwrap().unwrap().data, data);
    assert_eq!(s.usage().shards, 1);
}

fn capacity_is_enforced<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(100);
    put(&s, &key(1, 1, 1, 0), &[1; 60]);
    let k2 = key(1, 1, 2, 0);
    let err = s.put(&k2, &shard(&k2, &[2; 50]), &[2; 50]).unwrap_err();
    assert!(matches!(err, StoreError::NoSpace(_)), "{err}");
    assert_eq!(s.get(&k2).unwrap(), None);
    // Existing data is intact and replacing a shard counts only the difference.
    let k1 = key(1, 1, 1, 0);
    assert_eq!(s.get(&k1).unwrap().unwrap().data, vec![1; 60]);
    repair(&s, &k1, &[3; 90], Some(shard(&k1, &[1; 60]).stripe_tag())).unwrap();
    assert_eq!(s.usage().bytes, 90);
}

fn empty_shard<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let k = key(0, 0, 0, 0);
    put(&s, &k, b"");
    assert_eq!(s.get(&k).unwrap().unwrap().data, b"");
}

fn condemned_shards_are_not_counted_but_still_read<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let (t, p, c) = (TenantId(1), PartitionId(2), ChunkId([3; 32]));
    for i in 0..3 {
        put(&s, &key(2, 1, 3, i), &[i; 100]);
    }
    assert_eq!(s.condemn(t, p, &c).unwrap(), 3);
    assert_eq!(s.held(t, p, &c, false).unwrap().mask, 0, "condemned shards do not count for dedup");
    assert_eq!(s.held(t, p, &c, true).unwrap().mask, 0b111, "but they are stored");
    assert_eq!(s.get(&key(2, 1, 3, 1)).unwrap().unwrap().data, vec![1; 100], "but they are still read");
    assert_eq!(s.uncondemn(t, p, &c).unwrap(), 3);
    assert_eq!(s.held(t, p, &c, false).unwrap().mask, 0b111);
    assert_eq!(s.delete_condemned(t, p, &c).unwrap(), (0, 0), "nothing is condemned any more");
    assert_eq!(s.usage().shards, 3);
}

fn storing_again_clears_the_mark_and_survives_the_sweep<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    let (t, p, c) = (TenantId(1), PartitionId(2), ChunkId([3; 32]));
    for i in 0..3 {
        put(&s, &key(2, 1, 3, i), &[i; 100]);
    }
    put(&s, &key(2, 1, 4, 0), b"another chunk");
    s.condemn(t, p, &c).unwrap();
    put(&s, &key(2, 1, 3, 1), &[1; 100]);
    assert_eq!(s.held(t, p, &c, false).unwrap().mask, 0b010);
    assert_eq!(s.delete_condemned(t, p, &c).unwrap(), (2, 200));
    assert_eq!(s.get(&key(2, 1, 3, 1)).unwrap().unwrap().data, vec![1; 100]);
    assert_eq!(s.get(&key(2, 1, 3, 0)).unwrap(), None);
    assert_eq!(s.usage(), Usage { shards: 2, bytes: 113 });
    assert_eq!(s.held(t, p, &ChunkId([4; 32]), false).unwrap().mask, 1, "other chunks are untouched");
}

fn list_chunks_pages_one_tenant<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1 << 30);
    for chunk in [5u8, 1, 9, 7] {
        for i in 0..2 {
            put(&s, &key(4, 1, chunk, i), &[chunk, i]);
        }
    }
    put(&s, &key(4, 2, 6, 0), b"other tenant");
    put(&s, &key(5, 1, 6, 0), b"other partition");
    let first = s.list_chunks(TenantId(1), PartitionId(4), None, 3).unwrap();
    assert_eq!(first, vec![ChunkId([1; 32]), ChunkId([5; 32]), ChunkId([7; 32])]);
    let rest = s.list_chunks(TenantId(1), PartitionId(4), first.last(), 3).unwrap();
    assert_eq!(rest, vec![ChunkId([9; 32])]);
    assert!(s.list_chunks(TenantId(3), PartitionId(4), None, 10).unwrap().is_empty());
}

fn put_many_reports_each_shard<B: StoreBuilder>(b: &B) {
    let (s, _g) = b.build(1000);
    put(&s, &key(1, 1, 1, 0), &[1; 100]);
    s.condemn(TenantId(1), PartitionId(1), &ChunkId([1; 32])).unwrap();
    let (a, c, d) = (key(1, 1, 2, 0), key(1, 1, 3, 0), key(1, 1, 4, 0));
    let bad_header = shard(&c, b"the real bytes");
    let items = vec![
        ShardWrite::new(a, shard(&a, &[2; 300]), &[2; 300]),
        ShardWrite::new(key(1, 1, 1, 0), shard(&key(1, 1, 1, 0), &[1; 100]), &[1; 100]),
        ShardWrite::new(c, bad_header, b"tampered bytes"),
        ShardWrite::new(d, shard(&d, &[4; 900]), &[4; 900]),
    ];
    let results = s.put_many(&items, WriteMode::Create);
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(matches!(results[2], Err(StoreError::ChecksumMismatch { .. })), "{results:?}");
    assert!(matches!(results[3], Err(StoreError::NoSpace(_))), "the batch counts its own earlier shards: {results:?}");
    assert_eq!(s.get(&a).unwrap().unwrap().data, vec![2; 300]);
    assert_eq!(s.held(TenantId(1), PartitionId(1), &ChunkId([1; 32]), false).unwrap().mask, 1, "storing again cleared the mark");
    assert_eq!(s.get(&c).unwrap(), None);
    assert_eq!(s.usage(), Usage { shards: 2, bytes: 400 });
}

struct Memory;
impl StoreBuilder for Memory {
    type Store = super::MemoryShardStore;
    fn build(&self, capacity_bytes: u64) -> (Self::Store, Box<dyn std::any::Any>) {
        (super::MemoryShardStore::new(capacity_bytes), Box::new(()))
    }
}

struct Rocks;
impl StoreBuilder for Rocks {
    type Store = super::RocksShardStore;
    fn build(&self, capacity_bytes: u64) -> (Self::Store, Box<dyn std::any::Any>) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path(), &crate::db::DbOptions::default()).unwrap();
        (super::RocksShardStore::open(db, capacity_bytes, false).unwrap(), Box::new(dir))
    }
}

#[test]
fn memory_store_conforms() {
    run_all(&Memory);
}

#[test]
fn rocks_store_conforms() {
    run_all(&Rocks);
}

#[test]
fn rocks_store_recounts_usage_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = crate::db::open(dir.path(), &crate::db::DbOptions::default()).unwrap();
        let s = super::RocksShardStore::open(db, 1 << 30, true).unwrap();
        put(&s, &key(1, 1, 1, 0), &[5; 700]);
        put(&s, &key(1, 1, 2, 0), &[5; 300]);
    }
    let db = crate::db::open(dir.path(), &crate::db::DbOptions::default()).unwrap();
    let s = super::RocksShardStore::open(db, 1 << 30, true).unwrap();
    assert_eq!(s.usage(), Usage { shards: 2, bytes: 1000 });
    assert_eq!(s.get(&key(1, 1, 1, 0)).unwrap().unwrap().data, vec![5; 700]);
}

#[test]
fn rocks_store_keeps_the_disk_reserve_free_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("db"), &crate::db::DbOptions::default()).unwrap();
    let open =
        super::RocksShardStore::open(db.clone(), 1 << 30, false).unwrap().with_reserve(super::DiskReserve::new(dir.path().into(), 0));
    put(&open, &key(1, 1, 1, 0), &[5; 700]);
    // A reserve larger than the disk: nothing more may be written, whatever the capacity says, and what is
    // stored stays readable.
    let full = super::RocksShardStore::open(db, 1 << 30, false).unwrap().with_reserve(super::DiskReserve::new(dir.path().into(), u64::MAX));
    let k = key(1, 1, 2, 0);
    let err = full.put(&k, &shard(&k, &[6; 300]), &[6; 300]).unwrap_err();
    assert!(matches!(&err, StoreError::NoSpace(m) if m.contains("reserve_bytes")), "{err}");
    assert_eq!(full.get(&key(1, 1, 1, 0)).unwrap().unwrap().data, vec![5; 700]);
    assert!(full.get(&k).unwrap().is_none(), "the refused shard was not stored");
}
