//! On-disk encoding of shard keys and shard headers (header format versions 1 and 2).
//!
//! Keys are big-endian `partition (4) | tenant (8) | chunk (32) | index (1)` so that a partition, a tenant within
//! it and a chunk within that are each one contiguous key range. Header records carry a version byte first;
//! a record with an unknown version or the wrong length decodes to an error, never to a guess. Version 2 adds
//! the stripe identity (the blob digest); version 1 records, written before it existed, are still read and
//! decode to a header without one.

use strata_proto::{ChunkId, EcProfile, PartitionId, ShardHeader, ShardKey, TenantId};

/// Encoded key length.
pub const KEY_LEN: usize = 45;
/// Encoded length of a version 1 header (no stripe identity).
pub const HEADER_LEN_V1: usize = 48;
/// Encoded length of a version 2 header.
pub const HEADER_LEN: usize = 80;
const HEADER_VERSION_V1: u8 = 1;
const HEADER_VERSION: u8 = 2;

/// Encodes a shard key.
pub fn encode_key(key: &ShardKey) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out[..4].copy_from_slice(&key.partition.0.to_be_bytes());
    out[4..12].copy_from_slice(&key.tenant.0.to_be_bytes());
    out[12..44].copy_from_slice(&key.chunk.0);
    out[44] = key.index;
    out
}

/// The key prefix of one partition, or of one tenant's chunk within it.
pub fn key_prefix(partition: PartitionId, chunk: Option<(TenantId, &ChunkId)>) -> Vec<u8> {
    let mut out = partition.0.to_be_bytes().to_vec();
    if let Some((tenant, chunk)) = chunk {
        out.extend_from_slice(&tenant.0.to_be_bytes());
        out.extend_from_slice(&chunk.0);
    }
    out
}

/// Decodes a shard key; `None` if the bytes are not a key.
pub fn decode_key(bytes: &[u8]) -> Option<ShardKey> {
    if bytes.len() != KEY_LEN {
        return None;
    }
    Some(ShardKey {
        partition: PartitionId(u32::from_be_bytes(bytes[..4].try_into().ok()?)),
        tenant: TenantId(u64::from_be_bytes(bytes[4..12].try_into().ok()?)),
        chunk: ChunkId(bytes[12..44].try_into().ok()?),
        index: bytes[44],
    })
}

/// Encodes a header record: `version | k | m | flags | blob_len u64 LE | data_len u32 LE | checksum (32)`,
/// then in version 2 the blob digest (32). A header without a stripe identity (a shard rebuilt from a stripe
/// written before identities existed) keeps version 1, so the stripe stays one stripe.
pub fn encode_header(header: &ShardHeader, data_len: u32) -> Vec<u8> {
    let mut out = vec![0u8; if header.blob_digest.is_some() { HEADER_LEN } else { HEADER_LEN_V1 }];
    out[0] = if header.blob_digest.is_some() { HEADER_VERSION } else { HEADER_VERSION_V1 };
    out[1] = header.profile.data_shards;
    out[2] = header.profile.parity_shards;
    out[4..12].copy_from_slice(&header.blob_len.to_le_bytes());
    out[12..16].copy_from_slice(&data_len.to_le_bytes());
    out[16..48].copy_from_slice(&header.checksum);
    if let Some(d) = &header.blob_digest {
        out[48..80].copy_from_slice(d);
    }
    out
}

/// Flag bit in header byte 3: the shard is condemned by garbage collection.
const FLAG_CONDEMNED: u8 = 1;

/// Whether a header record carries the condemned mark.
pub fn is_condemned(record: &[u8]) -> bool {
    record.get(3).is_some_and(|f| f & FLAG_CONDEMNED != 0)
}

/// The header record with the condemned mark set or cleared.
pub fn with_condemned(record: &[u8], condemned: bool) -> Vec<u8> {
    let mut out = record.to_vec();
    if let Some(f) = out.get_mut(3) {
        *f = if condemned { *f | FLAG_CONDEMNED } else { *f & !FLAG_CONDEMNED };
    }
    out
}

/// Decodes a header record into the header and the stored data length.
pub fn decode_header(bytes: &[u8]) -> Result<(ShardHeader, u32), String> {
    let expected = match bytes.first() {
        Some(&HEADER_VERSION_V1) => HEADER_LEN_V1,
        Some(&HEADER_VERSION) => HEADER_LEN,
        Some(v) => return Err(format!("unknown header format version {v}")),
        None => return Err("empty header record".into()),
    };
    if bytes.len() != expected {
        return Err(format!("header record of version {} is {} bytes, expected {expected}", bytes[0], bytes.len()));
    }
    let profile = EcProfile { data_shards: bytes[1], parity_shards: bytes[2] };
    profile.validate().map_err(|e| e.to_string())?;
    let blob_len = u64::from_le_bytes(bytes[4..12].try_into().map_err(|_| "short blob length")?);
    let data_len = u32::from_le_bytes(bytes[12..16].try_into().map_err(|_| "short data length")?);
    let checksum: [u8; 32] = bytes[16..48].try_into().map_err(|_| "short checksum")?;
    let blob_digest = match bytes.get(48..80) {
        Some(d) => Some(d.try_into().map_err(|_| "short blob digest")?),
        None => None,
    };
    Ok((ShardHeader { profile, blob_len, blob_digest, checksum }, data_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_round_trip_and_sort_like_their_bytes(a in any::<(u32, u64, [u8; 32], u8)>(), b in any::<(u32, u64, [u8; 32], u8)>()) {
            let ka = ShardKey { partition: PartitionId(a.0), tenant: TenantId(a.1), chunk: ChunkId(a.2), index: a.3 };
            let kb = ShardKey { partition: PartitionId(b.0), tenant: TenantId(b.1), chunk: ChunkId(b.2), index: b.3 };
            prop_assert_eq!(decode_key(&encode_key(&ka)), Some(ka));
            prop_assert_eq!(ka.cmp(&kb), encode_key(&ka).cmp(&encode_key(&kb)));
        }

        #[test]
        fn header_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_header(&bytes);
        }
    }

    #[test]
    fn header_round_trips_and_rejects_other_versions() {
        let h = ShardHeader { profile: EcProfile::DEFAULT, blob_len: 12345, blob_digest: Some([4; 32]), checksum: [9; 32] };
        let enc = encode_header(&h, 77);
        assert_eq!(enc.len(), HEADER_LEN);
        assert_eq!(decode_header(&enc).unwrap(), (h, 77));
        let mut bad = enc.clone();
        bad[0] = 3;
        assert!(decode_header(&bad).unwrap_err().contains("version 3"));
        assert!(decode_header(&enc[..10]).is_err());
        assert!(decode_header(&enc[..HEADER_LEN_V1]).unwrap_err().contains("expected 80"), "a truncated version 2 record");
        assert!(decode_header(&[]).is_err());
    }

    #[test]
    fn version_one_records_still_decode_without_a_stripe_identity() {
        // A record exactly as the version 1 encoder wrote it.
        let mut v1 = vec![1u8, 4, 2, 0];
        v1.extend_from_slice(&12345u64.to_le_bytes());
        v1.extend_from_slice(&77u32.to_le_bytes());
        v1.extend_from_slice(&[9; 32]);
        let (h, len) = decode_header(&v1).unwrap();
        assert_eq!((h.blob_digest, h.blob_len, h.checksum, len), (None, 12345, [9; 32], 77));
        assert_eq!(encode_header(&h, len), v1, "a rebuilt legacy shard is written in the format it came in");
    }
}
