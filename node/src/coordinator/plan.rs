//! Pure decisions of the blob coordinator: when a put is acknowledged, which shards to read first, when a
//! blob is certainly absent, and which shard headers to trust.
//!
//! Durability rule (also in ARCHITECTURE.md): a put is acknowledged once `min(k + extra, k + m)` shards are
//! durable on distinct nodes of the partition (`extra` = `durability.extra_shards_for_ack`, default 1). With
//! every node up, the coordinator waits for all k + m writes, so the blob survives any m node losses. With d
//! holders down (d <= m - extra), the blob is stored on k + m - d nodes and survives m - d further losses, which
//! is exactly what every older blob of that partition can survive at that moment too.

use std::collections::BTreeMap;

use strata_proto::{EcProfile, ShardHeader, ShardIndex};

/// Shards that must be durable before a put is acknowledged.
pub fn ack_threshold(profile: EcProfile, extra: u8) -> usize {
    (usize::from(profile.data_shards) + usize::from(extra)).min(profile.total_shards())
}

/// Why one shard write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFailure {
    /// The holder has no room.
    NoSpace(String),
    /// Anything else (unreachable, timeout, I/O error).
    Other(String),
}

/// The outcome of a put's shard writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutVerdict {
    /// Enough shards are durable.
    Acknowledged {
        /// Shards stored.
        stored: usize,
        /// Whether some shard is missing (the blob needs repair to regain full redundancy).
        degraded: bool,
    },
    /// Too few shards are durable: the put fails and the client must retry.
    Refused {
        /// Shards stored.
        stored: usize,
        /// Shards required.
        need: usize,
        /// Whether a holder ran out of space (as opposed to being unreachable).
        no_space: bool,
    },
}

/// Decides a put from the per-shard results (index order).
pub fn put_verdict(profile: EcProfile, extra: u8, results: &[Result<(), ShardFailure>]) -> PutVerdict {
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let need = ack_threshold(profile, extra);
    if stored >= need {
        PutVerdict::Acknowledged { stored, degraded: stored < profile.total_shards() }
    } else {
        let no_space = results.iter().any(|r| matches!(r, Err(ShardFailure::NoSpace(_))));
        PutVerdict::Refused { stored, need, no_space }
    }
}

/// Shards to fetch first: the data shards, which need no decoding when all arrive.
pub fn first_read(profile: EcProfile) -> Vec<ShardIndex> {
    (0..profile.data_shards).collect()
}

/// Shards to fetch when the first read fell short.
pub fn second_read(profile: EcProfile) -> Vec<ShardIndex> {
    (profile.data_shards..profile.total_shards() as u8).collect()
}

/// Whether a blob certainly does not exist (readably) given how many holders said "absent": if more than m
/// holders lack it, at most k - 1 shards can exist anywhere.
pub fn certainly_absent(profile: EcProfile, absent: usize) -> bool {
    absent > usize::from(profile.parity_shards)
}

/// The header most shards agree on (profile and blob length); shards with another header are not trusted.
pub fn agreed_header(headers: &[(ShardIndex, ShardHeader)]) -> Option<(EcProfile, u64)> {
    let mut votes: BTreeMap<(u8, u8, u64), usize> = BTreeMap::new();
    for (_, h) in headers {
        *votes.entry((h.profile.data_shards, h.profile.parity_shards, h.blob_len)).or_default() += 1;
    }
    votes
        .into_iter()
        .max_by_key(|(key, n)| (*n, std::cmp::Reverse(*key)))
        .map(|((k, m, len), _)| (EcProfile { data_shards: k, parity_shards: m }, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: EcProfile = EcProfile::DEFAULT;

    fn results(ok: usize, fail: usize, no_space: bool) -> Vec<Result<(), ShardFailure>> {
        let f = if no_space { ShardFailure::NoSpace("full".into()) } else { ShardFailure::Other("down".into()) };
        (0..ok).map(|_| Ok(())).chain((0..fail).map(|_| Err(f.clone()))).collect()
    }

    #[test]
    fn all_shards_is_a_clean_ack() {
        assert_eq!(put_verdict(P, 1, &results(6, 0, false)), PutVerdict::Acknowledged { stored: 6, degraded: false });
    }

    #[test]
    fn one_holder_down_is_a_degraded_ack() {
        assert_eq!(put_verdict(P, 1, &results(5, 1, false)), PutVerdict::Acknowledged { stored: 5, degraded: true });
    }

    #[test]
    fn two_holders_down_refuses_with_default_margin() {
        assert_eq!(put_verdict(P, 1, &results(4, 2, false)), PutVerdict::Refused { stored: 4, need: 5, no_space: false });
        assert_eq!(put_verdict(P, 0, &results(4, 2, false)), PutVerdict::Acknowledged { stored: 4, degraded: true });
        assert!(matches!(put_verdict(P, 1, &results(3, 3, true)), PutVerdict::Refused { no_space: true, .. }));
    }

    #[test]
    fn margin_is_capped_at_the_stripe_width() {
        assert_eq!(ack_threshold(P, 9), 6);
    }

    #[test]
    fn absence_needs_more_than_m_holders() {
        assert!(!certainly_absent(P, 2));
        assert!(certainly_absent(P, 3));
    }

    #[test]
    fn majority_header_wins() {
        let h = |len| ShardHeader { profile: P, blob_len: len, checksum: [0; 32] };
        let votes = vec![(0, h(10)), (1, h(10)), (2, h(99)), (3, h(10))];
        assert_eq!(agreed_header(&votes), Some((P, 10)));
        assert_eq!(agreed_header(&[]), None);
    }
}
