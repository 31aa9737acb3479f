//! The Strata storage node.
//!
//! A node stores erasure-coded shards in RocksDB, takes part in the Raft group that holds cluster metadata,
//! and coordinates client requests: it erasure-codes blobs, spreads their shards over the partition's nodes
//! and rebuilds blobs from any k shards. See ARCHITECTURE.md for how the modules map to the put, get and
//! metadata paths.

pub mod ca_custody;
pub mod config;
pub mod context;
pub mod coordinator;
pub mod cpu;
pub mod custody;
pub mod db;
pub mod dev;
pub mod erasure;
pub mod gc;
pub mod health;
pub mod http;
pub mod identity;
pub mod meta;
pub mod metrics;
pub mod migrate;
pub mod node;
pub mod pki;
pub mod placement;
pub mod provision;
pub mod renewal;
pub mod scrub;
pub mod server;
pub mod store;
pub mod trust;

#[cfg(test)]
mod hostile_bytes;
