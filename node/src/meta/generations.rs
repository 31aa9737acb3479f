//! Applying generation and migration commands to the replicated state: adding generations, their life-cycle
//! steps (drain, cancel, pause, resume, drained, drop), the migration rate, and the start and completion of
//! partition moves.
//!
//! Every check here reads only the replicated state, so each replica refuses or applies alike. The rule that
//! keeps data safe lives in `complete_move` and `cancel`: a partition's data leaves a set only when a move to
//! another set completes (the mover copied and verified it first), and a cancelled move turns around instead of
//! being forgotten, because blobs written while it ran exist only on its target.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use strata_proto::cluster_map::{Generation, GenerationState, NodeState};
use strata_proto::{EcProfile, Epoch, ErrorCode, GenerationId, NodeSet, PartitionId};

use super::command::{GenerationStep, MetaResponse};
use super::state::MetaState;

/// Replicated knobs of the migration engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSettings {
    /// Generations whose moves are paused.
    pub paused: BTreeSet<GenerationId>,
    /// Per-node rate limit overriding the node configuration (0 = unlimited); `None`: use the configuration.
    pub rate_bytes_per_sec: Option<u64>,
}

fn reject(code: ErrorCode, msg: impl Into<String>) -> MetaResponse {
    MetaResponse::reject(code, msg)
}

/// Whether `name` is acceptable for a generation: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_generation_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl MetaState {
    pub(super) fn add_generation(&mut self, name: &str, profile: EcProfile) -> MetaResponse {
        if !valid_generation_name(name) {
            return reject(
                ErrorCode::BadRequest,
                format!("invalid generation name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"),
            );
        }
        if let Err(e) = profile.validate() {
            return reject(ErrorCode::BadRequest, e.to_string());
        }
        if self.map.generation_by_name(name).is_some() {
            return reject(ErrorCode::Conflict, format!("a generation named {name:?} already exists"));
        }
        let id = GenerationId(self.map.generations.keys().map(|g| g.0).max().unwrap_or(0) + 1);
        self.map.generations.insert(id, Generation { id, name: name.to_owned(), profile, state: GenerationState::Active });
        self.map.epoch.0 += 1;
        MetaResponse::Epoch(self.map.epoch)
    }

    pub(super) fn generation_step(&mut self, name: &str, step: GenerationStep) -> MetaResponse {
        let Some(g) = self.map.generation_by_name(name).cloned() else {
            return reject(ErrorCode::NotFound, format!("generation {name:?} does not exist"));
        };
        if g.state == GenerationState::Dropped {
            // Dropping again is what a retry looks like when the reply to the first drop was lost (the dropped
            // nodes' connections close as the drop is applied): it succeeds and changes nothing.
            if matches!(step, GenerationStep::Drop { .. }) {
                return MetaResponse::Epoch(self.map.epoch);
            }
            return reject(ErrorCode::Conflict, format!("generation {name:?} was dropped"));
        }
        let result = match step {
            GenerationStep::Drain => self.drain(&g),
            GenerationStep::Cancel => self.cancel(&g),
            GenerationStep::Pause => {
                self.migration.paused.insert(g.id);
                return MetaResponse::Ok;
            }
            GenerationStep::Resume => {
                self.migration.paused.remove(&g.id);
                return MetaResponse::Ok;
            }
            GenerationStep::MarkDrained => self.mark_drained(&g),
            GenerationStep::Drop { force } => self.drop_generation(&g, force),
        };
        match result {
            Ok(()) => {
                self.map.epoch.0 += 1;
                MetaResponse::Epoch(self.map.epoch)
            }
            Err(refusal) => refusal,
        }
    }

    fn set_generation_state(&mut self, id: GenerationId, state: GenerationState) {
        if let Some(g) = self.map.generations.get_mut(&id) {
            g.state = state;
        }
    }

    fn drain(&mut self, g: &Generation) -> Result<(), MetaResponse> {
        if g.state != GenerationState::Active {
            return Err(reject(
                ErrorCode::Conflict,
                format!("generation {:?} is {:?}, only an Active one can be drained", g.name, g.state),
            ));
        }
        let other_can_hold = self.map.generations.values().any(|o| {
            o.id != g.id
                && o.state == GenerationState::Active
                && self.map.nodes.values().filter(|n| n.generation == o.id && n.state == NodeState::Active).count()
                    >= o.profile.total_shards()
        });
        if !other_can_hold {
            return Err(reject(
                ErrorCode::Conflict,
                format!(
                    "draining {:?} would leave no Active generation with enough nodes for its erasure-code profile; add one first",
                    g.name
                ),
            ));
        }
        self.set_generation_state(g.id, GenerationState::Draining);
        Ok(())
    }

    /// Draining -> Active. Partitions moving off the generation turn around: the set they were moving to
    /// becomes the one they move away from, so reads keep seeing both until the mover has brought back every
    /// blob written to the target meanwhile.
    fn cancel(&mut self, g: &Generation) -> Result<(), MetaResponse> {
        if g.state != GenerationState::Draining {
            return Err(reject(
                ErrorCode::Conflict,
                format!("generation {:?} is {:?}, only a Draining one can be cancelled", g.name, g.state),
            ));
        }
        for p in &mut self.map.partitions {
            if p.current.generation == g.id
                && let Some(t) = p.target.take_if(|t| t.generation != g.id)
            {
                p.target = Some(std::mem::replace(&mut p.current, t));
            }
        }
        self.set_generation_state(g.id, GenerationState::Active);
        Ok(())
    }

    fn mark_drained(&mut self, g: &Generation) -> Result<(), MetaResponse> {
        if g.state != GenerationState::Draining {
            return Err(reject(ErrorCode::Conflict, format!("generation {:?} is {:?}, not Draining", g.name, g.state)));
        }
        if self.map.generation_holds_data(g.id) {
            return Err(reject(ErrorCode::Conflict, format!("generation {:?} still holds partitions", g.name)));
        }
        self.set_generation_state(g.id, GenerationState::Drained);
        Ok(())
    }

    fn drop_generation(&mut self, g: &Generation, force: bool) -> Result<(), MetaResponse> {
        let counts = self.map.generation_partitions(g.id);
        if self.map.generation_holds_data(g.id) {
            return Err(reject(
                ErrorCode::Conflict,
                format!(
                    "refusing to drop {:?}: {} partitions are placed on it, {} are moving off it and {} onto it; their data would be \
                     lost. Drain it and wait until `strata admin generation list` shows it Drained",
                    g.name, counts.placed, counts.moving_out, counts.moving_in
                ),
            ));
        }
        if !force && g.state != GenerationState::Drained {
            return Err(reject(
                ErrorCode::Conflict,
                format!(
                    "refusing to drop {:?}: it is {:?}, not Drained. It holds no partition, so `--force` may drop it anyway",
                    g.name, g.state
                ),
            ));
        }
        if !self.ca_held_outside(g.id) {
            return Err(reject(
                ErrorCode::Conflict,
                format!(
                    "refusing to drop {:?}: its nodes hold the only copies of the cluster CA key, without which no node can join \
                     or renew its certificate. Wait until Raft voters of another generation have taken it over (`strata admin \
                     status` lists the holders)",
                    g.name
                ),
            ));
        }
        self.set_generation_state(g.id, GenerationState::Dropped);
        for n in self.map.nodes.values_mut().filter(|n| n.generation == g.id) {
            n.state = NodeState::Removed;
        }
        self.forget_removed_holders();
        self.migration.paused.remove(&g.id);
        Ok(())
    }

    pub(super) fn set_migration_rate(&mut self, bytes_per_sec: Option<u64>) -> MetaResponse {
        self.migration.rate_bytes_per_sec = bytes_per_sec;
        MetaResponse::Ok
    }

    pub(super) fn start_moves(&mut self, expected: Epoch, moves: &[(PartitionId, NodeSet)]) -> MetaResponse {
        if expected != self.map.epoch {
            return reject(ErrorCode::StaleEpoch, format!("moves planned at {expected}, map is at {}", self.map.epoch));
        }
        let mut next = self.map.clone();
        for (partition, set) in moves {
            let Some(p) = next.partitions.get_mut(partition.0 as usize) else {
                return reject(ErrorCode::BadRequest, format!("{partition} does not exist"));
            };
            if p.target.is_some() {
                return reject(ErrorCode::Conflict, format!("{partition} is already moving"));
            }
            if p.current == *set {
                return reject(ErrorCode::BadRequest, format!("{partition} would move to the set it is on"));
            }
            p.target = Some(set.clone());
        }
        if let Err(e) = next.validate() {
            return reject(ErrorCode::BadRequest, format!("invalid moves: {e}"));
        }
        next.epoch.0 += 1;
        self.map = next;
        MetaResponse::Epoch(self.map.epoch)
    }

    pub(super) fn set_node_state(&mut self, node: strata_proto::NodeId, state: NodeState) -> MetaResponse {
        if !matches!(state, NodeState::Down | NodeState::Active) {
            return reject(ErrorCode::BadRequest, "a node can only be declared Down or Active; Removed comes with dropping its generation");
        }
        let Some(n) = self.map.nodes.get_mut(&node) else {
            return reject(ErrorCode::NotFound, format!("{node} is not a node of this cluster"));
        };
        if n.state == NodeState::Removed {
            return reject(ErrorCode::Conflict, format!("{node} was removed from the cluster"));
        }
        if n.state != state {
            n.state = state;
            self.map.epoch.0 += 1;
        }
        MetaResponse::Epoch(self.map.epoch)
    }

    pub(super) fn complete_move(&mut self, partition: PartitionId, target: &NodeSet) -> MetaResponse {
        let Some(p) = self.map.partitions.get_mut(partition.0 as usize) else {
            return reject(ErrorCode::BadRequest, format!("{partition} does not exist"));
        };
        if p.target.as_ref() != Some(target) {
            return reject(ErrorCode::Conflict, format!("{partition} is no longer moving to that node set"));
        }
        p.current = p.target.take().expect("checked above");
        self.map.epoch.0 += 1;
        MetaResponse::Epoch(self.map.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::command::{InitCluster, MetaCommand};
    use strata_proto::{NodeAnnouncement, NodeId, PartitionPlacement};

    /// A cluster with gen-a (nodes 1-3) holding all 4 partitions and an empty gen-b (nodes 4-6), both 2+1.
    fn two_generations() -> MetaState {
        let mut s = MetaState::default();
        let profile = EcProfile { data_shards: 2, parity_shards: 1 };
        let init = InitCluster {
            cluster_name: "c".into(),
            partition_bits: 2,
            generation_name: "gen-a".into(),
            profile,
            operator_token: [1; 32],
            now_ms: 0,
        };
        s.apply(&MetaCommand::Init(init));
        assert!(matches!(s.apply(&MetaCommand::AddGeneration { name: "gen-b".into(), profile }), MetaResponse::Epoch(_)));
        for id in 1..=6u64 {
            let generation = if id <= 3 { "gen-a" } else { "gen-b" };
            let a = NodeAnnouncement {
                id: NodeId(id),
                addr: format!("n{id}"),
                zone: format!("z{id}"),
                capacity_bytes: 1,
                generation: generation.into(),
            };
            s.apply(&MetaCommand::RegisterNode(a));
        }
        let a = NodeSet { generation: GenerationId(1), nodes: vec![NodeId(1), NodeId(2), NodeId(3)] };
        s.map.partitions = vec![PartitionPlacement { current: a, target: None }; 4];
        s
    }

    fn b_set() -> NodeSet {
        NodeSet { generation: GenerationId(2), nodes: vec![NodeId(4), NodeId(5), NodeId(6)] }
    }

    fn step(s: &mut MetaState, name: &str, step: GenerationStep) -> MetaResponse {
        s.apply(&MetaCommand::GenerationStep { name: name.into(), step })
    }

    fn refused_with(r: MetaResponse, text: &str) {
        match r {
            MetaResponse::Rejected(e) => assert!(e.message.contains(text), "{:?} lacks {text:?}", e.message),
            other => panic!("expected a refusal containing {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn names_and_profiles_are_checked() {
        let mut s = two_generations();
        let p = EcProfile::DEFAULT;
        refused_with(s.apply(&MetaCommand::AddGeneration { name: "gen-b".into(), profile: p }), "already exists");
        refused_with(s.apply(&MetaCommand::AddGeneration { name: "bad name".into(), profile: p }), "invalid generation name");
        let zero = EcProfile { data_shards: 0, parity_shards: 1 };
        refused_with(s.apply(&MetaCommand::AddGeneration { name: "x".into(), profile: zero }), "erasure-code profile");
        refused_with(step(&mut s, "nope", GenerationStep::Drain), "does not exist");
    }

    #[test]
    fn drain_needs_somewhere_to_go() {
        let mut s = two_generations();
        for n in 4..=6 {
            s.map.nodes.get_mut(&NodeId(n)).unwrap().state = NodeState::Removed;
        }
        refused_with(step(&mut s, "gen-a", GenerationStep::Drain), "no Active generation with enough nodes");
        let mut s = two_generations();
        assert!(matches!(step(&mut s, "gen-a", GenerationStep::Drain), MetaResponse::Epoch(_)));
        refused_with(step(&mut s, "gen-a", GenerationStep::Drain), "only an Active one");
    }

    #[test]
    fn cancel_turns_moves_around_and_keeps_both_sets_readable() {
        let mut s = two_generations();
        step(&mut s, "gen-a", GenerationStep::Drain);
        let epoch = s.map.epoch;
        assert!(matches!(
            s.apply(&MetaCommand::StartMoves { expected_epoch: epoch, moves: vec![(PartitionId(0), b_set())] }),
            MetaResponse::Epoch(_)
        ));
        let a = s.map.partitions[0].current.clone();
        assert!(matches!(step(&mut s, "gen-a", GenerationStep::Cancel), MetaResponse::Epoch(_)));
        assert_eq!(s.map.generations[&GenerationId(1)].state, GenerationState::Active);
        // The partition now moves back: from gen-b (which has the blobs written meanwhile) to gen-a.
        assert_eq!(s.map.partitions[0].current, b_set());
        assert_eq!(s.map.partitions[0].target, Some(a.clone()));
        // Completing the old direction is refused; the new one is accepted.
        refused_with(s.apply(&MetaCommand::CompleteMove { partition: PartitionId(0), target: b_set() }), "no longer moving");
        assert!(matches!(s.apply(&MetaCommand::CompleteMove { partition: PartitionId(0), target: a.clone() }), MetaResponse::Epoch(_)));
        assert_eq!(s.map.partitions[0], PartitionPlacement { current: a, target: None });
    }

    #[test]
    fn moves_are_checked_against_the_epoch_and_the_map() {
        let mut s = two_generations();
        let epoch = s.map.epoch;
        refused_with(s.apply(&MetaCommand::StartMoves { expected_epoch: Epoch(0), moves: vec![(PartitionId(0), b_set())] }), "planned at");
        let same = s.map.partitions[0].current.clone();
        refused_with(s.apply(&MetaCommand::StartMoves { expected_epoch: epoch, moves: vec![(PartitionId(0), same)] }), "the set it is on");
        let foreign = NodeSet { generation: GenerationId(2), nodes: vec![NodeId(1), NodeId(5), NodeId(6)] };
        refused_with(s.apply(&MetaCommand::StartMoves { expected_epoch: epoch, moves: vec![(PartitionId(1), foreign)] }), "invalid moves");
        refused_with(s.apply(&MetaCommand::StartMoves { expected_epoch: epoch, moves: vec![(PartitionId(9), b_set())] }), "does not exist");
        assert!(s.map.partitions.iter().all(|p| p.target.is_none()), "a refused batch changes nothing");
    }

    #[test]
    fn drop_refuses_while_data_remains_and_removes_the_nodes_after() {
        let mut s = two_generations();
        refused_with(step(&mut s, "gen-a", GenerationStep::Drop { force: true }), "4 partitions are placed on it");
        step(&mut s, "gen-a", GenerationStep::Drain);
        refused_with(step(&mut s, "gen-a", GenerationStep::MarkDrained), "still holds partitions");
        for p in &mut s.map.partitions {
            p.current = b_set();
        }
        // Empty but not yet marked: a plain drop waits for the mark, --force does not need it.
        refused_with(step(&mut s, "gen-a", GenerationStep::Drop { force: false }), "not Drained");
        assert!(matches!(step(&mut s, "gen-a", GenerationStep::MarkDrained), MetaResponse::Epoch(_)));
        assert!(matches!(step(&mut s, "gen-a", GenerationStep::Drop { force: false }), MetaResponse::Epoch(_)));
        assert!((1..=3).all(|n| s.map.nodes[&NodeId(n)].state == NodeState::Removed));
        assert!((4..=6).all(|n| s.map.nodes[&NodeId(n)].state == NodeState::Active));
        refused_with(step(&mut s, "gen-a", GenerationStep::Resume), "was dropped");
        let epoch = s.map.epoch;
        assert_eq!(
            step(&mut s, "gen-a", GenerationStep::Drop { force: false }),
            MetaResponse::Epoch(epoch),
            "a retried drop changes nothing"
        );
        let late = NodeAnnouncement { id: NodeId(9), addr: "n9".into(), zone: "z".into(), capacity_bytes: 1, generation: "gen-a".into() };
        refused_with(s.apply(&MetaCommand::RegisterNode(late)), "was dropped");
    }

    #[test]
    fn nodes_are_declared_down_and_come_back_when_they_announce_themselves() {
        let mut s = two_generations();
        let e = s.map.epoch;
        assert!(matches!(s.apply(&MetaCommand::SetNodeState { node: NodeId(2), state: NodeState::Down }), MetaResponse::Epoch(x) if x > e));
        assert_eq!(s.map.nodes[&NodeId(2)].state, NodeState::Down);
        refused_with(s.apply(&MetaCommand::SetNodeState { node: NodeId(2), state: NodeState::Removed }), "only be declared Down or Active");
        refused_with(s.apply(&MetaCommand::SetNodeState { node: NodeId(99), state: NodeState::Down }), "not a node");
        let back = NodeAnnouncement { id: NodeId(2), addr: "n2".into(), zone: "z2".into(), capacity_bytes: 1, generation: "gen-a".into() };
        s.apply(&MetaCommand::RegisterNode(back));
        assert_eq!(s.map.nodes[&NodeId(2)].state, NodeState::Active);
    }

    #[test]
    fn pause_and_rate_are_replicated_settings() {
        let mut s = two_generations();
        assert_eq!(step(&mut s, "gen-b", GenerationStep::Pause), MetaResponse::Ok);
        assert!(s.migration.paused.contains(&GenerationId(2)));
        assert_eq!(step(&mut s, "gen-b", GenerationStep::Resume), MetaResponse::Ok);
        assert!(s.migration.paused.is_empty());
        s.apply(&MetaCommand::SetMigrationRate { bytes_per_sec: Some(5) });
        assert_eq!(MetaState::decode(&s.encode()).unwrap().migration.rate_bytes_per_sec, Some(5));
    }
}
