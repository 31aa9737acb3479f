//! The node's RocksDB instance: one database, one column family per concern.
//!
//! Raft's log and hard state, the shard headers and the shard bytes live in separate column families of a single
//! database so they share one WAL and one block cache, and so memory is bounded by configuration (block cache,
//! write buffers) rather than by how much the node stores. Shard bytes go to BlobDB blob files, keeping the LSM
//! small so compaction does not rewrite large values. Nothing here knows what the bytes mean.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options};

/// The database type used by the node (column families are all opened at start-up).
pub type Db = rocksdb::DB;

/// Raft log entries, keyed by big-endian index.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft vote, committed and purged markers, and the last state-machine snapshot.
pub const CF_RAFT_STATE: &str = "raft_state";
/// Shard headers (small), keyed by shard key.
pub const CF_SHARD_META: &str = "shard_meta";
/// Shard bytes (large, in blob files), keyed by shard key.
pub const CF_SHARD_DATA: &str = "shard_data";

/// Memory and durability settings of the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Shared block cache for all column families.
    pub block_cache_bytes: usize,
    /// Memtable size of the shard data column family (values pass through it before reaching blob files).
    pub write_buffer_bytes: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { block_cache_bytes: 64 << 20, write_buffer_bytes: 32 << 20 }
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the node database at {path}: {source}")]
pub struct DbOpenError {
    /// Directory of the database.
    pub path: String,
    /// RocksDB's explanation.
    #[source]
    pub source: rocksdb::Error,
}

/// Opens (creating if needed) the node database with every column family.
pub fn open(path: &Path, options: &DbOptions) -> Result<Arc<Db>, DbOpenError> {
    let cache = Cache::new_lru_cache(options.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    let base = |write_buffer: usize| {
        let mut o = Options::default();
        o.set_block_based_table_factory(&table);
        // Shards are compressed and encrypted by clients; compression would only burn CPU.
        o.set_compression_type(DBCompressionType::None);
        o.set_write_buffer_size(write_buffer);
        o
    };
    let mut data = base(options.write_buffer_bytes);
    data.set_enable_blob_files(true);
    data.set_min_blob_size(4096);
    data.set_blob_file_size(256 << 20);
    data.set_blob_compression_type(DBCompressionType::None);
    data.set_enable_blob_gc(true);
    let cfs = vec![
        ColumnFamilyDescriptor::new(CF_RAFT_LOG, base(8 << 20)),
        ColumnFamilyDescriptor::new(CF_RAFT_STATE, base(4 << 20)),
        ColumnFamilyDescriptor::new(CF_SHARD_META, base(8 << 20)),
        ColumnFamilyDescriptor::new(CF_SHARD_DATA, data),
    ];
    let mut db_opts = base(4 << 20);
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_total_wal_size(256 << 20);
    db_opts.set_keep_log_file_num(4);
    Db::open_cf_descriptors(&db_opts, path, cfs).map(Arc::new).map_err(|source| DbOpenError { path: path.display().to_string(), source })
}

/// Writes every memtable to its table or blob files, so that a restart replays no log and everything the node
/// holds sits in checksummed files (called on a clean shutdown).
pub fn flush_all(db: &Db) -> Result<(), rocksdb::Error> {
    let families: Vec<&rocksdb::ColumnFamily> =
        [CF_RAFT_LOG, CF_RAFT_STATE, CF_SHARD_META, CF_SHARD_DATA].iter().map(|n| cf(db, n)).collect();
    db.flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
}

/// Column family handle; the families are created at open, so absence is a programming error.
pub fn cf<'a>(db: &'a Db, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} is opened with the database"))
}
