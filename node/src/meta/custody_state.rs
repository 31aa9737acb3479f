//! Applying node-trust commands: who holds the cluster CA's key, and revoking a node.
//!
//! The CA key must never be held only by nodes that are leaving: dropping a generation is refused while it
//! holds every recorded holder (`generations.rs` asks [`MetaState::ca_held_outside`]), and a revoked node
//! stops counting as a holder at once.

use strata_proto::cluster_map::{GenerationState, NodeState};
use strata_proto::{ErrorCode, GenerationId, NodeId};

use super::authority::Actor;
use super::command::MetaResponse;
use super::state::MetaState;

/// Most CA certificates a cluster trusts at once (two during a rotation).
pub const MAX_TRUSTED_CAS: usize = 4;

impl MetaState {
    pub(super) fn record_ca_holder(&mut self, node: NodeId, now_ms: u64) -> MetaResponse {
        match self.map.nodes.get(&node).map(|n| n.state) {
            None => return MetaResponse::reject(ErrorCode::NotFound, format!("{node} is not a member")),
            Some(NodeState::Removed) => return MetaResponse::reject(ErrorCode::Conflict, format!("{node} was removed")),
            Some(_) => {}
        }
        if self.ca_holders.insert(node) {
            self.audit(now_ms, Actor::Node(node), "holds the cluster CA key".into());
        }
        MetaResponse::Ok
    }

    pub(super) fn begin_ca_rotation(&mut self, trusted: &[String], cross_pem: &str, now_ms: u64) -> MetaResponse {
        if self.ca_cross.is_some() {
            return MetaResponse::reject(ErrorCode::Conflict, "a CA rotation is in progress; finish it first (`strata admin ca finish`)");
        }
        if trusted.is_empty() || trusted.len() > MAX_TRUSTED_CAS {
            return MetaResponse::reject(ErrorCode::BadRequest, format!("a cluster trusts 1 to {MAX_TRUSTED_CAS} CAs"));
        }
        self.cas = trusted.to_vec();
        self.ca_cross = Some(cross_pem.to_owned());
        self.ca_renewed.clear();
        // They hold the old key: the new one is recorded as it reaches the voters.
        self.ca_holders.clear();
        self.audit(now_ms, Actor::Operator, "began replacing the cluster CA".into());
        MetaResponse::Ok
    }

    pub(super) fn record_ca_renewal(&mut self, node: NodeId, now_ms: u64) -> MetaResponse {
        if self.ca_cross.is_none() {
            return MetaResponse::Ok;
        }
        if self.map.nodes.get(&node).is_none_or(|n| n.state == NodeState::Removed) {
            return MetaResponse::reject(ErrorCode::NotFound, format!("{node} is not a member"));
        }
        if self.ca_renewed.insert(node) {
            self.audit(now_ms, Actor::Node(node), "renewed its certificate onto the new cluster CA".into());
        }
        MetaResponse::Ok
    }

    /// While a rotation is in progress, the nodes (not Removed) that have not renewed onto the new CA yet.
    pub fn ca_rotation_pending(&self) -> Option<Vec<NodeId>> {
        self.ca_cross.as_ref()?;
        Some(self.map.nodes.values().filter(|n| n.state != NodeState::Removed && !self.ca_renewed.contains(&n.id)).map(|n| n.id).collect())
    }

    pub(super) fn finish_ca_rotation(&mut self, force: bool, now_ms: u64) -> MetaResponse {
        let Some(pending) = self.ca_rotation_pending() else {
            return MetaResponse::reject(ErrorCode::Conflict, "no CA rotation is in progress");
        };
        // Nobody could sign a certificate or admit a node any more.
        if !self.ca_holders.iter().any(|n| self.map.nodes.get(n).is_some_and(|d| d.state == NodeState::Active)) {
            return MetaResponse::reject(ErrorCode::Conflict, "no Active node holds the new CA key yet; wait for the voters to receive it");
        }
        if !pending.is_empty() && !force {
            let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
            return MetaResponse::reject(
                ErrorCode::Conflict,
                format!(
                    "{} still have certificates from the old CA and would be cut off: {}; wait for them to renew, or pass \
                     --force for nodes that will not come back (they must be admitted again)",
                    pending.len(),
                    names.join(", ")
                ),
            );
        }
        let issuing = self.cas.pop();
        self.cas = issuing.into_iter().collect();
        self.ca_cross = None;
        self.ca_renewed.clear();
        let how = if pending.is_empty() { String::new() } else { format!(" (forced; {} nodes had not renewed)", pending.len()) };
        self.audit(now_ms, Actor::Operator, format!("finished replacing the cluster CA: only the new one is trusted{how}"));
        MetaResponse::Ok
    }

    pub(super) fn drop_ca_holder(&mut self, node: NodeId, now_ms: u64) -> MetaResponse {
        // Decided here, on the replicated state, not only on the proposer's view: the last copies of the key
        // must never go.
        let others =
            self.ca_holders.iter().filter(|n| **n != node && self.map.nodes.get(n).is_some_and(|d| d.state == NodeState::Active)).count();
        if self.ca_holders.contains(&node) && others < 2 {
            return MetaResponse::reject(ErrorCode::Conflict, format!("{node} is one of the last holders of the CA key; it keeps it"));
        }
        if self.ca_holders.remove(&node) {
            self.audit(now_ms, Actor::Node(node), "deleted its copy of the cluster CA key (no longer a voter)".into());
        }
        MetaResponse::Ok
    }

    /// Whether enough recorded CA key holders remain outside generation `g`: two Active ones, or every Active
    /// node outside `g` if there are fewer (true when none is recorded: there is nothing a drop could make
    /// worse).
    pub fn ca_held_outside(&self, g: GenerationId) -> bool {
        let active_outside = |n: &NodeId| self.map.nodes.get(n).is_some_and(|d| d.generation != g && d.state == NodeState::Active);
        let holders = self.ca_holders.iter().filter(|n| active_outside(n)).count();
        let candidates = self.map.nodes.keys().filter(|n| active_outside(n)).count();
        self.ca_holders.is_empty() || holders >= candidates.clamp(1, 2)
    }

    pub(super) fn revoke_node(&mut self, node: NodeId, now_ms: u64) -> MetaResponse {
        match self.map.nodes.get(&node).map(|n| n.state) {
            None => return MetaResponse::reject(ErrorCode::NotFound, format!("{node} is not a member")),
            // A retry whose first reply was lost (the revoked node's connections close as this applies).
            Some(NodeState::Removed) => return MetaResponse::Epoch(self.map.epoch),
            Some(_) => {}
        }
        // Every partition on the node must keep at least k available shards without it.
        for (i, p) in self.map.partitions.iter().enumerate() {
            for set in std::iter::once(&p.current).chain(p.target.as_ref()) {
                if !set.nodes.contains(&node) {
                    continue;
                }
                let parity = self.map.generations.get(&set.generation).map_or(0, |g| usize::from(g.profile.parity_shards));
                let unavailable =
                    set.nodes.iter().filter(|n| **n == node || self.map.nodes.get(n).is_none_or(|d| d.state != NodeState::Active)).count();
                if unavailable > parity {
                    return MetaResponse::reject(
                        ErrorCode::Conflict,
                        format!(
                            "revoking {node} now would leave partition {i} with {unavailable} of its shards unavailable, more than its \\
                             {parity} parity shards; wait until the repair of the other unavailable nodes has finished"
                        ),
                    );
                }
            }
        }
        if let Some(d) = self.map.nodes.get_mut(&node) {
            d.state = NodeState::Removed;
        }
        self.map.epoch.0 += 1;
        self.ca_holders.remove(&node);
        self.audit(now_ms, Actor::Operator, format!("revoked {node}: its certificate is refused and its shards are rebuilt elsewhere"));
        MetaResponse::Epoch(self.map.epoch)
    }

    /// Nodes of generations that were dropped (or revoked) no longer hold the CA key.
    pub(super) fn forget_removed_holders(&mut self) {
        let map = &self.map;
        self.ca_holders.retain(|n| {
            map.nodes.get(n).is_some_and(|d| {
                d.state != NodeState::Removed && map.generations.get(&d.generation).is_some_and(|g| g.state != GenerationState::Dropped)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::command::{InitCluster, MetaCommand};
    use strata_proto::{EcProfile, NodeAnnouncement, NodeSet, PartitionPlacement};

    fn cluster() -> MetaState {
        let mut s = MetaState::default();
        let init = InitCluster {
            cluster_name: "c".into(),
            partition_bits: 0,
            generation_name: "g1".into(),
            profile: EcProfile { data_shards: 2, parity_shards: 1 },
            operator_token: [1; 32],
            now_ms: 0,
        };
        s.apply(&MetaCommand::Init(init));
        for i in 1..=3 {
            let a =
                NodeAnnouncement { id: NodeId(i), addr: format!("a:{i}"), zone: "z".into(), capacity_bytes: 1, generation: "g1".into() };
            s.apply(&MetaCommand::RegisterNode(a));
        }
        let set = NodeSet { generation: GenerationId(1), nodes: vec![NodeId(1), NodeId(2), NodeId(3)] };
        let epoch = s.map.epoch;
        s.apply(&MetaCommand::SetPlacement { expected_epoch: epoch, partitions: vec![PartitionPlacement { current: set, target: None }] });
        s
    }

    fn refused(r: MetaResponse, code: ErrorCode) -> bool {
        matches!(r, MetaResponse::Rejected(e) if e.code == code)
    }

    #[test]
    fn revoking_keeps_every_partition_readable() {
        let mut s = cluster();
        assert!(matches!(s.apply(&MetaCommand::RevokeNode { node: NodeId(3), now_ms: 1 }), MetaResponse::Epoch(_)));
        assert_eq!(s.map.nodes[&NodeId(3)].state, NodeState::Removed);
        // With node 3 gone, the 2+1 partition has no parity left to lose.
        assert!(refused(s.apply(&MetaCommand::RevokeNode { node: NodeId(2), now_ms: 2 }), ErrorCode::Conflict));
        let epoch = s.map.epoch;
        assert_eq!(s.apply(&MetaCommand::RevokeNode { node: NodeId(3), now_ms: 2 }), MetaResponse::Epoch(epoch), "a retry changes nothing");
        assert!(s.audit.iter().any(|r| r.what.starts_with("revoked node-3")));
    }

    #[test]
    fn a_rotation_finishes_only_when_every_node_renewed_and_the_new_key_is_held() {
        let mut s = cluster();
        s.apply(&MetaCommand::RecordCaHolder { node: NodeId(1), now_ms: 1, proof: vec![] });
        assert!(refused(s.apply(&MetaCommand::FinishCaRotation { force: true, now_ms: 1 }), ErrorCode::Conflict), "nothing to finish");
        let begin = |trusted: Vec<String>| MetaCommand::BeginCaRotation { trusted, cross_pem: "cross".into(), now_ms: 2 };
        assert!(refused(s.apply(&begin(vec![])), ErrorCode::BadRequest));
        assert_eq!(s.apply(&begin(vec!["old".into(), "new".into()])), MetaResponse::Ok);
        assert!(s.ca_holders.is_empty(), "the holders held the old key");
        assert!(refused(s.apply(&begin(vec!["old".into(), "newer".into()])), ErrorCode::Conflict), "one rotation at a time");
        assert_eq!(s.ca_rotation_pending(), Some(vec![NodeId(1), NodeId(2), NodeId(3)]));
        // Nobody holds the new key yet: finishing would leave nobody able to sign, even forced.
        assert!(refused(s.apply(&MetaCommand::FinishCaRotation { force: true, now_ms: 3 }), ErrorCode::Conflict));
        s.apply(&MetaCommand::RecordCaHolder { node: NodeId(2), now_ms: 3, proof: vec![] });
        for n in [1, 2] {
            assert_eq!(s.apply(&MetaCommand::RecordCaRenewal { node: NodeId(n), now_ms: 4 }), MetaResponse::Ok);
        }
        let pending = s.apply(&MetaCommand::FinishCaRotation { force: false, now_ms: 5 });
        assert!(
            matches!(&pending, MetaResponse::Rejected(e) if e.code == ErrorCode::Conflict && e.message.contains("node-3")),
            "{pending:?}"
        );
        s.apply(&MetaCommand::RecordCaRenewal { node: NodeId(3), now_ms: 6 });
        assert_eq!(s.ca_rotation_pending(), Some(vec![]));
        assert_eq!(s.apply(&MetaCommand::FinishCaRotation { force: false, now_ms: 7 }), MetaResponse::Ok);
        assert_eq!((s.cas.clone(), s.ca_cross.clone(), s.ca_rotation_pending()), (vec!["new".to_string()], None, None));
        assert_eq!(s.apply(&MetaCommand::RecordCaRenewal { node: NodeId(3), now_ms: 8 }), MetaResponse::Ok, "late, harmless");
        assert!(s.audit.iter().any(|r| r.what.starts_with("finished replacing the cluster CA")));
    }

    #[test]
    fn ca_holders_are_recorded_and_forgotten_with_their_nodes() {
        let mut s = cluster();
        assert!(s.ca_held_outside(GenerationId(1)), "nothing recorded: nothing to protect");
        assert_eq!(s.apply(&MetaCommand::RecordCaHolder { node: NodeId(1), now_ms: 1, proof: vec![] }), MetaResponse::Ok);
        assert!(!s.ca_held_outside(GenerationId(1)), "every holder is in g1");
        assert!(refused(s.apply(&MetaCommand::RecordCaHolder { node: NodeId(9), now_ms: 1, proof: vec![] }), ErrorCode::NotFound));
        assert!(refused(s.apply(&MetaCommand::DropCaHolder { node: NodeId(1), now_ms: 1 }), ErrorCode::Conflict), "the last holder");
        for n in [2, 3] {
            s.apply(&MetaCommand::RecordCaHolder { node: NodeId(n), now_ms: 1, proof: vec![] });
        }
        assert_eq!(s.apply(&MetaCommand::DropCaHolder { node: NodeId(1), now_ms: 1 }), MetaResponse::Ok, "two others hold it");
        s.ca_holders.clear();
        s.apply(&MetaCommand::RecordCaHolder { node: NodeId(1), now_ms: 1, proof: vec![] });
        s.apply(&MetaCommand::RevokeNode { node: NodeId(1), now_ms: 2 });
        assert!(s.ca_holders.is_empty(), "a revoked node holds nothing the cluster relies on");
    }
}
