//! Figures that describe how well a placement spreads data: used by tests and by the placement simulation.

use std::collections::BTreeMap;

use strata_proto::cluster_map::{Generation, NodeDescriptor, NodeSet};
use strata_proto::{GenerationId, NodeId};

/// Fill statistics over the nodes that hold at least one slot or are eligible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    /// Highest node fill divided by the mean fill (1.0 is perfect).
    pub max_over_mean: f64,
    /// Lowest node fill divided by the mean fill (1.0 is perfect).
    pub min_over_mean: f64,
}

/// Fill of each node: bytes it would hold per byte of partition data, divided by its capacity.
///
/// Assumes every partition holds the same amount of data (true on average: chunk ids are uniform), so a slot in
/// a k+m generation holds 1/k of a partition.
pub fn node_fill(
    sets: &[NodeSet],
    nodes: &BTreeMap<NodeId, NodeDescriptor>,
    generations: &BTreeMap<GenerationId, Generation>,
) -> BTreeMap<NodeId, f64> {
    let mut fill: BTreeMap<NodeId, f64> = BTreeMap::new();
    for set in sets {
        let k = f64::from(generations[&set.generation].profile.data_shards);
        for n in &set.nodes {
            *fill.entry(*n).or_default() += 1.0 / k / nodes[n].capacity_bytes as f64;
        }
    }
    fill
}

/// Max/mean and min/mean of node fill over `eligible` nodes (nodes without slots count as empty).
pub fn balance(fill: &BTreeMap<NodeId, f64>, eligible: impl IntoIterator<Item = NodeId>) -> Balance {
    let values: Vec<f64> = eligible.into_iter().map(|n| fill.get(&n).copied().unwrap_or(0.0)).collect();
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let max = values.iter().copied().fold(0.0, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    Balance { max_over_mean: max / mean, min_over_mean: min / mean }
}
