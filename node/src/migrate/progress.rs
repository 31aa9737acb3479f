//! Per-generation progress figures for `strata admin generation list` and the `strata_generation_*` metrics,
//! computed from the map, the usage each node last reported and the measured move rate. Pure.
//!
//! "To move" is an estimate: a generation's stored bytes in proportion to its partitions that must still
//! leave (all of them while it drains). Retirement deletes a partition's old shards right after its move
//! completes, so the estimate falls to zero as the drain finishes.

use std::collections::{BTreeMap, BTreeSet};

use strata_proto::cluster_map::GenerationState;
use strata_proto::status::GenerationProgress;
use strata_proto::{ClusterMap, GenerationId, NodeId};

/// Progress of every generation. `usage` holds (shards, bytes) per node that reported; `rate` is the
/// cluster's moved bytes per second.
pub fn generation_progress(
    map: &ClusterMap,
    usage: &BTreeMap<NodeId, (u64, u64)>,
    paused: &BTreeSet<GenerationId>,
    rate: u64,
) -> Vec<GenerationProgress> {
    map.generations
        .values()
        .map(|g| {
            let members: Vec<NodeId> = map.nodes.values().filter(|n| n.generation == g.id).map(|n| n.id).collect();
            let (stored_shards, stored_bytes) =
                members.iter().filter_map(|n| usage.get(n)).fold((0u64, 0u64), |(s, b), (ns, nb)| (s + ns, b + nb));
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
                bytes_to_move,
                chunks_to_move,
                eta_secs,
                safe_to_remove: matches!(g.state, GenerationState::Drained | GenerationState::Dropped) && !map.generation_holds_data(g.id),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::cluster_map::{Generation, NodeDescriptor, NodeState, PartitionPlacement};
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
        let usage = BTreeMap::from([(NodeId(10), (100, 1000)), (NodeId(11), (100, 1000)), (NodeId(20), (50, 500))]);
        let p = generation_progress(&m, &usage, &BTreeSet::from([GenerationId(1)]), 100);
        assert_eq!(p[0].stored_bytes, 2000);
        assert_eq!(p[0].bytes_to_move, 2000);
        assert_eq!(p[0].chunks_to_move, 100);
        assert_eq!(p[0].eta_secs, Some(20));
        assert!(p[0].paused && !p[0].safe_to_remove);
        assert_eq!(p[1].bytes_to_move, 0);
        assert_eq!(p[1].eta_secs, None);
        assert_eq!(p[1].partitions.moving_in, 1);
    }
}
