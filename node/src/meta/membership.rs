//! Which nodes vote in Raft: a pure planner, run by the leader one step at a time.
//!
//! Every node that has not been removed is a Raft member: three or five of them vote (spread over zones, and
//! only nodes of Active generations, so voters leave a draining generation before it is switched off), the
//! rest are learners that receive the log. A node becomes a voter only once it has caught up. Voter changes
//! keep an odd count, and a voter is replaced only when the cluster declares it Down or Removed or its
//! generation drains, never because of a blip. Removed nodes leave the membership altogether.

use std::collections::BTreeSet;

/// What the planner knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Address for Raft.
    pub addr: String,
    /// Failure domain.
    pub zone: String,
    /// Active in the cluster map (not Down or Removed).
    pub eligible: bool,
    /// Its log is close to the leader's.
    pub caught_up: bool,
    /// Removed from the cluster for good (its generation was dropped): it leaves Raft too.
    pub removed: bool,
}

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipStep {
    /// Add a non-voting member.
    AddLearner {
        /// Node id.
        id: u64,
        /// Its address.
        addr: String,
    },
    /// Replace the voter set.
    SetVoters(BTreeSet<u64>),
    /// Remove non-voting members that left the cluster.
    RemoveLearners(BTreeSet<u64>),
}

/// Voters wanted for `eligible` nodes: 1, 3 or 5.
pub fn target_voters(eligible: usize) -> usize {
    match eligible {
        0..=2 => 1,
        3..=4 => 3,
        _ => 5,
    }
}

/// The next membership change, if any.
pub fn plan(voters: &BTreeSet<u64>, learners: &BTreeSet<u64>, nodes: &[MemberView]) -> Option<MembershipStep> {
    let gone: BTreeSet<u64> =
        nodes.iter().filter(|n| n.removed && learners.contains(&n.id) && !voters.contains(&n.id)).map(|n| n.id).collect();
    if !gone.is_empty() {
        return Some(MembershipStep::RemoveLearners(gone));
    }
    // Every node that has not left receives the log: a node of a draining generation still needs the map.
    if let Some(n) = nodes.iter().find(|n| !n.removed && !voters.contains(&n.id) && !learners.contains(&n.id)) {
        return Some(MembershipStep::AddLearner { id: n.id, addr: n.addr.clone() });
    }
    let eligible: Vec<&MemberView> = nodes.iter().filter(|n| n.eligible).collect();
    let target = target_voters(eligible.len());
    let mut desired: BTreeSet<u64> = voters.iter().copied().filter(|v| eligible.iter().any(|n| n.id == *v)).collect();
    let mut zones: BTreeSet<&str> = eligible.iter().filter(|n| desired.contains(&n.id)).map(|n| n.zone.as_str()).collect();
    let mut candidates: Vec<&MemberView> = eligible.iter().copied().filter(|n| n.caught_up && !desired.contains(&n.id)).collect();
    while desired.len() < target && !candidates.is_empty() {
        // Prefer a zone with no voter yet, then the lowest id.
        let pick = candidates.iter().position(|n| !zones.contains(n.zone.as_str())).unwrap_or(0);
        let n = candidates.remove(pick);
        desired.insert(n.id);
        zones.insert(&n.zone);
    }
    if desired.len().is_multiple_of(2) && desired.len() > 1 {
        // Never run with an even number of voters: drop the last addition (or a surplus voter).
        let drop = desired.iter().copied().rev().find(|v| !voters.contains(v)).or_else(|| desired.iter().copied().next_back());
        if let Some(d) = drop {
            desired.remove(&d);
        }
    }
    (desired != *voters && !desired.is_empty()).then_some(MembershipStep::SetVoters(desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, zone: &str) -> MemberView {
        MemberView { id, addr: format!("a{id}"), zone: zone.into(), eligible: true, caught_up: true, removed: false }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn new_nodes_join_as_learners_first() {
        let nodes = vec![view(1, "a"), view(2, "b")];
        assert_eq!(plan(&set(&[1]), &set(&[]), &nodes), Some(MembershipStep::AddLearner { id: 2, addr: "a2".into() }));
    }

    #[test]
    fn grows_to_three_then_five_voters_across_zones() {
        let nodes: Vec<_> = (1..=6).map(|i| view(i, if i <= 3 { "a" } else { "b" })).collect();
        let all = set(&[1, 2, 3, 4, 5, 6]);
        let step = plan(&set(&[1]), &all, &nodes).unwrap();
        let MembershipStep::SetVoters(v) = step else { panic!("{step:?}") };
        assert_eq!(v.len(), 5);
        assert!(v.contains(&4), "a voter in zone b: {v:?}");
        assert_eq!(plan(&v, &all, &nodes), None);
    }

    #[test]
    fn lagging_nodes_do_not_vote_and_count_stays_odd() {
        let mut nodes: Vec<_> = (1..=5).map(|i| view(i, "z")).collect();
        nodes[3].caught_up = false;
        nodes[4].caught_up = false;
        let learners = set(&[1, 2, 3, 4, 5]);
        assert_eq!(plan(&set(&[1]), &learners, &nodes), Some(MembershipStep::SetVoters(set(&[1, 2, 3]))));
        nodes[3].caught_up = true;
        // Four voters would be even: wait for the fifth.
        assert_eq!(plan(&set(&[1, 2, 3]), &learners, &nodes), None);
    }

    #[test]
    fn removed_nodes_stop_voting_then_leave() {
        let mut nodes: Vec<_> = (1..=8).map(|i| view(i, &format!("z{i}"))).collect();
        for n in &mut nodes[..3] {
            n.eligible = false;
            n.removed = true;
        }
        let all = set(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let step = plan(&set(&[1, 2, 3, 4, 5]), &all, &nodes);
        assert_eq!(step, Some(MembershipStep::SetVoters(set(&[4, 5, 6, 7, 8]))));
        let step = plan(&set(&[4, 5, 6, 7, 8]), &all, &nodes);
        assert_eq!(step, Some(MembershipStep::RemoveLearners(set(&[1, 2, 3]))));
    }

    #[test]
    fn down_voter_is_replaced() {
        let mut nodes: Vec<_> = (1..=6).map(|i| view(i, &format!("z{i}"))).collect();
        nodes[1].eligible = false;
        let step = plan(&set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3, 4, 5, 6]), &nodes);
        assert_eq!(step, Some(MembershipStep::SetVoters(set(&[1, 3, 4, 5, 6]))));
    }
}
