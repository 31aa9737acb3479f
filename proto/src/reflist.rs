//! Reference lists: the chunk ids a snapshot uses, in plaintext blobs the cluster can read for GC.
//!
//! A snapshot's sorted, de-duplicated ids are split into groups at content-defined points (after an id whose
//! leading bits are zero), so consecutive snapshots of similar data produce mostly identical groups and those
//! blobs deduplicate. Each group is one blob: `magic "SRL1" | count u32 LE | ids (32 bytes each)`.

use crate::ids::ChunkId;

const MAGIC: &[u8; 4] = b"SRL1";
/// A group ends after an id whose first two bytes, masked with this, are zero (about 8192 ids per group).
const CUT_MASK: u16 = 0x1fff;
/// No group holds more ids than this (2 MiB blobs).
pub const MAX_GROUP_IDS: usize = 65_536;

/// Why bytes are not a reference list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefListError {
    /// Bad magic, length or order.
    #[error("not a reference list: {0}")]
    Invalid(String),
}

/// Splits sorted, distinct ids into groups at content-defined points.
pub fn groups(sorted_ids: &[ChunkId]) -> Vec<&[ChunkId]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, id) in sorted_ids.iter().enumerate() {
        let lead = u16::from_be_bytes([id.0[0], id.0[1]]);
        if lead & CUT_MASK == 0 || i + 1 - start == MAX_GROUP_IDS {
            out.push(&sorted_ids[start..=i]);
            start = i + 1;
        }
    }
    if start < sorted_ids.len() {
        out.push(&sorted_ids[start..]);
    }
    out
}

/// The digest of an encoded group, recorded with the snapshot so that nobody can swap a list the cluster
/// collects garbage by (its blob id is a keyed hash the cluster cannot check).
pub fn digest(encoded: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("strata 2026-12 reference list digest v1");
    h.update(encoded);
    *h.finalize().as_bytes()
}

/// Encodes one group.
pub fn encode(ids: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ids.len() * 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes one group, checking its framing and that ids are strictly increasing.
pub fn decode(bytes: &[u8]) -> Result<Vec<ChunkId>, RefListError> {
    let bad = |m: &str| RefListError::Invalid(m.to_owned());
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(bad("missing SRL1 header"));
    }
    let count = u32::from_le_bytes(bytes[4..8].try_into().map_err(|_| bad("short header"))?) as usize;
    let body = &bytes[8..];
    if count > MAX_GROUP_IDS || body.len() != count * 32 {
        return Err(bad("length does not match the count"));
    }
    let ids: Vec<ChunkId> = body.chunks_exact(32).map(|c| ChunkId(c.try_into().expect("32-byte chunks"))).collect();
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("ids are not strictly increasing"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize, salt: u8) -> Vec<ChunkId> {
        let mut v: Vec<ChunkId> =
            (0..n as u32).map(|i| ChunkId(*blake3::hash(&[&i.to_le_bytes()[..], &[salt]].concat()).as_bytes())).collect();
        v.sort();
        v
    }

    #[test]
    fn groups_cover_everything_and_round_trip() {
        let all = ids(50_000, 1);
        let gs = groups(&all);
        assert!(gs.len() > 2, "50k ids make several groups");
        let back: Vec<ChunkId> = gs.iter().flat_map(|g| decode(&encode(g)).unwrap()).collect();
        assert_eq!(back, all);
    }

    #[test]
    fn a_small_change_keeps_most_groups() {
        let a = ids(60_000, 2);
        let mut b = a.clone();
        b.remove(30_000);
        b.push(ChunkId([0xab; 32]));
        b.sort();
        let ga: std::collections::BTreeSet<Vec<u8>> = groups(&a).into_iter().map(encode).collect();
        let gb: Vec<Vec<u8>> = groups(&b).into_iter().map(encode).collect();
        let reused = gb.iter().filter(|g| ga.contains(*g)).count();
        assert!(reused + 2 >= gb.len(), "only the groups around the changes differ: {reused} of {}", gb.len());
    }

    #[test]
    fn bad_lists_are_rejected() {
        assert!(decode(b"SRL1").is_err());
        assert!(decode(b"XXXX\0\0\0\0").is_err());
        let mut unsorted = encode(&[ChunkId([2; 32]), ChunkId([1; 32])]);
        assert!(decode(&unsorted).is_err());
        unsorted.truncate(20);
        assert!(decode(&unsorted).is_err());
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
