//! What a snapshot is, as only the client can read it: host, paths, tags, root tree and statistics.
//!
//! The summary travels to the cluster sealed with a key derived from the master key (AES-256-GCM, random
//! nonce, snapshot id as associated data, so a summary cannot be moved to another snapshot). The cluster keeps
//! it in the catalog without being able to read it.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use strata_proto::{ChunkId, SnapshotId};

use crate::keys::MasterKey;

const SUMMARY_VERSION: u8 = 1;

/// Counts gathered during a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Files read because they were new.
    pub files_new: u64,
    /// Files read because they changed.
    pub files_changed: u64,
    /// Files taken from the parent snapshot without reading.
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Files that could not be read (not in the snapshot).
    pub files_failed: u64,
    /// Files that changed while being read (in the snapshot, as read).
    pub files_changed_during_read: u64,
    /// Bytes of file content read from disk.
    pub bytes_read: u64,
    /// Bytes of file content in the snapshot (including unmodified files).
    pub bytes_total: u64,
    /// Chunks uploaded (not already in the cluster).
    pub chunks_uploaded: u64,
    /// Bytes of chunk data uploaded (before compression).
    pub bytes_uploaded: u64,
    /// Bytes of blobs uploaded (after compression and encryption).
    pub blob_bytes_uploaded: u64,
    /// Chunks found already stored.
    pub chunks_deduplicated: u64,
}

/// The client-side description of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Host the backup ran on.
    pub host: String,
    /// Absolute paths backed up.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Start time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Chunks of the encoded root tree.
    pub root: Vec<ChunkId>,
    /// The snapshot this one was compared against.
    pub parent: Option<SnapshotId>,
    /// Statistics.
    pub stats: BackupStats,
}

/// Why a summary cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {0} summary cannot be read (damaged, or written with another key)")]
pub struct SummaryError(pub String);

fn key(master: &MasterKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &master.derive("snapshot summary")).expect("32-byte key"))
}

impl SnapshotSummary {
    /// Seals the summary of snapshot `id`.
    pub fn seal(&self, master: &MasterKey, id: &SnapshotId) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut body = postcard::to_stdvec(self).expect("summaries encode");
        key(master).seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&id.0), &mut body).expect("sealing a summary");
        let mut out = vec![SUMMARY_VERSION];
        out.extend_from_slice(&nonce);
        out.extend(body);
        out
    }

    /// Opens the sealed summary of snapshot `id`.
    pub fn open(master: &MasterKey, id: &SnapshotId, sealed: &[u8]) -> Result<SnapshotSummary, SummaryError> {
        let bad = || SummaryError(id.to_hex());
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SUMMARY_VERSION {
            return Err(bad());
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| bad())?;
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plain = key(master).open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&id.0), &mut body).map_err(|_| bad())?;
        postcard::from_bytes(plain).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_summaries_open_only_with_their_key_and_id() {
        let master = MasterKey::generate();
        let s = SnapshotSummary {
            host: "laptop".into(),
            paths: vec!["/home/a".into()],
            tags: vec!["daily".into()],
            time_ms: 5,
            root: vec![ChunkId([1; 32])],
            parent: None,
            stats: BackupStats::default(),
        };
        let id = SnapshotId([3; 16]);
        let sealed = s.seal(&master, &id);
        assert!(!sealed.windows(6).any(|w| w == b"laptop"), "host visible in the sealed summary");
        assert_eq!(SnapshotSummary::open(&master, &id, &sealed).unwrap(), s);
        assert!(SnapshotSummary::open(&master, &SnapshotId([4; 16]), &sealed).is_err());
        assert!(SnapshotSummary::open(&MasterKey::generate(), &id, &sealed).is_err());
        assert!(SnapshotSummary::open(&master, &id, &sealed[..10]).is_err());
    }
}
