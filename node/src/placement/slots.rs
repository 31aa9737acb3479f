//! The greedy "keep, then fill by largest deficit" step used at both levels of placement.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use strata_proto::NodeId;
use strata_proto::cluster_map::NodeDescriptor;

use super::quota::water_fill;

/// Quota deficits are compared as integers in millionths of a slot, so ordering is total and deterministic.
fn deficit_key(quota: f64, count: usize) -> i64 {
    ((quota - count as f64) * 1e6).round() as i64
}

/// Level 1: assigns each item to a bucket. `kept[i]` is the item's previous bucket (kept while that bucket is
/// under `ceil(quota)`); the rest go to the bucket with the largest deficit, lowest index on ties.
pub(super) fn assign_with_quotas(kept: &[Option<usize>], quotas: &[f64]) -> Vec<usize> {
    let mut count = vec![0usize; quotas.len()];
    let mut out: Vec<Option<usize>> = kept
        .iter()
        .map(|k| {
            let b = (*k)?;
            (quotas[b] > 0.0 && (count[b] as f64) < quotas[b].ceil()).then(|| {
                count[b] += 1;
                b
            })
        })
        .collect();
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        let best = (0..quotas.len())
            .filter(|&b| quotas[b] > 0.0)
            .max_by_key(|&b| (deficit_key(quotas[b], count[b]), Reverse(b)))
            .expect("at least one bucket has a quota");
        count[best] += 1;
        *slot = Some(best);
    }
    out.into_iter().map(|s| s.expect("filled above")).collect()
}

/// Result of placing one generation's partitions.
pub(super) struct GenerationOutput {
    /// Node list per partition, in the order of the input.
    pub sets: Vec<Vec<NodeId>>,
    /// Whether some slot had to break the zone-spread rule.
    pub zone_rule_relaxed: bool,
}

/// Per-partition bookkeeping while its slots are filled.
struct PartitionSlots {
    slots: Vec<Option<usize>>,
    /// Whether the slot's holder is new in this plan (its data moves anyway).
    fresh: Vec<bool>,
    zone_count: BTreeMap<usize, usize>,
}

impl PartitionSlots {
    fn holds(&self, node: usize) -> bool {
        self.slots.contains(&Some(node))
    }

    fn zone_load(&self, zone: usize) -> usize {
        self.zone_count.get(&zone).copied().unwrap_or(0)
    }

    fn set(&mut self, slot: usize, node: usize, zone_of: &[usize]) {
        if let Some(old) = self.slots[slot] {
            *self.zone_count.entry(zone_of[old]).or_default() -= 1;
        }
        self.slots[slot] = Some(node);
        *self.zone_count.entry(zone_of[node]).or_default() += 1;
    }
}

/// The most shards of one partition a zone may hold: `ceil(width / zones)` when the zones are balanced
/// enough, otherwise the smallest cap these zone sizes can satisfy, so that the rule never has to be bent
/// (a bent rule would be undone by the next plan, moving data for nothing).
pub(super) fn zone_cap(width: usize, zone_sizes: &[usize]) -> usize {
    let mut cap = width.div_ceil(zone_sizes.len().max(1));
    while cap < width && zone_sizes.iter().map(|&s| s.min(cap)).sum::<usize>() < width {
        cap += 1;
    }
    cap
}

/// Shared inputs of the three phases.
struct Generation<'a> {
    zone_of: Vec<usize>,
    zone_cap: usize,
    quota: Vec<f64>,
    count: Vec<usize>,
    index: BTreeMap<NodeId, usize>,
    nodes: &'a [&'a NodeDescriptor],
}

/// Level 2: assigns `width` distinct nodes to every partition of one generation.
///
/// `kept[p]` is the previous node per slot of partition `p` (all `None` for a partition new to the generation).
/// Phases: keep every previous holder that is still eligible and respects the rules; fill empty slots by
/// largest deficit; then move single slots from over-quota to under-quota nodes until balanced. Every move in
/// the last phase goes to a node that needs data, so movement stays close to the minimum.
pub(super) fn place_generation(nodes: &[&NodeDescriptor], width: usize, kept: &[Vec<Option<NodeId>>]) -> GenerationOutput {
    let mut zone_ids: BTreeMap<&str, usize> = BTreeMap::new();
    let zone_of: Vec<usize> = nodes
        .iter()
        .map(|n| {
            let next = zone_ids.len();
            *zone_ids.entry(n.zone.as_str()).or_insert(next)
        })
        .collect();
    let capacities: Vec<f64> = nodes.iter().map(|n| n.capacity_bytes as f64).collect();
    let mut zone_sizes = vec![0usize; zone_ids.len()];
    for &z in &zone_of {
        zone_sizes[z] += 1;
    }
    let mut g = Generation {
        zone_cap: zone_cap(width, &zone_sizes),
        zone_of,
        quota: water_fill((kept.len() * width) as f64, &capacities, kept.len() as f64),
        count: vec![0; nodes.len()],
        index: nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect(),
        nodes,
    };
    let mut parts = keep_valid(&mut g, width, kept);
    let zone_rule_relaxed = fill_empty(&mut g, &mut parts);
    rebalance(&mut g, &mut parts);
    let sets = parts.into_iter().map(|ps| ps.slots.into_iter().map(|s| nodes[s.expect("filled")].id).collect()).collect();
    GenerationOutput { sets, zone_rule_relaxed }
}

/// Keeps previous holders that are eligible, distinct and within the zone rule.
fn keep_valid(g: &mut Generation<'_>, width: usize, kept: &[Vec<Option<NodeId>>]) -> Vec<PartitionSlots> {
    kept.iter()
        .map(|prev| {
            let mut ps = PartitionSlots { slots: vec![None; width], fresh: vec![true; width], zone_count: BTreeMap::new() };
            for (i, node) in prev.iter().enumerate().take(width) {
                let Some(&n) = node.as_ref().and_then(|id| g.index.get(id)) else {
                    continue;
                };
                if ps.holds(n) || ps.zone_load(g.zone_of[n]) >= g.zone_cap {
                    continue;
                }
                ps.set(i, n, &g.zone_of);
                ps.fresh[i] = false;
                g.count[n] += 1;
            }
            ps
        })
        .collect()
}

/// Tie-break between nodes of equal deficit: a hash of the node and its current count, so equally needy
/// nodes interleave pseudo-randomly (diverse node sets spread repair work) yet deterministically.
fn tie(node: NodeId, count: usize) -> u64 {
    let mut x = node.0 ^ (count as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

type FillKey = (i64, u64, Reverse<usize>);

fn fill_key(g: &Generation<'_>, n: usize) -> FillKey {
    (deficit_key(g.quota[n], g.count[n]), tie(g.nodes[n].id, g.count[n]), Reverse(n))
}

/// Fills empty slots, each with the node of largest deficit that fits. Returns whether the zone rule bent.
fn fill_empty(g: &mut Generation<'_>, parts: &mut [PartitionSlots]) -> bool {
    // A max-heap by deficit; every node is in the heap exactly once.
    let mut heap: BinaryHeap<FillKey> = (0..g.nodes.len()).map(|n| fill_key(g, n)).collect();
    let mut relaxed = false;
    for ps in parts.iter_mut() {
        for i in 0..ps.slots.len() {
            if ps.slots[i].is_some() {
                continue;
            }
            let mut rejected = Vec::new();
            let mut chosen = None;
            while let Some(entry) = heap.pop() {
                let n = entry.2.0;
                if !ps.holds(n) && ps.zone_load(g.zone_of[n]) < g.zone_cap {
                    chosen = Some(n);
                    break;
                }
                rejected.push(entry);
            }
            let n = match chosen {
                Some(n) => n,
                None => {
                    // Every node breaks the zone rule: take the neediest one that is at least distinct.
                    relaxed = true;
                    let pos = rejected.iter().position(|e| !ps.holds(e.2.0)).expect("a generation has at least k+m nodes");
                    rejected.remove(pos).2.0
                }
            };
            ps.set(i, n, &g.zone_of);
            g.count[n] += 1;
            heap.push(fill_key(g, n));
            heap.extend(rejected);
        }
    }
    relaxed
}

/// Moves single slots from over-quota nodes to nodes at least one whole slot under quota.
///
/// Slots that are new in this plan are taken first: reassigning them moves no extra data. Only when none fits
/// is a kept slot moved.
fn rebalance(g: &mut Generation<'_>, parts: &mut [PartitionSlots]) {
    if parts.is_empty() {
        return;
    }
    let mut heap: BinaryHeap<(i64, Reverse<usize>)> =
        (0..g.nodes.len()).map(|n| (deficit_key(g.quota[n], g.count[n]), Reverse(n))).collect();
    // Each node scans partitions from its own starting point, so new data spreads over the partition range.
    let mut cursor: Vec<usize> =
        g.nodes.iter().map(|n| (n.id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) % parts.len() as u64) as usize).collect();
    // Fresh slots by holder, so the cheap candidates are found without scanning every partition.
    let mut fresh_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); g.nodes.len()];
    for (p, ps) in parts.iter().enumerate() {
        for (slot, holder) in ps.slots.iter().enumerate() {
            if let Some(v) = holder.filter(|_| ps.fresh[slot]) {
                fresh_of[v].push((p, slot));
            }
        }
    }
    while let Some((deficit, Reverse(u))) = heap.pop() {
        if deficit < 1_000_000 {
            break;
        }
        let found = find_fresh_victim(g, parts, &mut fresh_of, u).or_else(|| find_victim(g, parts, u, cursor[u]));
        if let Some((p, slot, v)) = found {
            parts[p].set(slot, u, &g.zone_of);
            parts[p].fresh[slot] = true;
            fresh_of[u].push((p, slot));
            g.count[v] -= 1;
            g.count[u] += 1;
            cursor[u] = (p + 1) % parts.len();
            heap.push((deficit_key(g.quota[u], g.count[u]), Reverse(u)));
        }
    }
}

/// How far over its quota node `v` is, in millionths of a slot.
fn excess(g: &Generation<'_>, v: usize) -> i64 {
    -deficit_key(g.quota[v], g.count[v])
}

/// Whether `u` may take partition `p`'s slot from `v` without repeating a node or breaking the zone rule.
fn may_take(g: &Generation<'_>, ps: &PartitionSlots, u: usize, v: usize) -> bool {
    !ps.holds(u) && (g.zone_of[v] == g.zone_of[u] || ps.zone_load(g.zone_of[u]) < g.zone_cap)
}

/// A slot new in this plan, held by an over-quota node, that `u` may take: (partition, slot, holder).
fn find_fresh_victim(
    g: &Generation<'_>,
    parts: &[PartitionSlots],
    fresh_of: &mut [Vec<(usize, usize)>],
    u: usize,
) -> Option<(usize, usize, usize)> {
    let mut over: Vec<usize> = (0..g.nodes.len()).filter(|&v| excess(g, v) > 0 && !fresh_of[v].is_empty()).collect();
    over.sort_by_key(|&v| (Reverse(excess(g, v)), v));
    for v in over {
        fresh_of[v].retain(|&(p, s)| parts[p].slots[s] == Some(v) && parts[p].fresh[s]);
        if let Some(&(p, s)) = fresh_of[v].iter().find(|&&(p, _)| may_take(g, &parts[p], u, v)) {
            return Some((p, s, v));
        }
    }
    None
}

/// Any slot held by an over-quota node that `u` may take, scanning partitions from `start`.
fn find_victim(g: &Generation<'_>, parts: &[PartitionSlots], u: usize, start: usize) -> Option<(usize, usize, usize)> {
    for step in 0..parts.len() {
        let p = (start + step) % parts.len();
        let ps = &parts[p];
        let victim = (0..ps.slots.len())
            .filter_map(|slot| ps.slots[slot].map(|v| (slot, v)))
            .filter(|&(_, v)| excess(g, v) > 0 && may_take(g, ps, u, v))
            .max_by_key(|&(_, v)| (excess(g, v), Reverse(v)));
        if let Some((slot, v)) = victim {
            return Some((p, slot, v));
        }
    }
    None
}
