//! Reading state snapshots written in format version 1 (before sessions, snapshots and key files existed).
//!
//! Persisted formats only ever grow a decoder per old version, which converts to the current type
//! (Garage's migrate-on-decode chain, in miniature).

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_proto::{ClusterMap, TenantId};

use super::command::Digest;
use super::state::{MetaState, TenantRecord, TokenRecord};

/// The state as format version 1 encoded it.
#[derive(Deserialize)]
struct MetaStateV1 {
    cluster_name: Option<String>,
    map: ClusterMap,
    tenants: BTreeMap<TenantId, TenantRecord>,
    tokens: BTreeMap<Digest, TokenRecord>,
    join_tokens: BTreeMap<Digest, u64>,
    next_node_id: u64,
    next_tenant_id: u64,
}

/// Decodes a version 1 payload into the current state.
pub fn decode(payload: &[u8]) -> Result<MetaState, String> {
    let v1: MetaStateV1 = postcard::from_bytes(payload).map_err(|e| format!("version 1 snapshot is malformed: {e}"))?;
    Ok(MetaState {
        cluster_name: v1.cluster_name,
        map: v1.map,
        // Before the bootstrap rule operators could issue any tenant token: every tenant counts as bootstrapped.
        bootstrapped: v1.tenants.keys().copied().collect(),
        tenants: v1.tenants,
        tokens: v1.tokens,
        join_tokens: v1.join_tokens,
        next_node_id: v1.next_node_id,
        next_tenant_id: v1.next_tenant_id,
        ..MetaState::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_one_snapshot_still_loads() {
        // Encode a state the way version 1 did: the same leading fields, nothing after them.
        #[derive(serde::Serialize)]
        struct V1<'a> {
            cluster_name: &'a Option<String>,
            map: &'a ClusterMap,
            tenants: &'a BTreeMap<TenantId, TenantRecord>,
            tokens: &'a BTreeMap<Digest, TokenRecord>,
            join_tokens: &'a BTreeMap<Digest, u64>,
            next_node_id: u64,
            next_tenant_id: u64,
        }
        let mut s = MetaState { cluster_name: Some("old".into()), next_tenant_id: 4, ..MetaState::default() };
        s.tenants.insert(TenantId(3), TenantRecord { name: "t".into(), created_at_ms: 1 });
        let v1 = V1 {
            cluster_name: &s.cluster_name,
            map: &s.map,
            tenants: &s.tenants,
            tokens: &s.tokens,
            join_tokens: &s.join_tokens,
            next_node_id: s.next_node_id,
            next_tenant_id: s.next_tenant_id,
        };
        let mut bytes = 1u32.to_le_bytes().to_vec();
        bytes.extend(postcard::to_stdvec(&v1).unwrap());
        s.bootstrapped = s.tenants.keys().copied().collect();
        assert_eq!(MetaState::decode(&bytes).unwrap(), s, "every earlier tenant counts as bootstrapped");
    }
}
