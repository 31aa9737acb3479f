//! The Strata client library: talking to a cluster over QUIC, and (in later layers) backups and restores.
//!
//! This crate owns the client half of every Strata RPC, whoever opens it: the `strata` CLI, and storage nodes
//! when they call each other, both go through [`rpc::RpcPool`]. It depends on `strata-proto` for the messages and
//! must never depend on the node crate or on a storage engine, so a laptop install stays small.

pub mod backup;
pub mod blob;
pub mod chunker;
pub mod cluster;
pub mod error;
pub mod health_probe;
pub mod keys;
pub mod password;
pub mod profile;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod rpc;
pub mod size;
pub mod tls;
pub mod transport;
pub mod tree;
pub mod wire;

#[cfg(test)]
mod hostile_bytes;

pub use cluster::ClusterClient;
pub use error::ClientError;
pub use profile::Profile;
pub use rpc::{Reply, RpcError, RpcLimits, RpcPool};
