//! Strata's wire protocol and shared data types, free of I/O.
//!
//! This crate owns everything two Strata processes must agree on byte for byte: identifiers, the framed
//! request/response messages, stable error codes, tokens and roles, and the cluster map together with the pure
//! lookup from a chunk id to its partition and nodes. It must never depend on an async runtime, a socket or a
//! database: every function here takes bytes or values and returns values, so it can be unit-tested, property
//! tested and fuzzed in isolation (the same split as `quinn-proto` under `quinn`).

pub mod auth;
pub mod cluster_map;
pub mod error;
pub mod frame;
pub mod ids;
pub mod maintenance;
pub mod message;
pub mod reflist;
pub mod snapshot;
pub mod status;
pub mod units;

#[cfg(test)]
mod hostile_bytes;

pub use auth::{AuditEntry, Role, RoleSet, Secret, TokenInfo};
pub use cluster_map::{
    ClusterMap, EcProfile, Generation, GenerationPartitions, GenerationState, NodeDescriptor, NodeSet, NodeState, PartitionPlacement,
    SlotRole,
};
pub use error::{ErrorCode, WireError};
pub use frame::{FrameError, FrameHeader, FrameKind, MAX_FRAME_BYTES_DEFAULT, PROTOCOL_VERSION};
pub use ids::{ChunkId, Epoch, GenerationId, NodeId, PartitionId, ShardIndex, TenantId};
pub use message::{
    BlobDigest, GcAction, GcReport, GenerationOp, Holding, NodeAnnouncement, RaftRpc, Request, RequestEnvelope, Response, ResponseEnvelope,
    ShardHeader, ShardKey, ShardPut, StripeTag, WriteMode,
};
pub use snapshot::{SessionId, SnapshotId, SnapshotRecord};
