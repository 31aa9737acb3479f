//! openraft type configuration for Strata's metadata group.

use std::io::Cursor;

use super::command::{MetaCommand, MetaResponse};

openraft::declare_raft_types!(
    /// Strata's Raft types: commands are [`MetaCommand`], node ids are `u64`, nodes carry their address.
    pub TypeConfig:
        D = MetaCommand,
        R = MetaResponse,
);

/// The Raft handle type.
pub type Raft = openraft::Raft<TypeConfig>;
/// A Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<u64>;
/// Log id.
pub type LogId = openraft::LogId<u64>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
