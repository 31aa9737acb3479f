//! The pure decisions of garbage collection: what is a candidate at the mark, and what the sweep may delete.

use std::collections::BTreeSet;

use strata_proto::{ChunkId, PartitionId};

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
}
