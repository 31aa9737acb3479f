//! Operations on stored data that operators and garbage collection ask for: storage-generation actions and
//! the steps and report of a garbage-collection run (RFC 0001). Plain data carried by `message::Request` and
//! `message::Response`; new variants go at the end, as in `message`.

use serde::{Deserialize, Serialize};

use crate::cluster_map::EcProfile;

/// An operator action on storage generations (`strata admin generation ...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenerationOp {
    /// Create an empty, Active generation; nodes join it by name.
    Add {
        /// Unique name.
        name: String,
        /// Erasure-code profile of every stripe placed on it.
        profile: EcProfile,
    },
    /// Move every partition off the generation.
    Drain {
        /// Generation name.
        name: String,
    },
    /// Stop moving partitions off (or onto) the generation for now.
    Pause {
        /// Generation name.
        name: String,
    },
    /// Undo `Pause`.
    Resume {
        /// Generation name.
        name: String,
    },
    /// Stop a drain: the generation is Active again; partitions on their way out come back.
    Cancel {
        /// Generation name.
        name: String,
    },
    /// Remove a drained generation for good; its nodes leave the cluster.
    Drop {
        /// Generation name.
        name: String,
        /// Drop even if the generation was not marked Drained, provided no partition has data on it.
        force: bool,
    },
    /// Limit how fast each node moves data, in bytes per second (0 = unlimited).
    SetRate {
        /// The new limit.
        bytes_per_sec: u64,
    },
}

/// A garbage-collection step on shards (RFC 0001).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GcAction {
    /// Stop counting the shards for dedup.
    Condemn,
    /// Count them again (a snapshot still references the chunk).
    Uncondemn,
    /// Delete the shards that are still condemned.
    Sweep,
}

/// What a garbage-collection run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Snapshots whose references were marked.
    pub snapshots: u64,
    /// Distinct chunks they reference.
    pub referenced: u64,
    /// Distinct chunks stored for the tenant.
    pub stored: u64,
    /// Stored chunks no snapshot referenced at the mark.
    pub candidates: u64,
    /// Upload sessions the sweep waited for.
    pub sessions_waited_for: u64,
    /// Candidates a snapshot committed during the run turned out to reference (kept).
    pub kept: u64,
    /// Chunks whose shards were deleted.
    pub deleted_chunks: u64,
    /// Shards deleted.
    pub deleted_shards: u64,
    /// Bytes of shard data freed.
    pub freed_bytes: u64,
    /// Holders that could not be reached during the sweep (their shards are collected by a later run).
    pub unreachable_holders: u64,
}
