//! Turning a chunk into the opaque blob the cluster stores, and back: compress, encrypt, authenticate.
//!
//! Sealing: zstd (kept only when it makes the chunk smaller), then AES-256-GCM. The nonce is a keyed hash of
//! exactly what is sealed (format version, flags, chunk id and the compressed body), a synthetic IV: sealing
//! is deterministic (the same bytes always give the same blob, which keeps retried uploads idempotent), and
//! a nonce repeats only for identical plaintexts, even when another build's zstd compresses a chunk to other
//! bytes. The chunk id, version and flags are the associated data, so a blob returned under the wrong id or
//! with an edited header fails to open. Opening checks, after decryption, that the keyed hash of the
//! plaintext is the chunk id.
//!
//! Format: `version (1) | flags (1, bit 0 = zstd) | nonce (12) | ciphertext | tag (16)`. Version 2 is written;
//! version 1 (nonce derived from the chunk id alone, the id as associated data) is still read.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use strata_proto::ChunkId;

use crate::keys::MasterKey;

const VERSION: u8 = 2;
const VERSION_1: u8 = 1;
const FLAG_ZSTD: u8 = 1;
const HEADER_LEN: usize = 2 + NONCE_LEN;
const TAG_LEN: usize = 16;

/// Why a blob could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Too short or an unknown format version.
    #[error("blob {id} is not a Strata blob: {reason}")]
    Malformed {
        /// The chunk id it was fetched under.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Authentication failed: wrong key, wrong id, or damaged bytes.
    #[error("blob {0} failed authentication (damaged, or encrypted with another key)")]
    Authentication(String),
    /// The plaintext does not hash to the chunk id.
    #[error("blob {0} decrypted to data that does not match its id")]
    WrongContent(String),
    /// Decompression failed.
    #[error("blob {id} could not be decompressed: {reason}")]
    Decompress {
        /// The chunk id.
        id: String,
        /// zstd's explanation.
        reason: String,
    },
}

/// Seals and opens blobs with one tenant's keys.
pub struct BlobCodec {
    ids: IdHasher,
    aead: LessSafeKey,
    nonce_key: [u8; 32],
    zstd_level: i32,
}

/// Computes chunk ids: BLAKE3 keyed with the tenant's dedup key.
#[derive(Clone)]
pub struct IdHasher {
    key: [u8; 32],
}

impl IdHasher {
    /// The id of `data`.
    pub fn id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.key, data).as_bytes())
    }
}

impl BlobCodec {
    /// A codec for the tenant whose master key is `master`; `zstd_level` 0 disables compression.
    pub fn new(master: &MasterKey, zstd_level: i32) -> Self {
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &master.derive("blob encryption")).expect("32-byte AES-256 key"));
        BlobCodec { ids: IdHasher { key: master.derive("chunk id") }, aead, nonce_key: master.derive("blob nonce"), zstd_level }
    }

    /// The id hasher of this tenant.
    pub fn ids(&self) -> &IdHasher {
        &self.ids
    }

    /// The nonce of a version 2 blob: a keyed hash of everything sealed.
    fn nonce(&self, id: &ChunkId, flags: u8, body: &[u8]) -> [u8; NONCE_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(&[VERSION, flags]);
        h.update(&id.0);
        h.update(body);
        h.finalize().as_bytes()[..NONCE_LEN].try_into().expect("12 of 32 bytes")
    }

    /// Associated data of a blob: the id, and from version 2 on the version and flags bytes.
    fn aad(id: &ChunkId, version: u8, flags: u8) -> Vec<u8> {
        let mut aad = id.0.to_vec();
        if version >= VERSION {
            aad.extend_from_slice(&[version, flags]);
        }
        aad
    }

    /// The chunk compressed, if compression is on and makes it smaller (the first step of [`Self::seal`]).
    pub fn compress(&self, chunk: &[u8]) -> Option<Vec<u8>> {
        (self.zstd_level > 0).then(|| zstd::bulk::compress(chunk, self.zstd_level).ok()).flatten().filter(|c| c.len() < chunk.len())
    }

    /// Seals a chunk whose id is `id` (computed by [`IdHasher::id`]).
    pub fn seal(&self, id: &ChunkId, chunk: &[u8]) -> Vec<u8> {
        let compressed = self.compress(chunk);
        let (flags, body): (u8, &[u8]) = match &compressed {
            Some(c) => (FLAG_ZSTD, c),
            None => (0, chunk),
        };
        let nonce = self.nonce(id, flags, body);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
        out.extend_from_slice(&[VERSION, flags]);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(body);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(id, VERSION, flags)),
                &mut out[HEADER_LEN..],
            )
            .expect("AES-GCM sealing fails only for inputs over 64 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens a blob fetched under `id`, verifying everything; `size_hint` bounds decompression.
    pub fn open(&self, id: &ChunkId, mut blob: Vec<u8>, max_chunk_bytes: usize) -> Result<Vec<u8>, BlobError> {
        let shown = || id.to_hex();
        if blob.len() < HEADER_LEN + TAG_LEN {
            return Err(BlobError::Malformed { id: shown(), reason: format!("{} bytes is shorter than any blob", blob.len()) });
        }
        let version = blob[0];
        if version != VERSION && version != VERSION_1 {
            return Err(BlobError::Malformed { id: shown(), reason: format!("unknown blob format version {version}") });
        }
        let flags = blob[1];
        if flags & !FLAG_ZSTD != 0 {
            return Err(BlobError::Malformed { id: shown(), reason: format!("unknown flags {flags:#04x}") });
        }
        let nonce: [u8; NONCE_LEN] = blob[2..HEADER_LEN].try_into().expect("checked length");
        let plain_len = self
            .aead
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(Self::aad(id, version, flags)), &mut blob[HEADER_LEN..])
            .map_err(|_| BlobError::Authentication(shown()))?
            .len();
        let body = &blob[HEADER_LEN..HEADER_LEN + plain_len];
        let chunk = if flags & FLAG_ZSTD != 0 {
            zstd::bulk::decompress(body, max_chunk_bytes).map_err(|e| BlobError::Decompress { id: shown(), reason: e.to_string() })?
        } else {
            body.to_vec()
        };
        if self.ids.id(&chunk) != *id {
            return Err(BlobError::WrongContent(shown()));
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> BlobCodec {
        BlobCodec::new(&MasterKey::from_bytes([7; 32]), 3)
    }

    #[test]
    fn round_trip_compressible_and_random() {
        let c = codec();
        let text = b"the same sentence again and again. ".repeat(1000);
        let random: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for chunk in [&text[..], &random[..], &b""[..]] {
            let id = c.ids().id(chunk);
            let blob = c.seal(&id, chunk);
            assert_eq!(c.open(&id, blob.clone(), 1 << 20).unwrap(), chunk);
            assert!(!blob.windows(16).any(|w| chunk.len() >= 16 && w == &chunk[..16]), "plaintext visible in the blob");
        }
        assert!(c.seal(&c.ids().id(&text), &text).len() < text.len() / 10, "text compresses");
    }

    #[test]
    fn sealing_is_deterministic_per_tenant() {
        let c = codec();
        let id = c.ids().id(b"chunk");
        assert_eq!(c.seal(&id, b"chunk"), c.seal(&id, b"chunk"));
        let other = BlobCodec::new(&MasterKey::from_bytes([8; 32]), 3);
        assert_ne!(other.ids().id(b"chunk"), id, "ids reveal nothing across tenants");
    }

    #[test]
    fn tampering_wrong_id_and_wrong_key_are_detected() {
        let c = codec();
        let id = c.ids().id(b"important data");
        let blob = c.seal(&id, b"important data");
        let mut flipped = blob.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(c.open(&id, flipped, 1 << 20), Err(BlobError::Authentication(_))));
        let other_id = c.ids().id(b"other");
        assert!(matches!(c.open(&other_id, blob.clone(), 1 << 20), Err(BlobError::Authentication(_))));
        let stranger = BlobCodec::new(&MasterKey::from_bytes([9; 32]), 3);
        assert!(matches!(stranger.open(&id, blob.clone(), 1 << 20), Err(BlobError::Authentication(_))));
        let mut version = blob;
        version[0] = 9;
        assert!(matches!(c.open(&id, version, 1 << 20), Err(BlobError::Malformed { .. })));
        assert!(matches!(c.open(&id, vec![1, 2, 3], 1 << 20), Err(BlobError::Malformed { .. })));
    }

    /// Seals as format version 1 did, to check old blobs still open.
    fn seal_v1(c: &BlobCodec, id: &ChunkId, chunk: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = blake3::keyed_hash(&c.nonce_key, &id.0).as_bytes()[..NONCE_LEN].try_into().unwrap();
        let mut out = vec![VERSION_1, 0];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(chunk);
        let tag = c.aead.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&id.0), &mut out[HEADER_LEN..]).unwrap();
        out.extend_from_slice(tag.as_ref());
        out
    }

    #[test]
    fn version_1_blobs_still_open() {
        let c = codec();
        let id = c.ids().id(b"written by the previous build");
        let old = seal_v1(&c, &id, b"written by the previous build");
        assert_eq!(c.open(&id, old, 1 << 20).unwrap(), b"written by the previous build");
    }

    #[test]
    fn nonces_follow_what_is_sealed_and_the_header_is_authenticated() {
        let c = codec();
        let chunk = b"compressible compressible compressible compressible".repeat(100);
        let id = c.ids().id(&chunk);
        let compressed = c.seal(&id, &chunk);
        let plain = BlobCodec::new(&MasterKey::from_bytes([7; 32]), 0).seal(&id, &chunk);
        // The same chunk sealed with and without compression: different bodies, so different nonces (a shared
        // nonce under different plaintexts would leak their XOR and break GCM's authentication).
        assert_ne!(compressed[2..HEADER_LEN], plain[2..HEADER_LEN]);
        // Clearing the zstd flag of a compressed blob (or setting it on a plain one) makes it fail to open.
        let mut flipped = compressed.clone();
        flipped[1] ^= FLAG_ZSTD;
        assert!(matches!(c.open(&id, flipped, 1 << 20), Err(BlobError::Authentication(_))));
        // Presenting a version 2 blob as version 1 fails too.
        let mut downgraded = plain.clone();
        downgraded[0] = VERSION_1;
        assert!(matches!(c.open(&id, downgraded, 1 << 20), Err(BlobError::Authentication(_))));
        assert_eq!(c.open(&id, plain, 1 << 20).unwrap(), chunk);
    }

    #[test]
    fn decompression_is_bounded() {
        let c = codec();
        let zeros = vec![0u8; 4 << 20];
        let id = c.ids().id(&zeros);
        let blob = c.seal(&id, &zeros);
        assert!(matches!(c.open(&id, blob, 1 << 20), Err(BlobError::Decompress { .. })));
    }
}
