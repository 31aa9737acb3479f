//! The Strata backup client library: a client of a whole cluster, chunking, encryption, backups and restores.
//!
//! [`cluster::ClusterClient`] routes requests by the cluster map over the RPC pool of `strata-transport`;
//! [`repo`], [`backup`] and [`restore`] build a tenant's encrypted, deduplicated repository on top of it. This
//! crate must never depend on the node crate or on a storage engine, so a laptop install stays small, and the
//! node must not depend on it: what both sides need lives in `strata-transport` and `strata-proto`.

pub mod backup;
pub mod blob;
pub mod chunker;
pub mod cluster;
pub mod error;
pub mod keys;
pub mod password;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod tree;

#[cfg(test)]
mod hostile_bytes;

pub use cluster::ClusterClient;
pub use error::ClientError;
pub use strata_transport::{Profile, Reply, RpcError, RpcLimits, RpcPool};
