//! Reading state snapshots written in format version 3 (before snapshots recorded the digests of their
//! reference lists). Like `state_v1.rs` and `state_v2.rs`, this decoder only ever converts an old layout to
//! the current type.

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_proto::{ClusterMap, SessionId, SnapshotId, SnapshotRecord, TenantId};

use super::command::Digest;
use super::generations::MigrationSettings;
use super::legacy::SnapshotRecordV1;
use super::state::{KeyFileRecord, MetaState, SessionRecord, TenantRecord, TokenRecord};

/// The state as format version 3 encoded it.
#[derive(Deserialize)]
struct MetaStateV3 {
    cluster_name: Option<String>,
    map: ClusterMap,
    tenants: BTreeMap<TenantId, TenantRecord>,
    tokens: BTreeMap<Digest, TokenRecord>,
    join_tokens: BTreeMap<Digest, u64>,
    next_node_id: u64,
    next_tenant_id: u64,
    sessions: BTreeMap<SessionId, SessionRecord>,
    snapshots: BTreeMap<TenantId, BTreeMap<SnapshotId, SnapshotRecordV1>>,
    key_files: BTreeMap<TenantId, KeyFileRecord>,
    next_session_id: u64,
    migration: MigrationSettings,
}

/// Snapshot catalogs of an older layout, as current records (without reference-list digests).
pub fn current_snapshots(
    old: BTreeMap<TenantId, BTreeMap<SnapshotId, SnapshotRecordV1>>,
) -> BTreeMap<TenantId, BTreeMap<SnapshotId, SnapshotRecord>> {
    old.into_iter().map(|(t, c)| (t, c.into_iter().map(|(id, r)| (id, r.into_current())).collect())).collect()
}

/// Decodes a version 3 payload into the current state.
pub fn decode(payload: &[u8]) -> Result<MetaState, String> {
    let v3: MetaStateV3 = postcard::from_bytes(payload).map_err(|e| format!("version 3 snapshot is malformed: {e}"))?;
    Ok(MetaState {
        cluster_name: v3.cluster_name,
        map: v3.map,
        // Before the bootstrap rule operators could issue any tenant token: every tenant counts as bootstrapped.
        bootstrapped: v3.tenants.keys().copied().collect(),
        tenants: v3.tenants,
        join_tokens: v3.join_tokens,
        next_node_id: v3.next_node_id,
        next_tenant_id: v3.next_tenant_id,
        sessions: v3.sessions,
        snapshots: current_snapshots(v3.snapshots),
        key_files: v3.key_files,
        next_session_id: v3.next_session_id,
        migration: v3.migration,

        tokens: v3.tokens,
        ..MetaState::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use strata_proto::ChunkId;

    /// The version 3 layout, for writing a snapshot as the previous build did.
    #[derive(Serialize)]
    struct WriteV3<'a> {
        cluster_name: &'a Option<String>,
        map: &'a ClusterMap,
        tenants: &'a BTreeMap<TenantId, TenantRecord>,
        tokens: &'a BTreeMap<Digest, TokenRecord>,
        join_tokens: &'a BTreeMap<Digest, u64>,
        next_node_id: u64,
        next_tenant_id: u64,
        sessions: &'a BTreeMap<SessionId, SessionRecord>,
        snapshots: &'a BTreeMap<TenantId, BTreeMap<SnapshotId, SnapshotRecordV1>>,
        key_files: &'a BTreeMap<TenantId, KeyFileRecord>,
        next_session_id: u64,
        migration: &'a MigrationSettings,
    }

    #[test]
    fn a_version_3_snapshot_loads_with_its_snapshots_and_no_digests() {
        let old_record =
            SnapshotRecordV1 { id: SnapshotId([5; 16]), time_ms: 10, committed_ms: 11, summary: vec![1, 2], refs: vec![ChunkId([6; 32])] };
        let old_catalog = BTreeMap::from([(TenantId(1), BTreeMap::from([(old_record.id, old_record.clone())]))]);
        let mut s = MetaState { cluster_name: Some("old".into()), next_node_id: 7, next_session_id: 3, ..MetaState::default() };
        s.tenants.insert(TenantId(1), TenantRecord { name: "t".into(), created_at_ms: 5 });
        s.snapshots = current_snapshots(old_catalog.clone());
        let old = WriteV3 {
            cluster_name: &s.cluster_name,
            map: &s.map,
            tenants: &s.tenants,
            tokens: &s.tokens,
            join_tokens: &s.join_tokens,
            next_node_id: s.next_node_id,
            next_tenant_id: s.next_tenant_id,
            sessions: &s.sessions,
            snapshots: &old_catalog,
            key_files: &s.key_files,
            next_session_id: s.next_session_id,
            migration: &s.migration,
        };
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend(postcard::to_stdvec(&old).unwrap());
        let back = MetaState::decode(&bytes).unwrap();
        s.bootstrapped = s.tenants.keys().copied().collect();
        assert_eq!(back, s, "every earlier tenant counts as bootstrapped");
        let record = &back.snapshots[&TenantId(1)][&SnapshotId([5; 16])];
        assert_eq!((record.refs.clone(), record.ref_digests.len()), (vec![ChunkId([6; 32])], 0));
    }
}
