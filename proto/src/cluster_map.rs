//! The cluster map: nodes, storage generations, and the placement of every partition, versioned by epoch.
//!
//! The map is small (a table with one row per partition, never per chunk) and is committed through Raft; every
//! node and client holds a copy. This module holds only the types, their validation and the pure lookup
//! "chunk id -> partition -> ordered nodes". Computing a new placement is the node's `placement` module.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{ChunkId, Epoch, GenerationId, NodeId, PartitionId};

/// Largest supported partition count is `2^MAX_PARTITION_BITS`.
pub const MAX_PARTITION_BITS: u8 = 20;

/// Erasure-code profile: `data_shards` (k) data plus `parity_shards` (m) parity shards per stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EcProfile {
    /// k: shards that carry the blob's bytes; any k shards rebuild the blob.
    pub data_shards: u8,
    /// m: parity shards; a stripe survives the loss of any m shards.
    pub parity_shards: u8,
}

impl EcProfile {
    /// The default profile, 4 data + 2 parity.
    pub const DEFAULT: EcProfile = EcProfile { data_shards: 4, parity_shards: 2 };

    /// k + m.
    pub fn total_shards(self) -> usize {
        usize::from(self.data_shards) + usize::from(self.parity_shards)
    }

    /// Checks the profile is one Strata can encode.
    pub fn validate(self) -> Result<(), MapError> {
        if self.data_shards == 0 || self.parity_shards == 0 || self.total_shards() > 64 {
            return Err(MapError::BadProfile(self.to_string()));
        }
        Ok(())
    }
}

impl fmt::Display for EcProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.data_shards, self.parity_shards)
    }
}

impl FromStr for EcProfile {
    type Err = MapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MapError::BadProfile(s.to_owned());
        let (k, m) = s.split_once('+').ok_or_else(bad)?;
        let p = EcProfile { data_shards: k.trim().parse().map_err(|_| bad())?, parity_shards: m.trim().parse().map_err(|_| bad())? };
        p.validate()?;
        Ok(p)
    }
}

/// Life cycle of a storage generation. Only `Active` generations receive new partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GenerationState {
    /// Receives partitions and new data.
    Active,
    /// Its partitions are moving away; reads still served. Cancellable back to Active.
    Draining,
    /// Holds no partitions; its nodes may be stopped once dropped.
    Drained,
    /// Removed from the cluster for good.
    Dropped,
}

/// A set of nodes that came in together, with its own erasure-code profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Stable id.
    pub id: GenerationId,
    /// Operator-chosen name, unique in the cluster.
    pub name: String,
    /// Profile used for every stripe placed on this generation.
    pub profile: EcProfile,
    /// Where the generation is in its life cycle.
    pub state: GenerationState,
}

/// Administrative state of a node (reachability is measured separately and is not part of the map).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Member of the cluster, eligible for placement when its generation is Active.
    Active,
    /// Declared lost; its shards are to be rebuilt elsewhere.
    Down,
    /// Left the cluster.
    Removed,
}

/// A storage node as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescriptor {
    /// Stable id.
    pub id: NodeId,
    /// QUIC address other nodes and clients connect to (`host:port`).
    pub addr: String,
    /// Failure domain (rack, room, host...). Shards of one stripe are spread over zones.
    pub zone: String,
    /// Bytes this node offers for shards; placement weight.
    pub capacity_bytes: u64,
    /// Generation the node belongs to.
    pub generation: GenerationId,
    /// Administrative state.
    pub state: NodeState,
}

/// An ordered set of shard holders in one generation: position = shard index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeSet {
    /// Generation whose profile encodes the stripes stored on this set.
    pub generation: GenerationId,
    /// `k + m` distinct nodes of that generation; `nodes[i]` holds shard `i` of every stripe.
    pub nodes: Vec<NodeId>,
}

/// Where one partition lives. Deliberately not recursive, so decoding untrusted bytes cannot nest without bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlacement {
    /// The node set that holds the partition's data now.
    pub current: NodeSet,
    /// While the partition moves, the set it moves to. Writes go there; reads try it first.
    pub target: Option<NodeSet>,
}

/// The versioned cluster map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Incremented on every committed change.
    pub epoch: Epoch,
    /// The cluster has `2^partition_bits` partitions, fixed at init.
    pub partition_bits: u8,
    /// One entry per partition, indexed by partition id. Empty until the first generation can hold data.
    pub partitions: Vec<PartitionPlacement>,
    /// Every node ever admitted, by id.
    pub nodes: BTreeMap<NodeId, NodeDescriptor>,
    /// Every generation, by id.
    pub generations: BTreeMap<GenerationId, Generation>,
}

/// Why a map or a lookup is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Text that is not a valid `K+M` profile.
    #[error("invalid erasure-code profile {0:?}: expected K+M with K, M >= 1 and K+M <= 64")]
    BadProfile(String),
    /// The partition count is not `2^bits` with bits in range.
    #[error("partition bits {0} out of range 0..={MAX_PARTITION_BITS}")]
    BadPartitionBits(u8),
    /// No placement has been computed yet (the first generation is still assembling).
    #[error("the cluster map has no placement yet")]
    NoPlacement,
    /// The partition table's size does not match the partition count.
    #[error("partition table has {got} entries, expected {expected}")]
    WrongPartitionCount {
        /// Entries present.
        got: usize,
        /// Entries required.
        expected: usize,
    },
    /// A partition names a generation that does not exist.
    #[error("{partition} is placed on unknown generation {generation}")]
    UnknownGeneration {
        /// The partition.
        partition: PartitionId,
        /// The missing generation.
        generation: GenerationId,
    },
    /// A partition names a node that does not exist or is in another generation.
    #[error("{partition} is placed on {node}, which is not a node of {generation}")]
    ForeignNode {
        /// The partition.
        partition: PartitionId,
        /// The offending node.
        node: NodeId,
        /// The generation it should belong to.
        generation: GenerationId,
    },
    /// A partition's node list has the wrong length or repeats a node.
    #[error("{partition} has {got} distinct nodes, its profile needs {expected}")]
    WrongWidth {
        /// The partition.
        partition: PartitionId,
        /// Distinct nodes present.
        got: usize,
        /// k + m.
        expected: usize,
    },
}

/// What a node's map says about one shard slot (partition, index) on that node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRole {
    /// The node is the slot's holder in the partition's write set: it accepts writes for it.
    Write,
    /// The node holds the slot in the set a move is leaving: it keeps and serves it, but takes no writes.
    ReadOnly,
    /// The node does not hold the slot: shards it still has there are left over from a finished move.
    NotHeld,
}

/// How many partitions of a generation are settled or moving, by the map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationPartitions {
    /// Partitions whose data is on the generation and not moving.
    pub placed: u32,
    /// Partitions moving off the generation (their current set is on it).
    pub moving_out: u32,
    /// Partitions moving onto the generation (their target set is on it).
    pub moving_in: u32,
}

/// Where a chunk lives, resolved against a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    /// The chunk's partition.
    pub partition: PartitionId,
    /// The placement writes go to (the target while a move is under way).
    pub write: ResolvedPlacement<'a>,
    /// Placements to read from, in order of preference (target first, then the current one).
    pub read: Vec<ResolvedPlacement<'a>>,
}

/// A placement with its generation and node descriptors looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPlacement<'a> {
    /// The generation, for its profile.
    pub generation: &'a Generation,
    /// Ordered shard holders.
    pub nodes: Vec<&'a NodeDescriptor>,
}

impl ClusterMap {
    /// An empty map for a cluster with `2^partition_bits` partitions.
    pub fn new(partition_bits: u8) -> Result<Self, MapError> {
        if partition_bits > MAX_PARTITION_BITS {
            return Err(MapError::BadPartitionBits(partition_bits));
        }
        Ok(ClusterMap { epoch: Epoch(0), partition_bits, partitions: Vec::new(), nodes: BTreeMap::new(), generations: BTreeMap::new() })
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        1u32 << self.partition_bits
    }

    /// Whether partitions have been placed, i.e. the cluster can store data.
    pub fn is_placed(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// Looks a generation up by name.
    pub fn generation_by_name(&self, name: &str) -> Option<&Generation> {
        self.generations.values().find(|g| g.name == name)
    }

    /// Resolves where `chunk` is written and read.
    pub fn locate(&self, chunk: &ChunkId) -> Result<Location<'_>, MapError> {
        let partition = chunk.partition(self.partition_bits);
        self.locate_partition(partition)
    }

    /// Resolves where a partition is written and read.
    pub fn locate_partition(&self, partition: PartitionId) -> Result<Location<'_>, MapError> {
        let placement = self.partitions.get(partition.0 as usize).ok_or(MapError::NoPlacement)?;
        let current = self.resolve(partition, &placement.current)?;
        match &placement.target {
            None => Ok(Location { partition, write: current.clone(), read: vec![current] }),
            Some(target) => {
                let target = self.resolve(partition, target)?;
                Ok(Location { partition, write: target.clone(), read: vec![target, current] })
            }
        }
    }

    fn resolve<'a>(&'a self, partition: PartitionId, p: &NodeSet) -> Result<ResolvedPlacement<'a>, MapError> {
        let generation = self.generations.get(&p.generation).ok_or(MapError::UnknownGeneration { partition, generation: p.generation })?;
        let nodes = p
            .nodes
            .iter()
            .map(|id| match self.nodes.get(id) {
                Some(n) if n.generation == p.generation => Ok(n),
                _ => Err(MapError::ForeignNode { partition, node: *id, generation: p.generation }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResolvedPlacement { generation, nodes })
    }

    /// Checks every structural invariant of the map. Run on every map decoded from disk or the network.
    pub fn validate(&self) -> Result<(), MapError> {
        if self.partition_bits > MAX_PARTITION_BITS {
            return Err(MapError::BadPartitionBits(self.partition_bits));
        }
        for g in self.generations.values() {
            g.profile.validate()?;
        }
        if self.partitions.is_empty() {
            return Ok(());
        }
        let expected = self.partition_count() as usize;
        if self.partitions.len() != expected {
            return Err(MapError::WrongPartitionCount { got: self.partitions.len(), expected });
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let partition = PartitionId(i as u32);
            self.check_placement(partition, &p.current)?;
            if let Some(t) = &p.target {
                self.check_placement(partition, t)?;
            }
        }
        Ok(())
    }

    fn check_placement(&self, partition: PartitionId, p: &NodeSet) -> Result<(), MapError> {
        let resolved = self.resolve(partition, p)?;
        let distinct: BTreeSet<_> = p.nodes.iter().collect();
        let expected = resolved.generation.profile.total_shards();
        if distinct.len() != expected || p.nodes.len() != expected {
            return Err(MapError::WrongWidth { partition, got: distinct.len(), expected });
        }
        Ok(())
    }

    /// What `node` may do with shard `index` of `partition` under this map.
    pub fn slot_role(&self, partition: PartitionId, node: NodeId, index: u8) -> SlotRole {
        let Some(p) = self.partitions.get(partition.0 as usize) else {
            return SlotRole::NotHeld;
        };
        let at = |set: &NodeSet| set.nodes.get(usize::from(index)) == Some(&node);
        match &p.target {
            Some(t) if at(t) => SlotRole::Write,
            Some(_) if at(&p.current) => SlotRole::ReadOnly,
            None if at(&p.current) => SlotRole::Write,
            _ => SlotRole::NotHeld,
        }
    }

    /// Partition counts of one generation.
    pub fn generation_partitions(&self, generation: GenerationId) -> GenerationPartitions {
        let mut out = GenerationPartitions::default();
        for p in &self.partitions {
            let on_current = p.current.generation == generation;
            match &p.target {
                None if on_current => out.placed += 1,
                None => {}
                Some(t) => {
                    // A move inside one generation (a node replaced) counts as moving in and out.
                    if on_current {
                        out.moving_out += 1;
                    }
                    if t.generation == generation {
                        out.moving_in += 1;
                    }
                }
            }
        }
        out
    }

    /// Whether any partition has its current or target set on `generation`.
    pub fn generation_holds_data(&self, generation: GenerationId) -> bool {
        self.partitions.iter().any(|p| p.current.generation == generation || p.target.as_ref().is_some_and(|t| t.generation == generation))
    }

    /// Number of partitions (counting moving targets too) in which `node` holds a shard.
    pub fn partitions_on(&self, node: NodeId) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.current.nodes.contains(&node) || p.target.as_ref().is_some_and(|t| t.nodes.contains(&node)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn small_map() -> ClusterMap {
        let mut m = ClusterMap::new(2).unwrap();
        m.generations.insert(
            GenerationId(1),
            Generation {
                id: GenerationId(1),
                name: "g1".into(),
                profile: EcProfile { data_shards: 2, parity_shards: 1 },
                state: GenerationState::Active,
            },
        );
        for i in 1..=4 {
            m.nodes.insert(
                NodeId(i),
                NodeDescriptor {
                    id: NodeId(i),
                    addr: format!("127.0.0.1:{}", 7000 + i),
                    zone: format!("z{i}"),
                    capacity_bytes: 1 << 30,
                    generation: GenerationId(1),
                    state: NodeState::Active,
                },
            );
        }
        for p in 0..4u64 {
            let nodes = (0..3).map(|j| NodeId((p + j) % 4 + 1)).collect();
            m.partitions.push(PartitionPlacement { current: NodeSet { generation: GenerationId(1), nodes }, target: None });
        }
        m
    }

    #[test]
    fn profile_parses_and_rejects() {
        assert_eq!("4+2".parse::<EcProfile>().unwrap(), EcProfile::DEFAULT);
        assert_eq!(" 8 + 3 ".parse::<EcProfile>().unwrap().total_shards(), 11);
        for bad in ["4", "0+2", "4+0", "a+b", "60+10", ""] {
            assert!(bad.parse::<EcProfile>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn locate_resolves_ordered_nodes() {
        let m = small_map();
        m.validate().unwrap();
        let mut id = [0u8; 32];
        id[0] = 0b1100_0000; // partition 3
        let loc = m.locate(&ChunkId(id)).unwrap();
        assert_eq!(loc.partition, PartitionId(3));
        let ids: Vec<_> = loc.write.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![NodeId(4), NodeId(1), NodeId(2)]);
        assert_eq!(loc.read.len(), 1);
    }

    #[test]
    fn moving_partition_reads_target_first() {
        let mut m = small_map();
        m.partitions[0].target = Some(NodeSet { generation: GenerationId(1), nodes: vec![NodeId(2), NodeId(3), NodeId(4)] });
        m.validate().unwrap();
        let loc = m.locate_partition(PartitionId(0)).unwrap();
        assert_eq!(loc.write.nodes[0].id, NodeId(2));
        assert_eq!(loc.read.len(), 2);
        assert_eq!(loc.read[1].nodes[0].id, NodeId(1));
    }

    #[test]
    fn slot_roles_follow_moves() {
        let mut m = small_map();
        // Partition 0 is on nodes 1, 2, 3.
        assert_eq!(m.slot_role(PartitionId(0), NodeId(1), 0), SlotRole::Write);
        assert_eq!(m.slot_role(PartitionId(0), NodeId(1), 1), SlotRole::NotHeld);
        assert_eq!(m.slot_role(PartitionId(0), NodeId(4), 0), SlotRole::NotHeld);
        assert_eq!(m.slot_role(PartitionId(9), NodeId(1), 0), SlotRole::NotHeld);
        m.partitions[0].target = Some(NodeSet { generation: GenerationId(1), nodes: vec![NodeId(4), NodeId(2), NodeId(1)] });
        assert_eq!(m.slot_role(PartitionId(0), NodeId(4), 0), SlotRole::Write);
        assert_eq!(m.slot_role(PartitionId(0), NodeId(1), 0), SlotRole::ReadOnly);
        assert_eq!(m.slot_role(PartitionId(0), NodeId(2), 1), SlotRole::Write);
        assert_eq!(m.slot_role(PartitionId(0), NodeId(1), 2), SlotRole::Write);
        assert_eq!(m.slot_role(PartitionId(0), NodeId(3), 2), SlotRole::ReadOnly);
        let counts = m.generation_partitions(GenerationId(1));
        assert_eq!(counts, GenerationPartitions { placed: 3, moving_out: 1, moving_in: 1 });
        assert!(m.generation_holds_data(GenerationId(1)));
        assert!(!m.generation_holds_data(GenerationId(2)));
    }

    #[test]
    fn validate_catches_bad_tables() {
        let mut m = small_map();
        m.partitions[1].current.nodes[0] = m.partitions[1].current.nodes[1];
        assert!(matches!(m.validate(), Err(MapError::WrongWidth { .. })));
        let mut m = small_map();
        m.partitions[2].current.nodes[0] = NodeId(99);
        assert!(matches!(m.validate(), Err(MapError::ForeignNode { .. })));
        let mut m = small_map();
        m.partitions.pop();
        assert!(matches!(m.validate(), Err(MapError::WrongPartitionCount { .. })));
        assert!(ClusterMap::new(MAX_PARTITION_BITS + 1).is_err());
    }
}
