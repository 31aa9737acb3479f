//! Snapshot catalog entries and upload sessions as they cross the wire.
//!
//! The cluster stores a snapshot's summary encrypted (only the client can read host, paths, tags and the root
//! tree) and the ids of its reference-list blobs in the clear (chunk ids are keyed hashes), which is what lets
//! the cluster collect garbage without reading trees. See docs/rfcs/0001-snapshots-and-gc.md.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::ChunkId;

/// A snapshot's id: 16 random bytes chosen by the client, so a retried commit is idempotent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotId(pub [u8; 16]);

impl SnapshotId {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({})", &self.to_hex()[..8])
    }
}

/// An upload session: opened by a backup, closed by its snapshot commit or by lease expiry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

/// A committed snapshot as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Id.
    pub id: SnapshotId,
    /// When the snapshot was taken (client clock), ms since the Unix epoch.
    pub time_ms: u64,
    /// When the cluster committed it (leader clock).
    pub committed_ms: u64,
    /// Encrypted summary; opaque to the cluster.
    pub summary: Vec<u8>,
    /// Chunk ids of the snapshot's reference-list blobs (plaintext sorted chunk-id lists).
    pub refs: Vec<ChunkId>,
    /// For each of `refs`, the digest of its contents ([`crate::reflist::digest`]): the cluster checks it when
    /// the snapshot is committed and refuses to collect garbage by a list that does not match it. Empty only
    /// for snapshots committed before digests were recorded.
    pub ref_digests: Vec<[u8; 32]>,
}
