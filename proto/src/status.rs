//! The operator's view of the cluster, as returned by the `Status` request.
//!
//! Plain data: the node fills it from Raft state and its health probes; `strata admin status` renders it as a
//! table or as JSON. Reachability is this node's current view, not a consensus value.

use serde::{Deserialize, Serialize};

use crate::cluster_map::{Generation, GenerationPartitions, NodeDescriptor};
use crate::ids::{Epoch, NodeId};

/// Cluster-wide status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Node that answered.
    pub reporter: NodeId,
    /// Current Raft leader, if known.
    pub leader: Option<NodeId>,
    /// Current Raft term.
    pub term: u64,
    /// Index of the last committed Raft log entry.
    pub commit_index: u64,
    /// Epoch of the cluster map.
    pub epoch: Epoch,
    /// Partition count.
    pub partitions: u32,
    /// Whether partitions are placed (the cluster can store data).
    pub placed: bool,
    /// Raft voters.
    pub voters: Vec<NodeId>,
    /// Every node with its health.
    pub nodes: Vec<NodeStatus>,
    /// Every generation.
    pub generations: Vec<Generation>,
    /// Data movement between generations and nodes.
    pub migration: MigrationStatus,
    /// Nodes holding the cluster CA key (which admits nodes and renews their certificates).
    pub ca_holders: Vec<NodeId>,
    /// SHA-256 fingerprints (hex) of the trusted CA certificates; the last one issues new certificates.
    pub trusted_cas: Vec<String>,
    /// While a CA rotation is in progress: the nodes (not Removed) still waiting to renew onto the new CA.
    pub ca_rotation_pending: Option<Vec<NodeId>>,
}

/// Cluster-wide view of data movement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// Configured per-node limit on moved bytes per second (0 = unlimited).
    pub rate_limit_bytes_per_sec: u64,
    /// Bytes per second written by movers across the cluster, measured over the last probes.
    pub moved_bytes_per_sec: u64,
    /// Progress per generation, in generation id order.
    pub generations: Vec<GenerationProgress>,
    /// Partitions with shards on nodes declared Down, waiting for (or in) repair.
    pub partitions_awaiting_repair: u32,
}

/// Progress of one generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationProgress {
    /// The generation.
    pub generation: Generation,
    /// Whether moves from or to it are paused.
    pub paused: bool,
    /// Nodes in it (any state).
    pub nodes: u32,
    /// Partition counts by movement state.
    pub partitions: GenerationPartitions,
    /// Shards stored on its nodes (as last reported).
    pub stored_shards: u64,
    /// Bytes of shards stored on its nodes (as last reported).
    pub stored_bytes: u64,
    /// Chunks stored on it: its shards divided by its stripe width.
    pub stored_chunks: u64,
    /// Estimated bytes still to move off it: its stored bytes in proportion to the partitions moving out.
    pub bytes_to_move: u64,
    /// Estimated chunks still to move off it.
    pub chunks_to_move: u64,
    /// Estimated seconds until the moves off it finish at the current rate (`None` when nothing moves).
    pub eta_secs: Option<u64>,
    /// Whether its nodes can be switched off without losing anything (it holds no partition's data).
    pub safe_to_remove: bool,
    /// When every one of its Active nodes had last finished a full scrub pass (the oldest of them), ms since
    /// the Unix epoch; `None` until each has finished one since it started.
    pub last_verified_ms: Option<u64>,
}

/// One node's state and health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// How the cluster map describes the node.
    pub descriptor: NodeDescriptor,
    /// Whether the reporter reached it on its last probe.
    pub reachable: bool,
    /// Milliseconds since the reporter last heard from it (`None`: never).
    pub last_seen_ms_ago: Option<u64>,
    /// Partitions in which it holds a shard.
    pub partitions: u32,
    /// Shards it stores (as it last reported).
    pub shards: Option<u64>,
    /// Bytes of shard data it stores (as it last reported).
    pub bytes: Option<u64>,
}
