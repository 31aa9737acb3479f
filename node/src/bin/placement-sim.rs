//! Placement at scale: 1,000 nodes in 50 zones, then 10% more capacity, reported against the optimum.
//!
//! Run with `cargo run --release -p strata-node --bin placement-sim [-- --partition-bits 16]`. It prints the
//! fill balance (max/mean and min/mean of bytes per byte of capacity; 1.00 is perfect) and the fraction of
//! shard slots moved when capacity is added, next to the minimum any placement must move.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_node::placement::{self, PlacementInput, PlacementPlan, balance, node_fill};
use strata_proto::cluster_map::{Generation, GenerationState, NodeDescriptor, NodeState};
use strata_proto::{GenerationId, NodeId, NodeSet};

const TB: u64 = 1_000_000_000_000;

struct World {
    nodes: BTreeMap<NodeId, NodeDescriptor>,
    generations: BTreeMap<GenerationId, Generation>,
}

impl World {
    fn add_generation(&mut self, id: u32, profile: &str) {
        let g = Generation {
            id: GenerationId(id),
            name: format!("gen-{id}"),
            profile: profile.parse().expect("profile"),
            state: GenerationState::Active,
        };
        self.generations.insert(g.id, g);
    }

    fn add_node(&mut self, id: u64, generation: u32, zone: u64, capacity: u64) {
        let n = NodeDescriptor {
            id: NodeId(id),
            addr: String::new(),
            zone: format!("zone-{zone:02}"),
            capacity_bytes: capacity,
            generation: GenerationId(generation),
            state: NodeState::Active,
        };
        self.nodes.insert(n.id, n);
    }

    fn plan(&self, previous: &[NodeSet], partitions: u32) -> (PlacementPlan, f64) {
        let started = Instant::now();
        let p =
            placement::plan(PlacementInput { previous, partition_count: partitions, nodes: &self.nodes, generations: &self.generations })
                .expect("placement");
        (p, started.elapsed().as_secs_f64())
    }

    fn capacity(&self) -> u64 {
        self.nodes.values().map(|n| n.capacity_bytes).sum()
    }

    fn report(&self, label: &str, plan: &PlacementPlan, secs: f64) {
        let fill = node_fill(&plan.sets, &self.nodes, &self.generations);
        let b = balance(&fill, self.nodes.keys().copied());
        println!(
            "{label}: fill max/mean {:.4}, min/mean {:.4}, zone rule relaxed: {}, computed in {secs:.2} s",
            b.max_over_mean, b.min_over_mean, plan.zone_rule_relaxed
        );
    }
}

/// A realistic mix of disk sizes: 4, 8, 12 and 16 TB nodes.
fn capacity_of(i: u64) -> u64 {
    [4, 8, 12, 16][(i % 4) as usize] * TB
}

fn main() {
    let bits: u8 = std::env::args().skip_while(|a| a != "--partition-bits").nth(1).and_then(|v| v.parse().ok()).unwrap_or(16);
    let partitions = 1u32 << bits;
    let mut w = World { nodes: BTreeMap::new(), generations: BTreeMap::new() };
    w.add_generation(1, "4+2");
    for i in 0..1000u64 {
        w.add_node(i + 1, 1, i % 50, capacity_of(i));
    }
    println!("1000 nodes in 50 zones (4/8/12/16 TB), 4+2, {partitions} partitions ({} shard slots)", u64::from(partitions) * 6);
    let (base, secs) = w.plan(&[], partitions);
    w.report("initial placement", &base, secs);

    // (a) 10% more capacity as 100 new nodes in the same generation, spread over the zones.
    let before = w.capacity();
    let mut grown = World { nodes: w.nodes.clone(), generations: w.generations.clone() };
    let mut next = 1001u64;
    while grown.capacity() < before + before / 10 {
        grown.add_node(next, 1, next % 50, capacity_of(next));
        next += 1;
    }
    let added = grown.capacity() - before;
    let (after, secs) = grown.plan(&base.sets, partitions);
    grown.report(&format!("+{} nodes (+{:.1}% capacity)", next - 1001, added as f64 * 100.0 / before as f64), &after, secs);
    let optimum = added as f64 / grown.capacity() as f64;
    let moved = after.moved_slots as f64 / after.total_slots as f64;
    println!(
        "  moved {:.2}% of shard slots; optimum {:.2}% (the new nodes' share); ratio {:.3}",
        moved * 100.0,
        optimum * 100.0,
        moved / optimum
    );

    // (b) 10% more capacity as a new generation with its own profile (3+2).
    let mut new_gen = World { nodes: w.nodes.clone(), generations: w.generations.clone() };
    new_gen.add_generation(2, "3+2");
    let mut next = 5001u64;
    let start_cap = new_gen.capacity();
    while new_gen.capacity() < start_cap + start_cap / 10 {
        new_gen.add_node(next, 2, next % 50, capacity_of(next));
        next += 1;
    }
    let (after, secs) = new_gen.plan(&base.sets, partitions);
    new_gen.report(&format!("new 3+2 generation of {} nodes", next - 5001), &after, secs);
    let moved_partitions = after.sets.iter().zip(&base.sets).filter(|(a, b)| a.generation != b.generation).count();
    let usable = |g: u32, k: f64, n: f64| -> f64 {
        new_gen.nodes.values().filter(|x| x.generation == GenerationId(g)).map(|x| x.capacity_bytes as f64).sum::<f64>() * k / n
    };
    let share = usable(2, 3.0, 5.0) / (usable(1, 4.0, 6.0) + usable(2, 3.0, 5.0));
    println!(
        "  moved {moved_partitions} of {partitions} partitions ({:.2}%) to the new generation; optimum {:.2}% (its share of usable capacity)",
        moved_partitions as f64 * 100.0 / f64::from(partitions),
        share * 100.0
    );
}
