//! Reed-Solomon erasure coding of blobs into stripes, free of I/O.
//!
//! A blob of `n` bytes becomes `k` data shards of `ceil(n / k)` bytes (the last one zero-padded; at least one
//! byte each) plus `m` parity shards of the same size. The code is systematic: the data shards are the blob
//! itself, so a read that finds all data shards needs no decoding. The parity bytes are those of
//! `reed-solomon-erasure`'s GF(2^8) code and are part of the on-disk format: never swap the library.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reed_solomon_erasure::galois_8::ReedSolomon;
use strata_proto::EcProfile;

/// Why a stripe could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    /// The profile is not one the library accepts.
    #[error("erasure-code profile {0} is not supported: {1}")]
    BadProfile(EcProfile, String),
    /// Fewer than k shards are available.
    #[error("only {available} of the {needed} shards needed to rebuild the blob are available")]
    TooFewShards {
        /// Shards present.
        available: usize,
        /// k.
        needed: usize,
    },
    /// Shards have inconsistent sizes (a bug or corrupted headers).
    #[error("shard sizes disagree: expected {expected} bytes, found {found}")]
    ShardSize {
        /// Size implied by the blob length.
        expected: usize,
        /// Size found.
        found: usize,
    },
}

/// Size of each shard for a blob of `blob_len` bytes under `profile`.
pub fn shard_len(profile: EcProfile, blob_len: u64) -> usize {
    (blob_len.div_ceil(u64::from(profile.data_shards)) as usize).max(1)
}

/// Encoders are costly to build (matrix inversion) and cheap to share, so they are cached per profile.
#[derive(Default, Clone)]
pub struct Codecs {
    cache: Arc<Mutex<HashMap<EcProfile, Arc<ReedSolomon>>>>,
}

impl Codecs {
    fn get(&self, profile: EcProfile) -> Result<Arc<ReedSolomon>, ErasureError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rs) = cache.get(&profile) {
            return Ok(rs.clone());
        }
        let rs = ReedSolomon::new(usize::from(profile.data_shards), usize::from(profile.parity_shards))
            .map_err(|e| ErasureError::BadProfile(profile, format!("{e:?}")))?;
        let rs = Arc::new(rs);
        cache.insert(profile, rs.clone());
        Ok(rs)
    }

    /// Splits `blob` into k data shards and computes m parity shards.
    pub fn encode(&self, profile: EcProfile, blob: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
        let rs = self.get(profile)?;
        let len = shard_len(profile, blob.len() as u64);
        let mut shards: Vec<Vec<u8>> = (0..profile.total_shards())
            .map(|i| {
                let mut s = vec![0u8; len];
                let start = (i * len).min(blob.len());
                let end = ((i + 1) * len).min(blob.len());
                if i < usize::from(profile.data_shards) {
                    s[..end - start].copy_from_slice(&blob[start..end]);
                }
                s
            })
            .collect();
        rs.encode(&mut shards).map_err(|e| ErasureError::BadProfile(profile, format!("{e:?}")))?;
        Ok(shards)
    }

    /// Rebuilds the blob from any k shards (`None` marks a missing or corrupt shard).
    pub fn decode(&self, profile: EcProfile, blob_len: u64, mut shards: Vec<Option<Vec<u8>>>) -> Result<Vec<u8>, ErasureError> {
        let k = usize::from(profile.data_shards);
        let expected = shard_len(profile, blob_len);
        shards.resize(profile.total_shards(), None);
        let available = shards.iter().filter(|s| s.is_some()).count();
        if available < k {
            return Err(ErasureError::TooFewShards { available, needed: k });
        }
        if let Some(bad) = shards.iter().flatten().find(|s| s.len() != expected) {
            return Err(ErasureError::ShardSize { expected, found: bad.len() });
        }
        if shards[..k].iter().any(Option::is_none) {
            let rs = self.get(profile)?;
            rs.reconstruct_data(&mut shards).map_err(|e| ErasureError::BadProfile(profile, format!("{e:?}")))?;
        }
        let mut blob = Vec::with_capacity(expected * k);
        for s in shards.into_iter().take(k) {
            blob.extend_from_slice(&s.expect("data shards present or reconstructed"));
        }
        blob.truncate(blob_len as usize);
        Ok(blob)
    }

    /// Rebuilds every missing shard of a stripe (data and parity), for repair.
    pub fn rebuild_all(&self, profile: EcProfile, blob_len: u64, mut shards: Vec<Option<Vec<u8>>>) -> Result<Vec<Vec<u8>>, ErasureError> {
        let expected = shard_len(profile, blob_len);
        shards.resize(profile.total_shards(), None);
        let available = shards.iter().filter(|s| s.is_some()).count();
        let k = usize::from(profile.data_shards);
        if available < k {
            return Err(ErasureError::TooFewShards { available, needed: k });
        }
        if let Some(bad) = shards.iter().flatten().find(|s| s.len() != expected) {
            return Err(ErasureError::ShardSize { expected, found: bad.len() });
        }
        self.get(profile)?.reconstruct(&mut shards).map_err(|e| ErasureError::BadProfile(profile, format!("{e:?}")))?;
        Ok(shards.into_iter().map(|s| s.expect("reconstructed")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn profile(k: u8, m: u8) -> EcProfile {
        EcProfile { data_shards: k, parity_shards: m }
    }

    #[test]
    fn empty_and_tiny_blobs_round_trip() {
        let c = Codecs::default();
        for len in [0usize, 1, 3, 4, 5] {
            let blob: Vec<u8> = (0..len as u8).collect();
            let shards = c.encode(EcProfile::DEFAULT, &blob).unwrap();
            assert_eq!(shards.len(), 6);
            let back = c.decode(EcProfile::DEFAULT, len as u64, shards.into_iter().map(Some).collect()).unwrap();
            assert_eq!(back, blob);
        }
    }

    #[test]
    fn data_shards_are_the_blob() {
        let c = Codecs::default();
        let blob: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let shards = c.encode(profile(4, 2), &blob).unwrap();
        assert_eq!(&shards[0][..], &blob[..250]);
        assert_eq!(&shards[3][..], &blob[750..]);
    }

    #[test]
    fn too_few_shards_is_an_error() {
        let c = Codecs::default();
        let shards = c.encode(profile(4, 2), b"hello world").unwrap();
        let mut partial: Vec<_> = shards.into_iter().map(Some).collect();
        partial[0] = None;
        partial[2] = None;
        partial[5] = None;
        assert_eq!(c.decode(profile(4, 2), 11, partial), Err(ErasureError::TooFewShards { available: 3, needed: 4 }));
    }

    #[test]
    fn wrong_shard_size_is_an_error() {
        let c = Codecs::default();
        let mut shards: Vec<_> = c.encode(profile(2, 1), b"abcdef").unwrap().into_iter().map(Some).collect();
        shards[1].as_mut().unwrap().push(0);
        assert!(matches!(c.decode(profile(2, 1), 6, shards), Err(ErasureError::ShardSize { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_k_shards_rebuild_the_blob(
            blob in proptest::collection::vec(any::<u8>(), 0..5000),
            (k, m) in (1u8..9, 1u8..4),
            drop_seed in any::<u64>(),
        ) {
            let c = Codecs::default();
            let p = profile(k, m);
            let shards = c.encode(p, &blob).unwrap();
            let mut present: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            // Drop m shards chosen by the seed.
            let mut s = drop_seed;
            for _ in 0..m {
                let live: Vec<usize> = (0..present.len()).filter(|i| present[*i].is_some()).collect();
                let pick = live[(s % live.len() as u64) as usize];
                present[pick] = None;
                s = s.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
            }
            prop_assert_eq!(c.decode(p, blob.len() as u64, present.clone()).unwrap(), blob.clone());
            let all = c.rebuild_all(p, blob.len() as u64, present).unwrap();
            prop_assert_eq!(all, shards);
        }
    }
}
