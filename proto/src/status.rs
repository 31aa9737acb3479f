//! The operator's view of the cluster, as returned by the `Status` request.
//!
//! Plain data: the node fills it from Raft state and its health probes; `strata admin status` renders it as a
//! table or as JSON. Reachability is this node's current view, not a consensus value.

use serde::{Deserialize, Serialize};

use crate::cluster_map::{Generation, NodeDescriptor};
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
