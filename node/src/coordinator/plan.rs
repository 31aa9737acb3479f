//! Pure decisions of the blob coordinator: when a put is acknowledged, which shards to read first, when a
//! blob is certainly absent, which stripe to read when a chunk id holds shards of several, and when a blob
//! counts as stored.
//!
//! Durability rule (also in ARCHITECTURE.md): a put is acknowledged once `min(k + extra, k + m)` shards are
//! durable on distinct nodes of the partition (`extra` = `durability.extra_shards_for_ack`, default 1). With
//! every node up, the coordinator waits for all k + m writes, so the blob survives any m node losses. With d
//! holders down (d <= m - extra), the blob is stored on k + m - d nodes and survives m - d further losses, which
//! is exactly what every older blob of that partition can survive at that moment too.

use std::collections::BTreeMap;

use strata_proto::{BlobDigest, EcProfile, Holding, ShardHeader, ShardIndex, StripeTag};

/// Shards that must be durable before a put is acknowledged.
pub fn ack_threshold(profile: EcProfile, extra: u8) -> usize {
    (usize::from(profile.data_shards) + usize::from(extra)).min(profile.total_shards())
}

/// Why one shard write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFailure {
    /// The holder has no room.
    NoSpace(String),
    /// The slot holds another stripe (or a damaged shard), which the holder kept.
    Conflict(String),
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
    /// Some slot holds another stripe under this chunk id: the blob is already stored with other bytes (or a
    /// damaged copy waits for repair). Nothing stored was replaced; the put is not acknowledged.
    Conflict {
        /// Slots that kept something else.
        conflicts: usize,
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

/// Decides a put from the per-shard results (index order). A put that met another stripe in any slot is never
/// acknowledged, even if enough of its own shards landed: the chunk id already names stored data, which a
/// tenant's put must not shadow.
pub fn put_verdict(profile: EcProfile, extra: u8, results: &[Result<(), ShardFailure>]) -> PutVerdict {
    let conflicts = results.iter().filter(|r| matches!(r, Err(ShardFailure::Conflict(_)))).count();
    if conflicts > 0 {
        return PutVerdict::Conflict { conflicts };
    }
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

/// What makes shards pieces of one stripe: the profile, the blob length and the stripe identity.
pub type StripeKey = (EcProfile, u64, Option<BlobDigest>);

/// Which stripes of a chunk a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeFilter<'a> {
    /// Any but these (a client that could not open one asks for another).
    Exclude(&'a [BlobDigest]),
    /// Only these (a mover copies the stripe its source holds, whatever else the target has).
    Only(&'a [Option<BlobDigest>]),
}

impl StripeFilter<'_> {
    /// Whether a shard of stripe `digest` may be read.
    pub fn admits(&self, digest: Option<BlobDigest>) -> bool {
        match self {
            StripeFilter::Exclude(ex) => digest.is_none_or(|d| !ex.contains(&d)),
            StripeFilter::Only(only) => only.contains(&digest),
        }
    }
}

/// The stripe to read among shards fetched from one node set: the one with the most shards among those
/// `filter` admits. Ties go to the smallest key, so every coordinator chooses alike. Returns the stripe and
/// how many shards it has.
pub fn choose_stripe(headers: &[(ShardIndex, ShardHeader)], filter: StripeFilter<'_>) -> Option<(StripeKey, usize)> {
    let mut votes: BTreeMap<(u8, u8, u64, Option<BlobDigest>), usize> = BTreeMap::new();
    for (_, h) in headers {
        if !filter.admits(h.blob_digest) {
            continue;
        }
        *votes.entry((h.profile.data_shards, h.profile.parity_shards, h.blob_len, h.blob_digest)).or_default() += 1;
    }
    votes
        .into_iter()
        .max_by_key(|(key, n)| (*n, std::cmp::Reverse(*key)))
        .map(|((k, m, len, digest), n)| ((EcProfile { data_shards: k, parity_shards: m }, len, digest), n))
}

/// Whether a blob is stored durably in one node set: `slots` holds, for each slot whose node answered, the slot
/// index and what that node holds of the chunk. Only shards in their own slot count, and only shards of one
/// stripe together: shards of two encodings under one chunk id cannot be decoded together.
pub fn durable_in_set(slots: &[(ShardIndex, Holding)], threshold: usize) -> bool {
    let mut per_stripe: BTreeMap<StripeTag, usize> = BTreeMap::new();
    for (index, holding) in slots {
        if *index < 64 && holding.mask & (1u64 << index) != 0 && holding.stripe != StripeTag::MIXED {
            *per_stripe.entry(holding.stripe).or_default() += 1;
        }
    }
    per_stripe.values().any(|n| *n >= threshold)
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
    fn the_stripe_with_most_shards_is_read_unless_excluded() {
        let h = |len, d: Option<u8>| ShardHeader { profile: P, blob_len: len, blob_digest: d.map(|b| [b; 32]), checksum: [0; 32] };
        let votes = vec![(0, h(10, Some(1))), (1, h(10, Some(1))), (2, h(99, Some(1))), (3, h(10, Some(1))), (4, h(10, Some(2)))];
        let any = StripeFilter::Exclude(&[]);
        assert_eq!(choose_stripe(&votes, any), Some(((P, 10, Some([1; 32])), 3)));
        let not_1 = StripeFilter::Exclude(&[[1; 32]]);
        assert_eq!(choose_stripe(&votes, not_1), Some(((P, 10, Some([2; 32])), 1)), "a client that could not open stripe 1");
        assert_eq!(choose_stripe(&votes, StripeFilter::Only(&[Some([2; 32])])), Some(((P, 10, Some([2; 32])), 1)), "a mover's source");
        assert_eq!(choose_stripe(&[], any), None);
        let legacy = vec![(0, h(10, None)), (1, h(10, None)), (2, h(10, Some(7)))];
        assert_eq!(choose_stripe(&legacy, any), Some(((P, 10, None), 2)));
        assert_eq!(choose_stripe(&legacy, StripeFilter::Only(&[Some([7; 32])])), Some(((P, 10, Some([7; 32])), 1)));
    }

    #[test]
    fn a_conflict_is_never_acknowledged() {
        let mut r = results(5, 0, false);
        r.push(Err(ShardFailure::Conflict("another stripe".into())));
        assert_eq!(put_verdict(P, 1, &r), PutVerdict::Conflict { conflicts: 1 });
    }

    #[test]
    fn durability_counts_one_stripe_in_its_own_slots() {
        let held = |mask, tag| Holding { mask, stripe: StripeTag(tag) };
        let a = 0xa1;
        let b = 0xb1;
        let five_of_a: Vec<(ShardIndex, Holding)> = (0..5).map(|i| (i, held(1 << i, a))).collect();
        assert!(durable_in_set(&five_of_a, 5));
        let mut mixed: Vec<(ShardIndex, Holding)> = (0..3).map(|i| (i, held(1 << i, a))).collect();
        mixed.extend((3..5).map(|i| (i, held(1 << i, b))));
        assert!(!durable_in_set(&mixed, 5), "three shards of one stripe and two of another are not five");
        let wrong_slot: Vec<(ShardIndex, Holding)> = (0..5).map(|i| (i, held(1 << ((i + 1) % 6), a))).collect();
        assert!(!durable_in_set(&wrong_slot, 5));
        let undecided: Vec<(ShardIndex, Holding)> = (0..5).map(|i| (i, held(1 << i, StripeTag::MIXED.0))).collect();
        assert!(!durable_in_set(&undecided, 1));
    }
}
