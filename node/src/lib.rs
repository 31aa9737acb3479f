//! The Strata storage node.
//!
//! A node stores erasure-coded shards in RocksDB, takes part in the Raft group that holds cluster metadata,
//! and coordinates client requests: it erasure-codes blobs, spreads their shards over the partition's nodes
//! and rebuilds blobs from any k shards. See ARCHITECTURE.md for how the modules map to the put, get and
//! metadata paths.

pub mod config;
pub mod db;
pub mod erasure;
pub mod meta;
pub mod pki;
pub mod placement;
pub mod store;
