//! How Strata processes reach each other: the client half of every RPC, whoever opens it.
//!
//! The `strata` CLI and storage nodes calling each other both go through [`rpc::RpcPool`]: QUIC endpoints and
//! their flow-control settings ([`endpoint`]), rustls configuration and certificate helpers ([`tls`]), frames
//! and bodies on streams ([`wire`]), and the connection profile that names a cluster and the credentials to
//! use ([`profile`]). Nothing here knows about backups, chunks or storage engines: the node depends on this
//! crate rather than on the backup client, and the client on it rather than on the node.

pub mod endpoint;
pub mod health_probe;
pub mod profile;
pub mod rpc;
pub mod tls;
pub mod wire;

pub use profile::Profile;
pub use rpc::{Reply, RpcError, RpcLimits, RpcPool};
