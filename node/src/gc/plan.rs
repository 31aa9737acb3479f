//! The pure decisions of garbage collection: what is a candidate at the mark, and what the sweep may delete.

use std::collections::{BTreeMap, BTreeSet};

use strata_proto::{ChunkId, PartitionId, SessionId, TenantId};

use crate::meta::state::SessionRecord;

/// A chunk with its partition.
pub type Located = (PartitionId, ChunkId);

/// Stored chunks that no snapshot referenced at the mark.
pub fn candidates(stored: &BTreeSet<(PartitionId, ChunkId)>, referenced: &BTreeSet<ChunkId>) -> Vec<(PartitionId, ChunkId)> {
    stored.iter().filter(|(_, c)| !referenced.contains(c)).copied().collect()
}

/// Splits candidates into those a snapshot committed since the mark references (to keep) and the rest
/// (to sweep).
pub fn split_for_sweep(candidates: &[Located], referenced_now: &BTreeSet<ChunkId>) -> (Vec<Located>, Vec<Located>) {
    candidates.iter().partition(|(_, c)| referenced_now.contains(c))
}

/// The sessions the fence waits for: every session of `tenant` in the replicated state, whatever a clock says
/// about its lease. A node whose clock runs ahead would otherwise skip a backup that is still uploading, and
/// sweep chunks it deduplicated against; expired sessions leave the state when the leader expires them.
pub fn fence(sessions: &BTreeMap<SessionId, SessionRecord>, tenant: TenantId) -> Vec<SessionId> {
    sessions.iter().filter(|(_, r)| r.tenant == tenant).map(|(id, _)| *id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    #[test]
    fn referenced_chunks_are_never_candidates_and_late_references_are_kept() {
        let stored: BTreeSet<_> = [1, 2, 3, 4].into_iter().map(|n| (PartitionId(0), c(n))).collect();
        let referenced: BTreeSet<_> = [c(1), c(3), c(9)].into();
        let cand = candidates(&stored, &referenced);
        assert_eq!(cand, vec![(PartitionId(0), c(2)), (PartitionId(0), c(4))]);
        let late: BTreeSet<_> = [c(4)].into();
        let (keep, sweep) = split_for_sweep(&cand, &late);
        assert_eq!(keep, vec![(PartitionId(0), c(4))]);
        assert_eq!(sweep, vec![(PartitionId(0), c(2))]);
    }

    #[test]
    fn the_fence_waits_for_every_session_whatever_the_clock() {
        let record = |tenant, renewed_ms| SessionRecord { tenant: TenantId(tenant), opened_ms: 0, renewed_ms, lease_ms: 60_000 };
        // Session 1 looks long expired to a clock an hour ahead; it is in the state, so it is waited for.
        let sessions = BTreeMap::from([(SessionId(1), record(7, 0)), (SessionId(2), record(7, 3_600_000)), (SessionId(3), record(8, 0))]);
        assert_eq!(fence(&sessions, TenantId(7)), vec![SessionId(1), SessionId(2)]);
        assert!(fence(&sessions, TenantId(9)).is_empty());
    }
}
