//! Record layouts of earlier format versions, kept only to read old Raft log entries and state snapshots.
//!
//! A log entry or snapshot written by an earlier build holds these shapes; decoding them into the current types
//! happens here and nowhere else, so the rest of the node only ever sees current records.

use serde::{Deserialize, Serialize};
use strata_proto::{ChunkId, SnapshotId, SnapshotRecord};

/// A snapshot record as protocol version 1 carried it (before reference-list digests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecordV1 {
    /// Id.
    pub id: SnapshotId,
    /// Client clock at the start of the backup.
    pub time_ms: u64,
    /// Leader clock at commit.
    pub committed_ms: u64,
    /// Encrypted summary.
    pub summary: Vec<u8>,
    /// Reference-list blob ids.
    pub refs: Vec<ChunkId>,
}

impl SnapshotRecordV1 {
    /// The current record: no digests are known for its reference lists.
    pub fn into_current(self) -> SnapshotRecord {
        SnapshotRecord {
            id: self.id,
            time_ms: self.time_ms,
            committed_ms: self.committed_ms,
            summary: self.summary,
            refs: self.refs,
            ref_digests: Vec::new(),
        }
    }
}
