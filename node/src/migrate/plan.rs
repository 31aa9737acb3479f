//! Pure decisions of the migration engine: which partitions start moving, which node moves each one, which
//! target slots a chunk still lacks, and which draining generations are empty. No I/O and no clock.

use std::collections::{BTreeMap, BTreeSet};

use strata_proto::cluster_map::{GenerationState, NodeState};
use strata_proto::{ClusterMap, GenerationId, Holding, NodeId, NodeSet, PartitionId, StripeTag};

use crate::placement::{self, PlacementInput};

/// Partitions to start moving now, with their targets: those the placement planner wants elsewhere, at most
/// `max_moving` moving at once (counting those already moving). Partitions already moving are left alone: a
/// move is never redirected, only completed or (by cancelling a drain) turned around.
pub fn next_moves(map: &ClusterMap, max_moving: usize) -> Vec<(PartitionId, NodeSet)> {
    if !map.is_placed() {
        return Vec::new();
    }
    let previous: Vec<NodeSet> = map.partitions.iter().map(|p| p.target.clone().unwrap_or_else(|| p.current.clone())).collect();
    let input =
        PlacementInput { previous: &previous, partition_count: map.partition_count(), nodes: &map.nodes, generations: &map.generations };
    let Ok(plan) = placement::plan(input) else {
        return Vec::new();
    };
    let moving = map.partitions.iter().filter(|p| p.target.is_some()).count();
    let budget = max_moving.saturating_sub(moving);
    let mut wanted: Vec<(usize, PartitionId, NodeSet)> = map
        .partitions
        .iter()
        .zip(plan.sets)
        .enumerate()
        .filter(|(_, (p, want))| p.target.is_none() && p.current != *want)
        .map(|(i, (p, want))| (lost_shards(map, &p.current), PartitionId(i as u32), want))
        .collect();
    // Moves already running, per node that runs them (the first node of the target).
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for t in map.partitions.iter().filter_map(|p| p.target.as_ref()) {
        *load.entry(t.nodes[0]).or_default() += 1;
    }
    // Repairs first, the partitions with the most shards on lost nodes before the others; among equals, the
    // one whose mover has the least work, so the budget keeps every target node busy.
    let mut chosen = Vec::new();
    while chosen.len() < budget && !wanted.is_empty() {
        let best = (0..wanted.len())
            .min_by_key(|&i| {
                let (lost, p, set) = &wanted[i];
                (std::cmp::Reverse(*lost), load.get(&set.nodes[0]).copied().unwrap_or(0), *p)
            })
            .expect("wanted is not empty");
        let (_, p, set) = wanted.swap_remove(best);
        *load.entry(set.nodes[0]).or_default() += 1;
        chosen.push((p, set));
    }
    chosen
}

/// Shards of a set that sit on nodes no longer Active (declared Down or removed).
pub fn lost_shards(map: &ClusterMap, set: &NodeSet) -> usize {
    set.nodes.iter().filter(|n| map.nodes.get(n).is_none_or(|d| d.state != NodeState::Active)).count()
}

/// Partitions waiting for repair: their current set has shards on lost nodes.
pub fn repair_queue(map: &ClusterMap) -> usize {
    map.partitions.iter().filter(|p| lost_shards(map, &p.current) > 0).count()
}

/// Draining generations that no partition has data on any more.
pub fn drained(map: &ClusterMap) -> Vec<String> {
    map.generations
        .values()
        .filter(|g| g.state == GenerationState::Draining && !map.generation_holds_data(g.id))
        .map(|g| g.name.clone())
        .collect()
}

/// Whether `me` runs the move to `target`: its first node, or the first one `is_down` does not rule out. Two
/// nodes may both decide they do (their views of who is down differ); the copies are idempotent and only one
/// completion is accepted, so that costs work, never data.
pub fn is_mover(target: &NodeSet, me: NodeId, is_down: impl Fn(NodeId) -> bool) -> bool {
    target.nodes.iter().copied().find(|n| *n == me || !is_down(*n)) == Some(me)
}

/// Whether moves of a partition between `current` and `target` are paused.
pub fn is_paused(current: &NodeSet, target: &NodeSet, paused: &BTreeSet<GenerationId>) -> bool {
    paused.contains(&current.generation) || paused.contains(&target.generation)
}

/// The stripes a move must carry: those its source holds (`None` for an in-place fill, where the set is its
/// own source). A target stripe outside them was written to the target alone, by a put that met nothing there,
/// and must not decide what the partition holds once the source is retired.
pub type Authoritative<'a> = Option<&'a BTreeSet<StripeTag>>;

fn allowed(tag: StripeTag, authoritative: Authoritative<'_>) -> bool {
    tag != StripeTag::MIXED && authoritative.is_none_or(|a| a.contains(&tag))
}

/// The stripe of a chunk held in its own slot by the most target nodes, among those `authoritative` allows,
/// with that count: `held[i]` is what target node `i` reported (`None` when it could not be asked). Ties go
/// to the smaller tag.
pub fn dominant_stripe(held: &[Option<Holding>], authoritative: Authoritative<'_>) -> Option<(StripeTag, usize)> {
    let mut counts: BTreeMap<StripeTag, usize> = BTreeMap::new();
    for (i, h) in held.iter().enumerate() {
        if let Some(h) = h
            && holds_own_slot(h, i)
            && allowed(h.stripe, authoritative)
        {
            *counts.entry(h.stripe).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(tag, n)| (*n, std::cmp::Reverse(*tag)))
}

fn holds_own_slot(h: &Holding, slot: usize) -> bool {
    slot < 64 && h.mask & (1u64 << slot) != 0
}

/// Whether a chunk is safely on the target: every reachable target node holds its own shard of one allowed
/// stripe, and at least `need` do (the put acknowledgement rule, so one dead target node never blocks a move).
pub fn settled(held: &[Option<Holding>], need: usize, authoritative: Authoritative<'_>) -> bool {
    let Some((stripe, present)) = dominant_stripe(held, authoritative) else { return false };
    let reachable_complete = held.iter().enumerate().all(|(i, h)| h.is_none_or(|h| holds_own_slot(&h, i) && h.stripe == stripe));
    present >= need && reachable_complete
}

/// The shard writes that complete stripe `stripe` on the target, as (slot, stripe it replaces): every
/// reachable slot without a shard; every slot holding a stripe the source does not hold (`authoritative`);
/// and every slot holding another stripe that the target cannot decode (fewer than `k` of its shards there),
/// naming that stripe so the holder may replace it. A slot that holds another allowed stripe which can be
/// decoded is left alone: two complete encodings of one chunk id are only ever written by a tenant racing
/// itself, and the reader chooses between them.
pub fn slot_writes(
    held: &[Option<Holding>],
    stripe: StripeTag,
    k: usize,
    authoritative: Authoritative<'_>,
) -> Vec<(usize, Option<StripeTag>)> {
    let count =
        |tag: StripeTag| held.iter().enumerate().filter(|(i, h)| h.is_some_and(|h| holds_own_slot(&h, *i) && h.stripe == tag)).count();
    held.iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let h = (*h)?;
            if !holds_own_slot(&h, i) {
                return Some((i, None));
            }
            if h.stripe == stripe || h.stripe == StripeTag::MIXED {
                return None;
            }
            let foreign = authoritative.is_some_and(|a| !a.contains(&h.stripe));
            (foreign || count(h.stripe) < k).then_some((i, Some(h.stripe)))
        })
        .collect()
}

/// Whether some reachable target slot lacks a shard of the chunk's dominant allowed stripe (so reading the
/// blob may let the mover write something).
pub fn needs_writes(held: &[Option<Holding>], authoritative: Authoritative<'_>) -> bool {
    let dominant = dominant_stripe(held, authoritative).map(|(t, _)| t);
    held.iter().enumerate().any(|(i, h)| h.is_some_and(|h| !holds_own_slot(&h, i) || Some(h.stripe) != dominant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::cluster_map::{Generation, NodeDescriptor, NodeState, PartitionPlacement};
    use strata_proto::{EcProfile, Epoch};

    fn map_with(gens: &[(u32, GenerationState, usize)]) -> ClusterMap {
        let mut m = ClusterMap::new(4).unwrap();
        let mut next = 1u64;
        for &(g, state, n) in gens {
            let profile = EcProfile { data_shards: 2, parity_shards: 1 };
            m.generations.insert(GenerationId(g), Generation { id: GenerationId(g), name: format!("g{g}"), profile, state });
            for _ in 0..n {
                let d = NodeDescriptor {
                    id: NodeId(next),
                    addr: format!("127.0.0.1:{next}"),
                    zone: format!("z{next}"),
                    capacity_bytes: 1 << 30,
                    generation: GenerationId(g),
                    state: NodeState::Active,
                };
                m.nodes.insert(d.id, d);
                next += 1;
            }
        }
        m.epoch = Epoch(1);
        m
    }

    /// Generation 1 (3 nodes) holds every partition and is draining into an Active generation 2 of
    /// `new_nodes` nodes that joined after placement.
    fn draining_into_new(new_nodes: usize) -> ClusterMap {
        let mut m = map_with(&[(1, GenerationState::Active, 3), (2, GenerationState::Draining, new_nodes)]);
        place(&mut m);
        m.generations.get_mut(&GenerationId(2)).unwrap().state = GenerationState::Active;
        m.generations.get_mut(&GenerationId(1)).unwrap().state = GenerationState::Draining;
        m
    }

    fn place(m: &mut ClusterMap) {
        let input = PlacementInput { previous: &[], partition_count: m.partition_count(), nodes: &m.nodes, generations: &m.generations };
        m.partitions =
            placement::plan(input).unwrap().sets.into_iter().map(|current| PartitionPlacement { current, target: None }).collect();
    }

    #[test]
    fn a_settled_map_moves_nothing() {
        let mut m = map_with(&[(1, GenerationState::Active, 3)]);
        place(&mut m);
        assert!(next_moves(&m, 100).is_empty());
        assert!(drained(&m).is_empty());
    }

    #[test]
    fn draining_moves_every_partition_within_the_budget() {
        let mut m = draining_into_new(4);
        let moves = next_moves(&m, 5);
        assert_eq!(moves.len(), 5);
        assert!(moves.iter().all(|(_, set)| set.generation == GenerationId(2)));
        for (p, set) in &moves {
            m.partitions[p.0 as usize].target = Some(set.clone());
        }
        // Moving partitions count against the budget and are never redirected.
        assert!(next_moves(&m, 5).is_empty());
        assert_eq!(next_moves(&m, 16).len(), 11);
        assert!(drained(&m).is_empty());
    }

    #[test]
    fn drained_once_no_partition_remains() {
        let mut m = map_with(&[(1, GenerationState::Active, 3), (2, GenerationState::Active, 3)]);
        m.generations.get_mut(&GenerationId(1)).unwrap().state = GenerationState::Draining;
        place(&mut m);
        assert_eq!(drained(&m), vec!["g1".to_string()]);
    }

    #[test]
    fn lost_nodes_are_replaced_most_endangered_partitions_first() {
        let mut m = map_with(&[(1, GenerationState::Active, 5)]);
        place(&mut m);
        assert_eq!(repair_queue(&m), 0);
        m.nodes.get_mut(&NodeId(2)).unwrap().state = NodeState::Down;
        m.nodes.get_mut(&NodeId(3)).unwrap().state = NodeState::Down;
        let queue = repair_queue(&m);
        assert!(queue > 0);
        let moves = next_moves(&m, 100);
        assert_eq!(moves.len(), queue, "exactly the partitions on lost nodes move");
        let lost: Vec<usize> = moves.iter().map(|(p, _)| lost_shards(&m, &m.partitions[p.0 as usize].current)).collect();
        assert!(lost.windows(2).all(|w| w[0] >= w[1]), "most endangered first: {lost:?}");
        for (p, set) in &moves {
            assert_eq!(lost_shards(&m, set), 0);
            let old = &m.partitions[p.0 as usize].current;
            let kept = set.nodes.iter().zip(&old.nodes).filter(|(a, b)| a == b).count();
            assert_eq!(kept, set.nodes.len() - lost_shards(&m, old), "only the lost slots change");
        }
        // With a budget of one, the most endangered partition goes first.
        assert_eq!(next_moves(&m, 1)[0], moves[0]);
    }

    #[test]
    fn the_budget_is_spread_over_the_movers() {
        let m = draining_into_new(6);
        let moves = next_moves(&m, 6);
        let mut per_mover: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (_, set) in &moves {
            *per_mover.entry(set.nodes[0]).or_default() += 1;
        }
        let movers: BTreeSet<NodeId> = next_moves(&m, 100).iter().map(|(_, set)| set.nodes[0]).collect();
        assert_eq!(moves.len(), 6);
        let fair = 6usize.div_ceil(movers.len());
        assert!(per_mover.values().all(|&n| n <= fair), "six moves over {} movers: {per_mover:?}", movers.len());
    }

    #[test]
    fn the_first_live_target_node_moves() {
        let set = NodeSet { generation: GenerationId(1), nodes: vec![NodeId(4), NodeId(5), NodeId(6)] };
        assert!(is_mover(&set, NodeId(4), |_| false));
        assert!(!is_mover(&set, NodeId(5), |_| false));
        assert!(is_mover(&set, NodeId(5), |n| n == NodeId(4)));
        assert!(!is_mover(&set, NodeId(6), |n| n == NodeId(4)));
        assert!(!is_mover(&set, NodeId(9), |_| true));
    }

    const A: StripeTag = StripeTag(0xa1);
    const B: StripeTag = StripeTag(0xb1);

    fn h(mask: u64, stripe: StripeTag) -> Option<Holding> {
        Some(Holding { mask, stripe })
    }

    #[test]
    fn slots_count_only_at_their_position() {
        // Node 0 holds shard 0; node 1 holds shard 0 only (wrong slot); node 2 unreachable.
        let held = [h(0b001, A), h(0b001, A), None];
        assert_eq!(slot_writes(&held, A, 2, None), vec![(1, None)]);
        assert!(!settled(&held, 1, None));
        assert!(needs_writes(&held, None));
        // Every reachable node has its shard; the unreachable one is tolerated if enough remain.
        let held = [h(0b001, A), h(0b010, A), None];
        assert!(settled(&held, 2, None));
        assert!(!settled(&held, 3, None));
        assert!(!needs_writes(&held, None));
        assert!(slot_writes(&held, A, 2, None).is_empty());
    }

    #[test]
    fn a_stripe_that_cannot_be_decoded_is_replaced_and_one_that_can_is_not() {
        // Four slots of a 2+2 target: A in 0, 1, 2; B (another encoding) in 3.
        let held = [h(0b0001, A), h(0b0010, A), h(0b0100, A), h(0b1000, B)];
        assert_eq!(dominant_stripe(&held, None), Some((A, 3)));
        assert!(!settled(&held, 3, None), "a slot holds another stripe");
        assert_eq!(slot_writes(&held, A, 2, None), vec![(3, Some(B))], "B has one shard of the two it needs: useless, replaced");
        // B decodable (two shards): left alone, and writing A elsewhere is still possible.
        let held = [h(0b0001, A), None, h(0b0100, B), h(0b1000, B)];
        assert!(slot_writes(&held, A, 2, None).is_empty());
        assert_eq!(slot_writes(&held, StripeTag(0xc1), 2, None), vec![(0, Some(A))], "a lone shard of A cannot be decoded");
        let held = [h(0, A), h(0b0010, StripeTag::MIXED), None, None];
        assert_eq!(slot_writes(&held, A, 2, None), vec![(0, None)], "a node holding shards of several stripes is not rewritten");
    }

    #[test]
    fn a_move_carries_the_source_stripe_over_anything_written_to_the_target_alone() {
        // A put during the move wrote a complete stripe B to the target; the source holds A.
        let held = [h(0b0001, B), h(0b0010, B), h(0b0100, B), h(0b1000, B)];
        let source = BTreeSet::from([A]);
        assert!(settled(&held, 3, None), "without knowing the source, B looks settled");
        assert!(!settled(&held, 3, Some(&source)), "but it is not what the source holds");
        assert!(needs_writes(&held, Some(&source)));
        assert_eq!(slot_writes(&held, A, 2, Some(&source)), (0..4).map(|i| (i, Some(B))).collect::<Vec<_>>(), "every B shard is replaced");
        let after = [h(0b0001, A), h(0b0010, A), h(0b0100, A), h(0b1000, A)];
        assert!(settled(&after, 3, Some(&source)));
    }
}
