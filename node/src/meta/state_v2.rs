//! Reading state snapshots written in format version 2 (before generations could be drained: no migration
//! settings). Like `state_v1.rs`, this decoder only ever converts an old layout to the current type.

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_proto::{ClusterMap, SessionId, SnapshotId, TenantId};

use super::command::Digest;
use super::legacy::SnapshotRecordV1;
use super::state::{KeyFileRecord, MetaState, SessionRecord, TenantRecord, TokenRecord};

/// The state as format version 2 encoded it.
#[derive(Deserialize)]
struct MetaStateV2 {
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
}

/// Decodes a version 2 payload into the current state.
pub fn decode(payload: &[u8]) -> Result<MetaState, String> {
    let v2: MetaStateV2 = postcard::from_bytes(payload).map_err(|e| format!("version 2 snapshot is malformed: {e}"))?;
    Ok(MetaState {
        cluster_name: v2.cluster_name,
        map: v2.map,
        // Before the bootstrap rule operators could issue any tenant token: every tenant counts as bootstrapped.
        bootstrapped: v2.tenants.keys().copied().collect(),
        tenants: v2.tenants,
        tokens: v2.tokens,
        join_tokens: v2.join_tokens,
        next_node_id: v2.next_node_id,
        next_tenant_id: v2.next_tenant_id,
        sessions: v2.sessions,
        snapshots: super::state_v3::current_snapshots(v2.snapshots),
        key_files: v2.key_files,
        next_session_id: v2.next_session_id,
        ..MetaState::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The version 2 layout, for writing a snapshot as an older build did.
    #[derive(Serialize)]
    struct WriteV2<'a> {
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
    }

    #[test]
    fn a_version_2_snapshot_loads_with_default_migration_settings() {
        let mut s = MetaState { cluster_name: Some("old".into()), next_node_id: 7, next_session_id: 3, ..MetaState::default() };
        s.tenants.insert(TenantId(1), TenantRecord { name: "t".into(), created_at_ms: 5 });
        let old = WriteV2 {
            cluster_name: &s.cluster_name,
            map: &s.map,
            tenants: &s.tenants,
            tokens: &s.tokens,
            join_tokens: &s.join_tokens,
            next_node_id: s.next_node_id,
            next_tenant_id: s.next_tenant_id,
            sessions: &s.sessions,
            snapshots: &BTreeMap::new(),
            key_files: &s.key_files,
            next_session_id: s.next_session_id,
        };
        let mut bytes = 2u32.to_le_bytes().to_vec();
        bytes.extend(postcard::to_stdvec(&old).unwrap());
        s.bootstrapped = s.tenants.keys().copied().collect();
        assert_eq!(MetaState::decode(&bytes).unwrap(), s, "every earlier tenant counts as bootstrapped");
    }
}
