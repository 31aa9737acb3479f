//! The replicated metadata state and the deterministic `apply` of commands to it.
//!
//! This is everything Raft holds: the cluster map (nodes, generations, partition table), tenants, token digests
//! and join tokens. It is small by construction: no per-chunk data ever enters it. `apply` is pure; the Raft
//! state machine wraps it with persistence and snapshotting. Persisted encodings start with a format version.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use strata_proto::cluster_map::{Generation, GenerationState, NodeDescriptor, NodeState};
use strata_proto::{
    ClusterMap, Epoch, ErrorCode, GenerationId, NodeAnnouncement, NodeId, PartitionPlacement, RoleSet, SessionId, SnapshotId,
    SnapshotRecord, TenantId,
};

use super::authority::Actor;
use super::catalog::Lease;
use super::command::{Digest, InitCluster, MetaCommand, MetaResponse};
use super::generations::MigrationSettings;

/// Format version of the encoded state (snapshots). Versions 1 (before sessions, snapshots and key files),
/// 2 (before migration settings) and 3 (before reference-list digests) are still read: see `state_v1.rs`,
/// `state_v2.rs` and `state_v3.rs`.
pub const STATE_FORMAT_VERSION: u32 = 4;

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Unique name.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// A token, stored by digest only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Tenant scope; `None` for operator tokens.
    pub tenant: Option<TenantId>,
    /// Roles granted.
    pub roles: RoleSet,
    /// Expiry, if any.
    pub expires_at_ms: Option<u64>,
    /// Operator-visible label.
    pub label: String,
    /// Creation time.
    pub created_at_ms: u64,
}

/// The replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Cluster name; `None` until initialised.
    pub cluster_name: Option<String>,
    /// The cluster map.
    pub map: ClusterMap,
    /// Tenants by id.
    pub tenants: BTreeMap<TenantId, TenantRecord>,
    /// Tokens by digest.
    pub tokens: BTreeMap<Digest, TokenRecord>,
    /// Unused join tokens by digest, with their expiry.
    pub join_tokens: BTreeMap<Digest, u64>,
    /// Next node id to hand out.
    pub next_node_id: u64,
    /// Next tenant id to hand out.
    pub next_tenant_id: u64,
    /// Open upload sessions.
    pub sessions: BTreeMap<SessionId, SessionRecord>,
    /// Snapshot catalog per tenant.
    pub snapshots: BTreeMap<TenantId, BTreeMap<SnapshotId, SnapshotRecord>>,
    /// Wrapped key file per tenant.
    pub key_files: BTreeMap<TenantId, KeyFileRecord>,
    /// Next session id to hand out.
    pub next_session_id: u64,
    /// Migration knobs: paused generations, rate override.
    pub migration: MigrationSettings,
    /// Tenants whose first admin token an operator has issued (operators issue no other tenant tokens).
    pub bootstrapped: BTreeSet<TenantId>,
    /// Key files replaced by a newer one, per tenant, oldest first (at most `KEY_FILE_HISTORY`).
    pub key_file_history: BTreeMap<TenantId, Vec<KeyFileRecord>>,
    /// Security-relevant changes (tokens, tenants, nodes, key files), oldest first, bounded.
    pub audit: VecDeque<AuditRecord>,
    /// Nodes holding the cluster CA's key (the voters receive it; see `ca_custody`).
    pub ca_holders: BTreeSet<NodeId>,
    /// The trusted CA certificates (PEM, one per entry) once the CA has been rotated; the last one issues new
    /// certificates. Empty until the first rotation: the CA in every node's `tls.ca_cert` file is the only one.
    pub cas: Vec<String>,
    /// While a CA rotation is in progress: the new CA's certificate signed by the old CA's key.
    pub ca_cross: Option<String>,
    /// Nodes that renewed onto the new CA during the rotation in progress.
    pub ca_renewed: BTreeSet<NodeId>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, ms since the Unix epoch (the proposer's clock).
    pub at_ms: u64,
    /// Who.
    pub actor: Actor,
    /// What, in words.
    pub what: String,
}

/// An open upload session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Owner.
    pub tenant: TenantId,
    /// When it was opened.
    pub opened_ms: u64,
    /// When it was last renewed.
    pub renewed_ms: u64,
    /// It expires `lease_ms` after its last renewal.
    pub lease_ms: u64,
}

impl SessionRecord {
    /// Whether the lease has run out at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms > self.renewed_ms.saturating_add(self.lease_ms)
    }
}

/// A tenant's wrapped key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFileRecord {
    /// The key file text (the master key wrapped with the password; opaque to the cluster).
    pub text: String,
    /// Digest of the key that authorises replacing it.
    pub check: Digest,
}

impl Default for MetaState {
    fn default() -> Self {
        MetaState {
            cluster_name: None,
            map: ClusterMap::new(0).expect("0 partition bits is valid"),
            tenants: BTreeMap::new(),
            tokens: BTreeMap::new(),
            join_tokens: BTreeMap::new(),
            next_node_id: 1,
            next_tenant_id: 1,
            sessions: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            key_files: BTreeMap::new(),
            next_session_id: 1,
            migration: MigrationSettings::default(),
            bootstrapped: BTreeSet::new(),
            key_file_history: BTreeMap::new(),
            audit: VecDeque::new(),
            ca_holders: BTreeSet::new(),
            cas: Vec::new(),
            ca_cross: None,
            ca_renewed: BTreeSet::new(),
        }
    }
}

/// Why a token does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No token with that digest.
    Unknown,
    /// The token expired.
    Expired,
}

impl MetaState {
    /// Applies one command. Deterministic: the same state and command give the same result everywhere.
    pub fn apply(&mut self, cmd: &MetaCommand) -> MetaResponse {
        if self.cluster_name.is_none() && !matches!(cmd, MetaCommand::Init(_) | MetaCommand::Noop) {
            return MetaResponse::reject(ErrorCode::NotReady, "the cluster is not initialised yet");
        }
        match cmd {
            MetaCommand::Init(init) => self.init(init),
            MetaCommand::RegisterNode(a) => self.register_node(a),
            MetaCommand::ReserveNodeId => {
                let id = NodeId(self.next_node_id);
                self.next_node_id += 1;
                MetaResponse::NodeId(id)
            }
            MetaCommand::CreateJoinToken { digest, expires_at_ms } => {
                self.join_tokens.insert(*digest, *expires_at_ms);
                MetaResponse::Ok
            }
            MetaCommand::ConsumeJoinToken { digest, now_ms } => self.consume_join_token(digest, *now_ms),
            MetaCommand::CreateTenant { name, now_ms } => self.create_tenant(name, *now_ms),
            MetaCommand::CreateToken { digest, tenant, roles, expires_at_ms, label, now_ms } => {
                if let Some(t) = tenant
                    && !self.tenants.contains_key(t)
                {
                    return MetaResponse::reject(ErrorCode::NotFound, format!("{t} does not exist"));
                }
                let record = TokenRecord {
                    tenant: *tenant,
                    roles: *roles,
                    expires_at_ms: *expires_at_ms,
                    label: label.clone(),
                    created_at_ms: *now_ms,
                };
                self.tokens.insert(*digest, record);
                // A tenant that received a token the old way has had its bootstrap.
                if let Some(t) = tenant {
                    self.bootstrapped.insert(*t);
                }
                MetaResponse::Ok
            }
            MetaCommand::SetPlacement { expected_epoch, partitions } => self.set_placement(*expected_epoch, partitions),
            MetaCommand::Noop => MetaResponse::Ok,
            MetaCommand::OpenSessionV1 { tenant, now_ms, lease_ms } => {
                let id = SessionId(self.next_session_id);
                self.next_session_id += 1;
                self.open_session(*tenant, id, *now_ms, *lease_ms)
            }
            MetaCommand::OpenSession { tenant, session, now_ms, lease_ms } => self.open_session(*tenant, *session, *now_ms, *lease_ms),
            MetaCommand::RenewSessionV1 { tenant, session, now_ms } => self.renew_session_v1(*tenant, *session, *now_ms),
            MetaCommand::RenewSession { tenant, session, now_ms } => self.renew_session(*tenant, *session, *now_ms),
            MetaCommand::DropSessions { sessions } => self.drop_sessions(sessions),
            MetaCommand::CloseSession { tenant, session } => self.close_session(*tenant, *session),
            MetaCommand::CommitSnapshotV1 { tenant, session, record, now_ms } => {
                self.commit_snapshot(*tenant, *session, &record.clone().into_current(), *now_ms, Lease::ProposerClock)
            }
            MetaCommand::CommitSnapshotV2 { tenant, session, record, now_ms } => {
                self.commit_snapshot(*tenant, *session, record, *now_ms, Lease::ProposerClock)
            }
            MetaCommand::CommitSnapshot { tenant, session, record, now_ms } => {
                self.commit_snapshot(*tenant, *session, record, *now_ms, Lease::Leader)
            }
            MetaCommand::ForgetSnapshots { tenant, ids } => self.forget_snapshots(*tenant, ids),
            MetaCommand::PutKeyFile { tenant, text, check, proof } => self.put_key_file(*tenant, text, *check, *proof),
            MetaCommand::ExpireSessions { now_ms } => self.expire_sessions(*now_ms),
            MetaCommand::AddGeneration { name, profile } => self.add_generation(name, *profile),
            MetaCommand::GenerationStep { name, step } => self.generation_step(name, *step),
            MetaCommand::SetMigrationRate { bytes_per_sec } => self.set_migration_rate(*bytes_per_sec),
            MetaCommand::StartMoves { expected_epoch, moves } => self.start_moves(*expected_epoch, moves),
            MetaCommand::CompleteMove { partition, target } => self.complete_move(*partition, target),
            MetaCommand::SetNodeState { node, state } => self.set_node_state(*node, *state),
            MetaCommand::AdmitNode { join_digest, now_ms, addr, zone, capacity_bytes, generation } => {
                self.admit_node(join_digest, *now_ms, addr, zone, *capacity_bytes, generation)
            }
            MetaCommand::IssueToken { digest, tenant, roles, expires_at_ms, label, now_ms, issuer } => {
                let token = super::tokens::NewToken { digest, tenant: *tenant, roles: *roles, expires_at_ms: *expires_at_ms, label };
                self.issue_token(token, *now_ms, issuer.clone())
            }
            MetaCommand::RevokeToken { id, tenant, by, now_ms } => self.revoke_token(id, *tenant, by.clone(), *now_ms),
            MetaCommand::StoreKeyFile { tenant, text, check, proof, now_ms } => self.store_key_file(*tenant, text, *check, *proof, *now_ms),
            MetaCommand::RecordCaHolder { node, now_ms, .. } => self.record_ca_holder(*node, *now_ms),
            MetaCommand::DropCaHolder { node, now_ms } => self.drop_ca_holder(*node, *now_ms),
            MetaCommand::BeginCaRotation { trusted, cross_pem, now_ms } => self.begin_ca_rotation(trusted, cross_pem, *now_ms),
            MetaCommand::RecordCaRenewal { node, now_ms } => self.record_ca_renewal(*node, *now_ms),
            MetaCommand::FinishCaRotation { force, now_ms } => self.finish_ca_rotation(*force, *now_ms),
            MetaCommand::RevokeNode { node, now_ms } => self.revoke_node(*node, *now_ms),
        }
    }

    /// Admits a joining node: uses up its join token, gives it the next id and registers it, or refuses all of it.
    fn admit_node(
        &mut self,
        join_digest: &Digest,
        now_ms: u64,
        addr: &str,
        zone: &str,
        capacity_bytes: u64,
        generation: &str,
    ) -> MetaResponse {
        match self.join_tokens.get(join_digest) {
            None => return MetaResponse::reject(ErrorCode::Unauthenticated, "unknown or already used join token"),
            Some(expiry) if *expiry <= now_ms => {
                return MetaResponse::reject(ErrorCode::TokenExpired, "the join token has expired; create a new one");
            }
            Some(_) => {}
        }
        let id = NodeId(self.next_node_id);
        let announcement = NodeAnnouncement { id, addr: addr.into(), zone: zone.into(), capacity_bytes, generation: generation.into() };
        match self.register_node(&announcement) {
            MetaResponse::Epoch(_) => {}
            refused => return refused,
        }
        self.join_tokens.remove(join_digest);
        self.audit(now_ms, Actor::Node(id), format!("joined generation {generation:?} from {addr} in zone {zone:?} with a join token"));
        MetaResponse::NodeId(id)
    }

    fn init(&mut self, init: &InitCluster) -> MetaResponse {
        if self.cluster_name.is_some() {
            return MetaResponse::reject(ErrorCode::Conflict, "the cluster is already initialised");
        }
        let map = match ClusterMap::new(init.partition_bits) {
            Ok(m) => m,
            Err(e) => return MetaResponse::reject(ErrorCode::BadRequest, e.to_string()),
        };
        if let Err(e) = init.profile.validate() {
            return MetaResponse::reject(ErrorCode::BadRequest, e.to_string());
        }
        self.map = map;
        let g =
            Generation { id: GenerationId(1), name: init.generation_name.clone(), profile: init.profile, state: GenerationState::Active };
        self.map.generations.insert(g.id, g);
        self.map.epoch = Epoch(1);
        let operator = TokenRecord {
            tenant: None,
            roles: RoleSet::of(&[strata_proto::Role::Operator]),
            expires_at_ms: None,
            label: "initial operator token".into(),
            created_at_ms: init.now_ms,
        };
        self.tokens.insert(init.operator_token, operator);
        self.cluster_name = Some(init.cluster_name.clone());
        MetaResponse::Ok
    }

    fn register_node(&mut self, a: &NodeAnnouncement) -> MetaResponse {
        let Some(generation) = self.map.generation_by_name(&a.generation).map(|g| g.id) else {
            return MetaResponse::reject(ErrorCode::NotFound, format!("generation {:?} does not exist", a.generation));
        };
        if self.map.generations.get(&generation).is_some_and(|g| g.state == GenerationState::Dropped) {
            return MetaResponse::reject(ErrorCode::Conflict, format!("generation {:?} was dropped; nodes cannot join it", a.generation));
        }
        if a.id.0 == 0 {
            return MetaResponse::reject(ErrorCode::BadRequest, "node id 0 is reserved");
        }
        let updated = match self.map.nodes.get(&a.id) {
            Some(existing) if existing.state == NodeState::Removed => {
                return MetaResponse::reject(ErrorCode::Conflict, format!("{} was removed from the cluster and cannot rejoin", a.id));
            }
            Some(existing) if existing.generation != generation => {
                return MetaResponse::reject(
                    ErrorCode::Conflict,
                    format!("{} belongs to another generation; a node cannot change generation", a.id),
                );
            }
            // A Down node that announces itself again is back: it becomes Active (placement may use it again;
            // shards it lost the slots of are retired).
            Some(existing) => NodeDescriptor {
                addr: a.addr.clone(),
                zone: a.zone.clone(),
                capacity_bytes: a.capacity_bytes,
                state: NodeState::Active,
                ..existing.clone()
            },
            None => NodeDescriptor {
                id: a.id,
                addr: a.addr.clone(),
                zone: a.zone.clone(),
                capacity_bytes: a.capacity_bytes,
                generation,
                state: NodeState::Active,
            },
        };
        self.next_node_id = self.next_node_id.max(a.id.0.saturating_add(1));
        if self.map.nodes.get(&a.id) != Some(&updated) {
            self.map.nodes.insert(a.id, updated);
            self.map.epoch.0 += 1;
        }
        MetaResponse::Epoch(self.map.epoch)
    }

    fn consume_join_token(&mut self, digest: &Digest, now_ms: u64) -> MetaResponse {
        match self.join_tokens.remove(digest) {
            None => MetaResponse::reject(ErrorCode::Unauthenticated, "unknown or already used join token"),
            Some(expiry) if expiry <= now_ms => {
                MetaResponse::reject(ErrorCode::TokenExpired, "the join token has expired; create a new one")
            }
            Some(_) => MetaResponse::Ok,
        }
    }

    fn create_tenant(&mut self, name: &str, now_ms: u64) -> MetaResponse {
        if name.is_empty() || name.len() > 128 {
            return MetaResponse::reject(ErrorCode::BadRequest, "tenant names are 1 to 128 bytes");
        }
        if self.tenants.values().any(|t| t.name == name) {
            return MetaResponse::reject(ErrorCode::Conflict, format!("a tenant named {name:?} already exists"));
        }
        let id = TenantId(self.next_tenant_id);
        self.next_tenant_id += 1;
        self.tenants.insert(id, TenantRecord { name: name.into(), created_at_ms: now_ms });
        MetaResponse::TenantId(id)
    }

    fn set_placement(&mut self, expected: Epoch, partitions: &[PartitionPlacement]) -> MetaResponse {
        if expected != self.map.epoch {
            return MetaResponse::reject(ErrorCode::StaleEpoch, format!("placement computed at {expected}, map is at {}", self.map.epoch));
        }
        let mut next = self.map.clone();
        next.partitions = partitions.to_vec();
        if let Err(e) = next.validate() {
            return MetaResponse::reject(ErrorCode::BadRequest, format!("invalid placement: {e}"));
        }
        next.epoch.0 += 1;
        self.map = next;
        MetaResponse::Epoch(self.map.epoch)
    }

    /// Looks a token up by digest at time `now_ms`.
    pub fn token(&self, digest: &Digest, now_ms: u64) -> Result<&TokenRecord, TokenProblem> {
        let t = self.tokens.get(digest).ok_or(TokenProblem::Unknown)?;
        match t.expires_at_ms {
            Some(exp) if exp <= now_ms => Err(TokenProblem::Expired),
            _ => Ok(t),
        }
    }

    /// Encodes the state for a snapshot: format version, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = STATE_FORMAT_VERSION.to_le_bytes().to_vec();
        out.extend(postcard::to_stdvec(self).expect("metadata state encodes"));
        out
    }

    /// Decodes a snapshot produced by [`MetaState::encode`].
    pub fn decode(bytes: &[u8]) -> Result<MetaState, String> {
        let (version, rest) = bytes.split_at_checked(4).ok_or("snapshot shorter than its version header")?;
        let version = u32::from_le_bytes(version.try_into().map_err(|_| "bad version header")?);
        let state: MetaState = match version {
            1 => super::state_v1::decode(rest)?,
            2 => super::state_v2::decode(rest)?,
            3 => super::state_v3::decode(rest)?,
            STATE_FORMAT_VERSION => postcard::from_bytes(rest).map_err(|e| format!("snapshot is malformed: {e}"))?,
            _ => return Err(format!("snapshot format version {version} is not supported (this build reads 1 to {STATE_FORMAT_VERSION})")),
        };
        state.map.validate().map_err(|e| format!("snapshot holds an invalid cluster map: {e}"))?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::{EcProfile, NodeSet, Role};

    fn initialised() -> MetaState {
        let mut s = MetaState::default();
        let init = InitCluster {
            cluster_name: "c".into(),
            partition_bits: 2,
            generation_name: "gen-a".into(),
            profile: EcProfile { data_shards: 2, parity_shards: 1 },
            operator_token: [1; 32],
            now_ms: 5,
        };
        assert_eq!(s.apply(&MetaCommand::Init(init)), MetaResponse::Ok);
        s
    }

    fn announce(id: u64) -> MetaCommand {
        MetaCommand::RegisterNode(NodeAnnouncement {
            id: NodeId(id),
            addr: format!("127.0.0.1:{id}"),
            zone: "z".into(),
            capacity_bytes: 10,
            generation: "gen-a".into(),
        })
    }

    #[test]
    fn commands_before_init_are_refused() {
        let mut s = MetaState::default();
        assert!(matches!(s.apply(&announce(1)), MetaResponse::Rejected(e) if e.code == ErrorCode::NotReady));
    }

    #[test]
    fn init_only_once_and_grants_operator() {
        let mut s = initialised();
        assert_eq!(s.token(&[1; 32], 0).unwrap().roles, RoleSet::of(&[Role::Operator]));
        let again = InitCluster {
            cluster_name: "d".into(),
            partition_bits: 1,
            generation_name: "g".into(),
            profile: EcProfile::DEFAULT,
            operator_token: [2; 32],
            now_ms: 0,
        };
        assert!(matches!(s.apply(&MetaCommand::Init(again)), MetaResponse::Rejected(e) if e.code == ErrorCode::Conflict));
    }

    #[test]
    fn registration_is_idempotent_and_bumps_epoch_on_change() {
        let mut s = initialised();
        let e1 = s.apply(&announce(3));
        assert_eq!(s.apply(&announce(3)), e1);
        assert_eq!(s.next_node_id, 4);
        let mut moved = announce(3);
        if let MetaCommand::RegisterNode(a) = &mut moved {
            a.addr = "10.0.0.1:1".into();
        }
        assert_ne!(s.apply(&moved), e1);
        let mut wrong_gen = announce(4);
        if let MetaCommand::RegisterNode(a) = &mut wrong_gen {
            a.generation = "nope".into();
        }
        assert!(matches!(s.apply(&wrong_gen), MetaResponse::Rejected(e) if e.code == ErrorCode::NotFound));
    }

    #[test]
    fn join_tokens_are_single_use_and_expire() {
        let mut s = initialised();
        s.apply(&MetaCommand::CreateJoinToken { digest: [7; 32], expires_at_ms: 100 });
        s.apply(&MetaCommand::CreateJoinToken { digest: [8; 32], expires_at_ms: 100 });
        assert_eq!(s.apply(&MetaCommand::ConsumeJoinToken { digest: [7; 32], now_ms: 50 }), MetaResponse::Ok);
        assert!(
            matches!(s.apply(&MetaCommand::ConsumeJoinToken { digest: [7; 32], now_ms: 50 }), MetaResponse::Rejected(e) if e.code == ErrorCode::Unauthenticated)
        );
        assert!(
            matches!(s.apply(&MetaCommand::ConsumeJoinToken { digest: [8; 32], now_ms: 100 }), MetaResponse::Rejected(e) if e.code == ErrorCode::TokenExpired)
        );
    }

    #[test]
    fn tenants_and_tokens() {
        let mut s = initialised();
        let MetaResponse::TenantId(t) = s.apply(&MetaCommand::CreateTenant { name: "alice".into(), now_ms: 1 }) else { panic!() };
        assert!(
            matches!(s.apply(&MetaCommand::CreateTenant { name: "alice".into(), now_ms: 1 }), MetaResponse::Rejected(e) if e.code == ErrorCode::Conflict)
        );
        let token = |tenant, expires| MetaCommand::CreateToken {
            digest: [9; 32],
            tenant,
            roles: RoleSet::of(&[Role::Backup]),
            expires_at_ms: expires,
            label: "laptop".into(),
            now_ms: 1,
        };
        assert!(matches!(s.apply(&token(Some(TenantId(99)), None)), MetaResponse::Rejected(_)));
        assert_eq!(s.apply(&token(Some(t), Some(10))), MetaResponse::Ok);
        assert_eq!(s.token(&[9; 32], 9).unwrap().tenant, Some(t));
        assert_eq!(s.token(&[9; 32], 10), Err(TokenProblem::Expired));
        assert_eq!(s.token(&[3; 32], 0), Err(TokenProblem::Unknown));
    }

    #[test]
    fn placement_is_validated_and_epoch_checked() {
        let mut s = initialised();
        for i in 1..=3 {
            s.apply(&announce(i));
        }
        let epoch = s.map.epoch;
        let good: Vec<_> = (0..4)
            .map(|_| PartitionPlacement {
                current: NodeSet { generation: GenerationId(1), nodes: vec![NodeId(1), NodeId(2), NodeId(3)] },
                target: None,
            })
            .collect();
        let bad = vec![good[0].clone()];
        assert!(
            matches!(s.apply(&MetaCommand::SetPlacement { expected_epoch: epoch, partitions: bad }), MetaResponse::Rejected(e) if e.code == ErrorCode::BadRequest)
        );
        assert!(
            matches!(s.apply(&MetaCommand::SetPlacement { expected_epoch: Epoch(0), partitions: good.clone() }), MetaResponse::Rejected(e) if e.code == ErrorCode::StaleEpoch)
        );
        assert_eq!(
            s.apply(&MetaCommand::SetPlacement { expected_epoch: epoch, partitions: good }),
            MetaResponse::Epoch(Epoch(epoch.0 + 1))
        );
        assert!(s.map.is_placed());
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut s = initialised();
        s.apply(&announce(1));
        assert_eq!(MetaState::decode(&s.encode()).unwrap(), s);
        assert!(MetaState::decode(&[9, 0, 0, 0]).unwrap_err().contains("version 9"));
        assert!(MetaState::decode(&[1, 0]).is_err());
        let mut garbage = s.encode();
        garbage.truncate(garbage.len() / 2);
        assert!(MetaState::decode(&garbage).is_err());
    }
}
