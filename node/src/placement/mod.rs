//! Placement: which nodes hold which partitions. A pure function of (old placement, nodes, generations).
//!
//! The planner never does I/O and never reads a clock: the Raft leader calls it with the committed state and
//! proposes the result. It must never place data on a generation that is not Active or on a node that is not
//! Active, never put two shards of a partition on one node, and should move as little as possible.
//!
//! The algorithm works in two levels, each "keep what is still valid and within quota, then fill the gaps
//! greedily by largest deficit":
//! 1. partitions to generations, with quotas proportional to each Active generation's usable capacity
//!    (raw capacity times k/(k+m));
//! 2. within a generation, shard slots to nodes, with quotas proportional to node capacity (water-filled so no
//!    node is asked for more than one shard per partition), at most `ceil((k+m)/zones)` shards of a partition
//!    per zone.
//!
//! Keeping a slot is allowed up to `ceil(quota)`, filling aims at the exact quota, so an unchanged cluster
//! yields an unchanged placement and a change moves close to the minimum the new quotas require.

mod balance;
mod quota;
mod slots;

use std::collections::BTreeMap;

use strata_proto::cluster_map::{Generation, GenerationState, NodeDescriptor, NodeSet, NodeState};
use strata_proto::{GenerationId, NodeId};

pub use balance::{Balance, balance, node_fill};
pub use quota::water_fill;

/// Why no placement could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No Active generation has at least k+m Active nodes.
    #[error("no active generation has enough active nodes for its erasure-code profile ({detail})")]
    NoEligibleGeneration {
        /// Per generation: name, nodes available and nodes needed.
        detail: String,
    },
}

/// Input to the planner.
#[derive(Debug, Clone, Copy)]
pub struct PlacementInput<'a> {
    /// Current placement per partition (what is being moved *to* if a move is under way), or empty.
    pub previous: &'a [NodeSet],
    /// Number of partitions.
    pub partition_count: u32,
    /// Every node.
    pub nodes: &'a BTreeMap<NodeId, NodeDescriptor>,
    /// Every generation.
    pub generations: &'a BTreeMap<GenerationId, Generation>,
}

/// Output of the planner plus figures that describe its quality.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementPlan {
    /// The desired node set of every partition.
    pub sets: Vec<NodeSet>,
    /// Shard slots whose node differs from `previous` (0 when there was no previous placement).
    pub moved_slots: u64,
    /// Total shard slots in the plan.
    pub total_slots: u64,
    /// Whether the zone-spread rule had to be relaxed for some partition (too few zones for the quotas).
    pub zone_rule_relaxed: bool,
}

/// An eligible generation and its eligible nodes.
struct GenerationPool<'a> {
    generation: &'a Generation,
    nodes: Vec<&'a NodeDescriptor>,
}

impl GenerationPool<'_> {
    fn width(&self) -> usize {
        self.generation.profile.total_shards()
    }

    /// Usable bytes: raw capacity scaled by the code rate k/(k+m).
    fn usable_capacity(&self) -> f64 {
        let raw: f64 = self.nodes.iter().map(|n| n.capacity_bytes as f64).sum();
        raw * f64::from(self.generation.profile.data_shards) / self.width() as f64
    }
}

fn eligible_pools<'a>(input: &PlacementInput<'a>) -> Result<Vec<GenerationPool<'a>>, PlacementError> {
    let mut pools = Vec::new();
    let mut detail = Vec::new();
    for g in input.generations.values().filter(|g| g.state == GenerationState::Active) {
        let nodes: Vec<_> =
            input.nodes.values().filter(|n| n.generation == g.id && n.state == NodeState::Active && n.capacity_bytes > 0).collect();
        let pool = GenerationPool { generation: g, nodes };
        detail.push(format!("{}: {} of {} nodes", g.name, pool.nodes.len(), pool.width()));
        if pool.nodes.len() >= pool.width() {
            pools.push(pool);
        }
    }
    if pools.is_empty() {
        return Err(PlacementError::NoEligibleGeneration { detail: detail.join(", ") });
    }
    Ok(pools)
}

/// Computes the desired placement of every partition.
pub fn plan(input: PlacementInput<'_>) -> Result<PlacementPlan, PlacementError> {
    let pools = eligible_pools(&input)?;
    let partitions = input.partition_count as usize;
    let previous = |p: usize| input.previous.get(p);

    // Level 1: partitions to generations.
    let weights: Vec<f64> = pools.iter().map(GenerationPool::usable_capacity).collect();
    let quotas = water_fill(partitions as f64, &weights, f64::INFINITY);
    let kept_gen: Vec<Option<usize>> =
        (0..partitions).map(|p| previous(p).and_then(|set| pools.iter().position(|pool| pool.generation.id == set.generation))).collect();
    let gen_of = slots::assign_with_quotas(&kept_gen, &quotas);

    // Level 2: within each generation, slots to nodes.
    let mut sets: Vec<Option<NodeSet>> = vec![None; partitions];
    let mut zone_rule_relaxed = false;
    for (g, pool) in pools.iter().enumerate() {
        let members: Vec<usize> = (0..partitions).filter(|&p| gen_of[p] == g).collect();
        let kept: Vec<Vec<Option<NodeId>>> = members
            .iter()
            .map(|&p| match previous(p) {
                Some(set) if set.generation == pool.generation.id => set.nodes.iter().map(|n| Some(*n)).collect(),
                _ => vec![None; pool.width()],
            })
            .collect();
        let out = slots::place_generation(&pool.nodes, pool.width(), &kept);
        zone_rule_relaxed |= out.zone_rule_relaxed;
        for (i, &p) in members.iter().enumerate() {
            sets[p] = Some(NodeSet { generation: pool.generation.id, nodes: out.sets[i].clone() });
        }
    }
    let sets: Vec<NodeSet> = sets.into_iter().map(|s| s.expect("every partition was assigned a generation")).collect();
    let (moved_slots, total_slots) = count_moves(input.previous, &sets);
    Ok(PlacementPlan { sets, moved_slots, total_slots, zone_rule_relaxed })
}

/// Slots whose holder changed, and total slots. A partition that changes generation moves all its slots.
pub fn count_moves(previous: &[NodeSet], next: &[NodeSet]) -> (u64, u64) {
    let mut moved = 0u64;
    let mut total = 0u64;
    for (p, set) in next.iter().enumerate() {
        total += set.nodes.len() as u64;
        match previous.get(p) {
            Some(old) if old.generation == set.generation => {
                moved += set.nodes.iter().zip(&old.nodes).filter(|(a, b)| a != b).count() as u64;
            }
            Some(_) => moved += set.nodes.len() as u64,
            None => {}
        }
    }
    (moved, total)
}

#[cfg(test)]
mod tests;
