//! Work only the Raft leader does: growing the voter set, placing partitions once a generation can hold data,
//! starting partition moves and marking emptied generations Drained.
//!
//! The decisions are pure (`membership::plan`, `placement::plan`, `migrate::plan`); this loop gathers their
//! inputs from Raft metrics and the applied state and carries out one step per tick. The data itself is moved
//! by each target set's first node (`migrate`), never by this loop.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::ChangeMembers;
use strata_proto::cluster_map::{GenerationState, NodeState};
use strata_proto::{NodeSet, PartitionPlacement};
use tokio::sync::watch;

use super::Meta;
use super::command::{GenerationStep, MetaCommand};
use super::membership::{self, MemberView, MembershipStep};
use super::session_watch::SessionWatch;
use crate::config::NodeConfig;
use crate::health::Health;
use crate::placement::{self, PlacementInput};

/// Entries a learner may lag behind and still count as caught up.
const CAUGHT_UP_SLACK: u64 = 50;

/// Runs until `shutdown` turns true.
pub async fn run(meta: Meta, health: Arc<Health>, config: NodeConfig, mut shutdown: watch::Receiver<bool>) {
    let max_moving = config.migration.max_moving_partitions;
    let down_after = Duration::from_millis(config.repair.node_down_after_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // Planning moves is costly on big clusters (seconds at 1,000 nodes): only when the map has changed.
    let mut moves_planned_at = None;
    let mut sessions = SessionWatch::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if meta.leader() != Some(meta.node_id().0) {
            sessions.forget_all();
            continue;
        }
        // Several membership steps may be due at once (a whole cluster starting): take them back to back.
        for _ in 0..16 {
            if !reconcile_membership(&meta).await {
                break;
            }
        }
        ensure_placement(&meta).await;
        declare_down(&meta, &health, down_after).await;
        let epoch = meta.reader.map().epoch;
        if moves_planned_at != Some(epoch) && start_moves(&meta, max_moving).await {
            moves_planned_at = Some(epoch);
        }
        mark_drained(&meta).await;
        end_sessions(&meta, &mut sessions).await;
    }
}

/// Gives partitions the placement planner wants elsewhere a target set, within the cluster's move budget.
/// Returns whether the map needs no further planning until it changes.
async fn start_moves(meta: &Meta, max_moving: usize) -> bool {
    let (epoch, moves) = {
        let map = meta.reader.map();
        (map.epoch, crate::migrate::plan::next_moves(&map, max_moving))
    };
    if moves.is_empty() {
        return true;
    }
    let n = moves.len();
    match meta.write(MetaCommand::StartMoves { expected_epoch: epoch, moves }).await {
        Ok(r) => {
            tracing::info!(partitions = n, ?r, "partition moves started");
            true
        }
        Err(e) => {
            tracing::info!(error = %e, "partition moves not started; will retry");
            false
        }
    }
}

/// Declares nodes Down that this leader has not reached for `down_after`, so placement replaces them and the
/// movers rebuild their shards. A generation never gets more than its parity count of nodes declared Down:
/// beyond that nothing can be rebuilt, and so many silent nodes at once more likely means this leader is cut off.
async fn declare_down(meta: &Meta, health: &Health, down_after: Duration) {
    let map = meta.reader.map();
    for n in map.nodes.values().filter(|n| n.state == NodeState::Active && n.id != meta.node_id()) {
        let gone_for = health.get(n.id).unreachable_since.map(|t| t.elapsed()).unwrap_or_default();
        if gone_for < down_after {
            continue;
        }
        let Some(g) = map.generations.get(&n.generation) else { continue };
        let down = map.nodes.values().filter(|m| m.generation == n.generation && m.state == NodeState::Down).count();
        if down >= usize::from(g.profile.parity_shards) {
            tracing::warn!(node = %n.id, generation = %g.name, down, "node unreachable but not declared Down: too many nodes of its generation are down");
            continue;
        }
        match meta.write(MetaCommand::SetNodeState { node: n.id, state: NodeState::Down }).await {
            Ok(_) => tracing::warn!(node = %n.id, secs = gone_for.as_secs(), "node declared Down; its shards will be rebuilt elsewhere"),
            Err(e) => tracing::warn!(node = %n.id, error = %e, "could not declare the node Down; will retry"),
        }
        // One per tick: the next tick sees the new map.
        return;
    }
}

/// Marks Draining generations that hold no data any more as Drained.
async fn mark_drained(meta: &Meta) {
    let names = crate::migrate::plan::drained(&meta.reader.map());
    for name in names {
        let step = MetaCommand::GenerationStep { name: name.clone(), step: GenerationStep::MarkDrained };
        match meta.write(step).await {
            Ok(_) => tracing::info!(generation = %name, "generation drained: it holds no data and can be dropped"),
            Err(e) => tracing::warn!(generation = %name, error = %e, "could not mark the generation drained; will retry"),
        }
    }
}

/// Ends upload sessions not renewed for a whole lease by this leader's monotonic clock ([`SessionWatch`]), so
/// they stop fencing garbage collection. No wall clock decides: a node whose clock is off or jumps cannot end a
/// live backup's session.
async fn end_sessions(meta: &Meta, watch: &mut SessionWatch) {
    let now = Instant::now();
    let over = meta.reader.read(|s| watch.over(&s.sessions, now));
    if over.is_empty() {
        return;
    }
    match meta.write(MetaCommand::DropSessions { sessions: over }).await {
        Ok(r) => tracing::info!(?r, "ended upload sessions whose lease ran out"),
        Err(e) => tracing::warn!(error = %e, "could not end upload sessions; will retry"),
    }
}

/// Carries out the next membership step; returns whether one was carried out successfully.
async fn reconcile_membership(meta: &Meta) -> bool {
    let (voters, learners, views) = {
        let metrics = meta.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let matched = |id: u64| -> bool {
            if id == meta.node_id().0 {
                return true;
            }
            m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).is_some_and(|l| l.index + CAUGHT_UP_SLACK >= last)
        };
        let views: Vec<MemberView> = meta.reader.read(|s| {
            s.map
                .nodes
                .values()
                .map(|n| MemberView {
                    id: n.id.0,
                    addr: n.addr.clone(),
                    zone: n.zone.clone(),
                    eligible: n.state == NodeState::Active
                        && s.map.generations.get(&n.generation).is_some_and(|g| g.state == GenerationState::Active),
                    caught_up: matched(n.id.0),
                    removed: n.state == NodeState::Removed,
                })
                .collect()
        });
        (voters, learners, views)
    };
    let Some(step) = membership::plan(&voters, &learners, &views) else {
        return false;
    };
    tracing::info!(?step, "raft membership change");
    let result = match step {
        MembershipStep::AddLearner { id, addr } => meta.raft.add_learner(id, BasicNode { addr }, false).await.map(|_| ()),
        MembershipStep::SetVoters(v) => meta.raft.change_membership(ChangeMembers::ReplaceAllVoters(v), true).await.map(|_| ()),
        MembershipStep::RemoveLearners(ids) => meta.raft.change_membership(ChangeMembers::RemoveNodes(ids), false).await.map(|_| ()),
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "raft membership change failed; will retry");
            false
        }
    }
}

async fn ensure_placement(meta: &Meta) {
    let (epoch, sets) = {
        let map = meta.reader.map();
        if map.is_placed() {
            return;
        }
        let input =
            PlacementInput { previous: &[], partition_count: map.partition_count(), nodes: &map.nodes, generations: &map.generations };
        match placement::plan(input) {
            Ok(plan) => (map.epoch, plan.sets),
            Err(e) => {
                tracing::debug!(reason = %e, "no placement yet");
                return;
            }
        }
    };
    let partitions = sets.into_iter().map(|current: NodeSet| PartitionPlacement { current, target: None }).collect();
    match meta.write(MetaCommand::SetPlacement { expected_epoch: epoch, partitions }).await {
        Ok(r) => tracing::info!(?r, "initial placement committed"),
        Err(e) => tracing::warn!(error = %e, "initial placement not committed; will retry"),
    }
}
