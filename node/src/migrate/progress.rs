//! Per-generation progress figures for `strata admin generation list` and the `strata_generation_*` metrics,
//! computed from the map, the usage each node last reported and the measured move rate. Pure.
//!
//! "To move" is an estimate: a generation's stored bytes in proportion to its partitions that must still
//! leave (all of them while it drains). Retirement deletes a partition's old shards right after its move
//! completes, so the estimate falls to zero as the drain finishes.

use std::collections::{BTreeMap, BTreeSet};

use strata_proto::cluster_map::{GenerationState, NodeState};
use strata_proto::status::GenerationProgress;
use strata_proto::{ClusterMap, GenerationId, NodeId};

/// What each node last reported: (shards, bytes) stored and when it last finished a scrub pass (0: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// Shards stored.
    pub shards: u64,
    /// Shard bytes stored.
    pub bytes: u64,
    /// End of its last complete scrub pass, ms since the Unix epoch; 0 when none.
    pub scrubbed_at_ms: u64,
}

/// Progress of every generation from what each node reported; `rate` is the cluster's moved bytes per second.
pub fn generation_progress(
    map: &ClusterMap,
    reports: &BTreeMap<NodeId, NodeReport>,
    paused: &BTreeSet<GenerationId>,
    rate: u64,
) -> Vec<GenerationProgress> {
    map.generations
        .values()
        .map(|g| {
            let members: Vec<NodeId> = map.nodes.values().filter(|n| n.generation == g.id).map(|n| n.id).collect();
            let (stored_shards, stored_bytes) =
                members.iter().filter_map(|n| reports.get(n)).fold((0u64, 0u64), |(s, b), r| (s + r.shards, b + r.bytes));
            let active: Vec<NodeId> =
                map.nodes.values().filter(|n| n.generation == g.id && n.state == NodeState::Active).map(|n| n.id).collect();
            let last_verified_ms = if active.is_empty() {
                None
            } else {
                active.iter().map(|n| reports.get(n).map_or(0, |r| r.scrubbed_at_ms)).min().filter(|t| *t > 0)
            };
            let partitions = map.generation_partitions(g.id);
            let holding = u64::from(partitions.placed + partitions.moving_out);
            let leaving = if g.state == GenerationState::Draining { holding } else { u64::from(partitions.moving_out) };
            let share = |x: u64| if holding == 0 { 0 } else { (u128::from(x) * u128::from(leaving) / u128::from(holding)) as u64 };
            let bytes_to_move = share(stored_bytes);
            let chunks_to_move = share(stored_shards / g.profile.total_shards() as u64);
            let eta_secs = (bytes_to_move > 0 && rate > 0).then(|| bytes_to_move.div_ceil(rate));
            GenerationProgress {
                generation: g.clone(),
                paused: paused.contains(&g.id),
                nodes: members.len() as u32,
                partitions,
                stored_shards,
                stored_bytes,
                stored_chunks: stored_shards / g.profile.total_shards() as u64,
                bytes_to_move,
                chunks_to_move,
                eta_secs,
                safe_to_remove: matches!(g.state, GenerationState::Drained | GenerationState::Dropped) && !map.generation_holds_data(g.id),
                last_verified_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::cluster_map::{Generation, NodeDescriptor, PartitionPlacement};
    use strata_proto::{EcProfile, NodeSet};

    #[test]
    fn a_draining_generation_must_move_everything_it_holds() {
        let mut m = ClusterMap::new(2).unwrap();
        let profile = EcProfile { data_shards: 1, parity_shards: 1 };
        for (g, state) in [(1, GenerationState::Draining), (2, GenerationState::Active)] {
            m.generations.insert(GenerationId(g), Generation { id: GenerationId(g), name: format!("g{g}"), profile, state });
            for i in 0..2 {
                let id = NodeId(u64::from(g) * 10 + i);
                let d = NodeDescriptor {
                    id,
                    addr: "127.0.0.1:1".into(),
                    zone: format!("z{i}"),
                    capacity_bytes: 1,
                    generation: GenerationId(g),
                    state: NodeState::Active,
                };
                m.nodes.insert(id, d);
            }
        }
        let a = NodeSet { generation: GenerationId(1), nodes: vec![NodeId(10), NodeId(11)] };
        let b = NodeSet { generation: GenerationId(2), nodes: vec![NodeId(20), NodeId(21)] };
        m.partitions = vec![
            PartitionPlacement { current: a.clone(), target: Some(b.clone()) },
            PartitionPlacement { current: a.clone(), target: None },
            PartitionPlacement { current: b.clone(), target: None },
            PartitionPlacement { current: b, target: None },
        ];
        let r = |shards, bytes, scrubbed_at_ms| NodeReport { shards, bytes, scrubbed_at_ms };
        let reports = BTreeMap::from([(NodeId(10), r(100, 1000, 7)), (NodeId(11), r(100, 1000, 5)), (NodeId(20), r(50, 500, 9))]);
        let p = generation_progress(&m, &reports, &BTreeSet::from([GenerationId(1)]), 100);
        assert_eq!(p[0].stored_bytes, 2000);
        assert_eq!(p[0].bytes_to_move, 2000);
        assert_eq!(p[0].chunks_to_move, 100);
        assert_eq!(p[0].stored_chunks, 100);
        assert_eq!(p[0].eta_secs, Some(20));
        assert!(p[0].paused && !p[0].safe_to_remove);
        assert_eq!(p[1].bytes_to_move, 0);
        assert_eq!(p[1].eta_secs, None);
        assert_eq!(p[1].partitions.moving_in, 1);
        // Verified as of the oldest pass among its nodes; never, while one node has not finished a pass.
        assert_eq!(p[0].last_verified_ms, Some(5));
        assert_eq!(p[1].last_verified_ms, None);
    }
}
