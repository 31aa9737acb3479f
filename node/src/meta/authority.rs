//! Who may have which command written to the Raft log: one policy, checked by the node that proposes a command
//! and checked again by the leader for every write another node forwards, against the credentials that
//! travel with it. A node certificate alone therefore cannot create tenants, mint tokens, register another
//! node or step a generation: those need an operator's or a tenant's token, or a join token, and the leader
//! verifies it itself. Sizes are checked here too, before anything is proposed, so an entry that would be
//! refused never enters the log.

use serde::{Deserialize, Serialize};
use strata_proto::{ErrorCode, NodeId, Role, RoleSet, Secret, TenantId, WireError};

use super::catalog::{MAX_KEY_FILE_BYTES, MAX_REF_BLOBS, MAX_SUMMARY_BYTES};
use super::command::{Digest, GenerationStep, MAX_DROPPED_SESSIONS, MetaCommand};
use super::state::{MetaState, TokenProblem};

/// Longest token label, tenant or generation name accepted.
pub const MAX_LABEL_BYTES: usize = 128;
/// Largest encoded command accepted into the log (the largest legitimate one, a snapshot commit, is about
/// 330 KiB); openraft's batches are sized so that a full batch stays below the internal body limit.
pub const MAX_ENTRY_BYTES: usize = 512 << 10;
/// Largest placement table (written by the leader once, when the first generation can hold data; about 9
/// bytes a partition, so up to 2^20 partitions of wide profiles fit).
pub const MAX_PLACEMENT_ENTRY_BYTES: usize = 16 << 20;

/// Who asks for a command to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A node of the cluster, by its certificate.
    Node(NodeId),
    /// A tenant token.
    Tenant {
        /// Its tenant.
        tenant: TenantId,
        /// Its roles.
        roles: RoleSet,
    },
    /// An operator token.
    Operator,
    /// A node joining with a one-time join token (its digest).
    Joining(Digest),
}

/// The credential that travels with a forwarded write, so the leader can derive the principal itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Origin {
    /// The forwarding node, identified by its certificate on the connection.
    Node,
    /// A bearer token (tenant or operator) the forwarding node received.
    Token(Secret),
    /// A join token the forwarding node received.
    Join(Secret),
}

/// What an audit record says about who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// An operator token.
    Operator,
    /// An admin token of a tenant.
    TenantAdmin(TenantId),
    /// A node.
    Node(NodeId),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Operator => f.write_str("an operator"),
            Actor::TenantAdmin(t) => write!(f, "an admin of {t}"),
            Actor::Node(n) => write!(f, "{n}"),
        }
    }
}

fn denied(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::PermissionDenied, message)
}

fn too_large(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::TooLarge, message)
}

/// The principal behind `origin`, for a write forwarded by (or proposed on) node `via`.
pub fn principal_of(state: &MetaState, origin: &Origin, via: NodeId, now_ms: u64) -> Result<Principal, WireError> {
    match origin {
        Origin::Node => Ok(Principal::Node(via)),
        Origin::Join(secret) => Ok(Principal::Joining(secret.digest())),
        Origin::Token(secret) => match state.token(&secret.digest(), now_ms) {
            Ok(t) => match t.tenant {
                Some(tenant) => Ok(Principal::Tenant { tenant, roles: t.roles }),
                None if t.roles.allows(Role::Operator) => Ok(Principal::Operator),
                None => Err(denied("token has no tenant and no operator role")),
            },
            Err(TokenProblem::Unknown) => Err(WireError::new(ErrorCode::Unauthenticated, "unknown or revoked token")),
            Err(TokenProblem::Expired) => Err(WireError::new(ErrorCode::TokenExpired, "the token has expired")),
        },
    }
}

fn tenant_role(principal: &Principal, tenant: TenantId, what: &str, allowed: impl Fn(RoleSet) -> bool) -> Result<(), WireError> {
    match principal {
        Principal::Tenant { tenant: own, roles } if *own == tenant && allowed(*roles) => Ok(()),
        Principal::Tenant { tenant: own, .. } if *own == tenant => Err(denied(format!("this token may not {what}"))),
        _ => Err(denied(format!("{what} needs a token of {tenant}"))),
    }
}

fn operator(principal: &Principal, what: &str) -> Result<(), WireError> {
    match principal {
        Principal::Operator => Ok(()),
        _ => Err(denied(format!("{what} needs an operator token"))),
    }
}

fn node(principal: &Principal, what: &str) -> Result<NodeId, WireError> {
    match principal {
        Principal::Node(n) => Ok(*n),
        _ => Err(denied(format!("{what} is done by the cluster's nodes only"))),
    }
}

/// Like [`node`], for a node the cluster knows and has not removed.
fn member(state: &MetaState, principal: &Principal, what: &str) -> Result<NodeId, WireError> {
    let n = node(principal, what)?;
    match state.map.nodes.get(&n).map(|d| d.state) {
        Some(strata_proto::NodeState::Removed) => Err(denied(format!("{n} was removed from the cluster"))),
        Some(_) => Ok(n),
        None => Err(denied(format!("{n} is not a member of this cluster"))),
    }
}

fn bounded(text: &str, what: &str) -> Result<(), WireError> {
    if text.len() > MAX_LABEL_BYTES {
        return Err(too_large(format!("{what} is {} bytes; the limit is {MAX_LABEL_BYTES}", text.len())));
    }
    Ok(())
}

/// Whether `principal` may have `cmd` written to the log, given the current state; the error names what is
/// missing. Commands kept only to read old log entries are never proposed again.
pub fn authorize(state: &MetaState, principal: &Principal, cmd: &MetaCommand) -> Result<(), WireError> {
    match cmd {
        MetaCommand::Init(_) => node(principal, "initialising the cluster").map(|_| ()),
        // A node's first registration makes it known; a removed node cannot come back (apply refuses it too).
        MetaCommand::RegisterNode(a) => {
            let n = node(principal, "registering a node")?;
            if n != a.id {
                return Err(denied(format!("{n} may only register itself, not {}", a.id)));
            }
            bounded(&a.zone, "the zone name")?;
            bounded(&a.addr, "the address")?;
            bounded(&a.generation, "the generation name")
        }
        MetaCommand::AdmitNode { join_digest, addr, zone, generation, .. } => match principal {
            Principal::Joining(d) if d == join_digest => {
                // Checked here too, so that no node can put a made-up join token into the log by forwarding it.
                if !state.join_tokens.contains_key(join_digest) {
                    return Err(WireError::new(ErrorCode::Unauthenticated, "unknown or already used join token"));
                }
                bounded(zone, "the zone name")?;
                bounded(addr, "the address")?;
                bounded(generation, "the generation name")
            }
            _ => Err(denied("admitting a node needs its join token")),
        },
        MetaCommand::CreateJoinToken { .. } => operator(principal, "creating join tokens"),
        MetaCommand::CreateTenant { name, .. } => {
            operator(principal, "creating tenants")?;
            bounded(name, "the tenant name")
        }
        MetaCommand::IssueToken { tenant, roles, label, issuer, .. } => {
            bounded(label, "the token label")?;
            if roles.allows(Role::Operator) != tenant.is_none() {
                return Err(WireError::new(ErrorCode::BadRequest, "operator tokens have no tenant, and tenant tokens no operator role"));
            }
            let expected = match (principal, tenant) {
                (Principal::Operator, None) => Actor::Operator,
                // An operator hands a new tenant its first admin token, once; after that only the tenant's
                // admins create its tokens, so an operator can never obtain a token that reads tenant data.
                (Principal::Operator, Some(t)) => {
                    if !roles.allows(Role::Admin) {
                        return Err(denied("operators create only a tenant's first admin token; its admins create the others"));
                    }
                    if state.bootstrapped.contains(t) {
                        return Err(denied(format!(
                            "{t} already received its first admin token; its admins create further tokens (`strata token create`)"
                        )));
                    }
                    Actor::Operator
                }
                (Principal::Tenant { tenant: own, roles: mine }, Some(t)) if own == t && mine.allows(Role::Admin) => {
                    if roles.allows(Role::Admin) {
                        return Err(denied(
                            "tenant admins create backup and restore tokens; a further admin token needs the operator's tenant bootstrap",
                        ));
                    }
                    Actor::TenantAdmin(*t)
                }
                _ => return Err(denied("creating this token needs an operator token, or an admin token of its tenant")),
            };
            if *issuer != expected {
                return Err(denied(format!("the command names {issuer} as its issuer, but it comes from {expected}")));
            }
            Ok(())
        }
        MetaCommand::RevokeToken { tenant, by, .. } => {
            let expected = match (principal, tenant) {
                (Principal::Operator, _) => Actor::Operator,
                (Principal::Tenant { tenant: own, roles }, Some(t)) if own == t && roles.allows(Role::Admin) => Actor::TenantAdmin(*t),
                _ => return Err(denied("revoking a token needs an operator token, or an admin token of its tenant")),
            };
            if *by != expected {
                return Err(denied(format!("the command names {by} as revoking, but it comes from {expected}")));
            }
            Ok(())
        }
        MetaCommand::SetPlacement { .. }
        | MetaCommand::Noop
        | MetaCommand::StartMoves { .. }
        | MetaCommand::SetNodeState { .. }
        | MetaCommand::CompleteMove { .. } => member(state, principal, "changing placement, node states and moves").map(|_| ()),
        MetaCommand::DropSessions { sessions } => {
            member(state, principal, "ending upload sessions")?;
            if sessions.len() > MAX_DROPPED_SESSIONS {
                return Err(too_large(format!("at most {MAX_DROPPED_SESSIONS} sessions end in one command")));
            }
            Ok(())
        }
        MetaCommand::GenerationStep { step: GenerationStep::MarkDrained, .. } => {
            member(state, principal, "marking a generation drained").map(|_| ())
        }
        MetaCommand::GenerationStep { name, .. } | MetaCommand::AddGeneration { name, .. } => {
            operator(principal, "managing generations")?;
            bounded(name, "the generation name")
        }
        MetaCommand::SetMigrationRate { .. } => operator(principal, "setting the migration rate"),
        MetaCommand::RevokeNode { .. } => operator(principal, "revoking nodes"),
        // The proof is checked by `Meta`, which knows the CA certificate.
        MetaCommand::RecordCaHolder { node: holder, .. } | MetaCommand::DropCaHolder { node: holder, .. } => {
            let n = member(state, principal, "recording a CA key holder")?;
            if n != *holder {
                return Err(denied(format!("{n} may only record itself as a CA key holder")));
            }
            Ok(())
        }
        MetaCommand::RecordCaRenewal { node, .. } => {
            let n = member(state, principal, "recording a renewal onto the new CA")?;
            if n != *node {
                return Err(denied(format!("{n} may only record its own renewal")));
            }
            Ok(())
        }
        MetaCommand::BeginCaRotation { trusted, cross_pem, .. } => {
            operator(principal, "replacing the cluster CA")?;
            if trusted.iter().chain([cross_pem]).any(|pem| pem.len() > 16 << 10) {
                return Err(too_large("CA certificates are limited to 16 KiB each"));
            }
            Ok(())
        }
        MetaCommand::FinishCaRotation { .. } => operator(principal, "replacing the cluster CA"),
        MetaCommand::OpenSession { tenant, .. } | MetaCommand::RenewSession { tenant, .. } | MetaCommand::CloseSession { tenant, .. } => {
            tenant_role(principal, *tenant, "upload snapshots", RoleSet::can_append)
        }
        MetaCommand::CommitSnapshot { tenant, record, .. } => {
            tenant_role(principal, *tenant, "commit snapshots", RoleSet::can_append)?;
            if record.summary.len() > MAX_SUMMARY_BYTES || record.refs.len() > MAX_REF_BLOBS {
                return Err(too_large(format!(
                    "snapshot summaries are limited to {MAX_SUMMARY_BYTES} bytes and {MAX_REF_BLOBS} reference lists"
                )));
            }
            if record.ref_digests.len() != record.refs.len() {
                return Err(WireError::new(ErrorCode::BadRequest, "a snapshot needs one digest per reference list"));
            }
            Ok(())
        }
        MetaCommand::ForgetSnapshots { tenant, ids } => {
            tenant_role(principal, *tenant, "forget snapshots", RoleSet::can_delete)?;
            if ids.len() > 100_000 {
                return Err(too_large("at most 100000 snapshots can be forgotten at once"));
            }
            Ok(())
        }
        MetaCommand::StoreKeyFile { tenant, text, .. } => {
            tenant_role(principal, *tenant, "replace the key file", RoleSet::can_delete)?;
            if text.len() > MAX_KEY_FILE_BYTES {
                return Err(too_large(format!("key files are limited to {MAX_KEY_FILE_BYTES} bytes")));
            }
            Ok(())
        }
        MetaCommand::ReserveNodeId
        | MetaCommand::ConsumeJoinToken { .. }
        | MetaCommand::CreateToken { .. }
        | MetaCommand::OpenSessionV1 { .. }
        | MetaCommand::CommitSnapshotV1 { .. }
        | MetaCommand::CommitSnapshotV2 { .. }
        | MetaCommand::RenewSessionV1 { .. }
        | MetaCommand::ExpireSessions { .. }
        | MetaCommand::PutKeyFile { .. } => {
            Err(WireError::new(ErrorCode::BadRequest, "this command is kept only to read old log entries and is not proposed any more"))
        }
    }
}

/// Checks `cmd` against `principal` (at `now_ms`, this node's clock) and the size of its encoding; the error is
/// what the caller sees.
pub fn check_proposal(state: &MetaState, principal: &Principal, cmd: &MetaCommand) -> Result<(), WireError> {
    authorize(state, principal, cmd)?;
    let size = postcard::to_stdvec(cmd).map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?.len();
    let limit = if matches!(cmd, MetaCommand::SetPlacement { .. }) { MAX_PLACEMENT_ENTRY_BYTES } else { MAX_ENTRY_BYTES };
    if size > limit {
        return Err(too_large(format!("the metadata change is {size} bytes; the limit is {limit}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::command::{InitCluster, MetaResponse};
    use strata_proto::{EcProfile, NodeAnnouncement, SessionId, SnapshotId, SnapshotRecord};

    fn state() -> (MetaState, TenantId) {
        let mut s = MetaState::default();
        let init = InitCluster {
            cluster_name: "c".into(),
            partition_bits: 1,
            generation_name: "g".into(),
            profile: EcProfile::DEFAULT,
            operator_token: [1; 32],
            now_ms: 0,
        };
        s.apply(&MetaCommand::Init(init));
        let MetaResponse::TenantId(t) = s.apply(&MetaCommand::CreateTenant { name: "t".into(), now_ms: 0 }) else { panic!() };
        (s, t)
    }

    fn token(tenant: Option<TenantId>, roles: &[Role], issuer: Actor) -> MetaCommand {
        MetaCommand::IssueToken {
            digest: [9; 32],
            tenant,
            roles: RoleSet::of(roles),
            expires_at_ms: None,
            label: "l".into(),
            now_ms: 1,
            issuer,
        }
    }

    fn denied_for(s: &MetaState, p: &Principal, cmd: &MetaCommand) -> bool {
        authorize(s, p, cmd).is_err_and(|e| e.code == ErrorCode::PermissionDenied)
    }

    #[test]
    fn a_node_certificate_cannot_mint_credentials_or_speak_for_another_node() {
        let (s, t) = state();
        let n = Principal::Node(NodeId(4));
        assert!(denied_for(&s, &n, &MetaCommand::CreateTenant { name: "x".into(), now_ms: 0 }));
        assert!(denied_for(&s, &n, &token(None, &[Role::Operator], Actor::Node(NodeId(4)))));
        assert!(denied_for(&s, &n, &token(Some(t), &[Role::Admin], Actor::Operator)), "a node cannot claim to be the operator");
        assert!(denied_for(&s, &n, &MetaCommand::CreateJoinToken { digest: [2; 32], expires_at_ms: 9 }));
        // Nor replace the CA, nor record another node's renewal onto a new one.
        let rotate = MetaCommand::BeginCaRotation { trusted: vec!["rogue".into()], cross_pem: "x".into(), now_ms: 0 };
        assert!(denied_for(&s, &n, &rotate));
        assert!(denied_for(&s, &n, &MetaCommand::FinishCaRotation { force: true, now_ms: 0 }));
        assert!(denied_for(&s, &n, &MetaCommand::RecordCaRenewal { node: NodeId(5), now_ms: 0 }));
        assert!(denied_for(&s, &n, &MetaCommand::AddGeneration { name: "g2".into(), profile: EcProfile::DEFAULT }));
        let other = NodeAnnouncement { id: NodeId(5), addr: "a:1".into(), zone: "z".into(), capacity_bytes: 1, generation: "g".into() };
        assert!(denied_for(&s, &n, &MetaCommand::RegisterNode(other.clone())));
        assert!(authorize(&s, &n, &MetaCommand::RegisterNode(NodeAnnouncement { id: NodeId(4), ..other })).is_ok());
        let drop = MetaCommand::DropSessions { sessions: vec![(SessionId(1), 0)] };
        assert!(denied_for(&s, &n, &drop), "node 4 is not a member yet");
        let mut with_node = s.clone();
        let me = NodeAnnouncement { id: NodeId(4), addr: "a:1".into(), zone: "z".into(), capacity_bytes: 1, generation: "g".into() };
        with_node.apply(&MetaCommand::RegisterNode(me));
        assert!(authorize(&with_node, &n, &drop).is_ok());
        let too_many = MetaCommand::DropSessions { sessions: vec![(SessionId(1), 0); MAX_DROPPED_SESSIONS + 1] };
        assert_eq!(authorize(&with_node, &n, &too_many).unwrap_err().code, ErrorCode::TooLarge);
        // Sessions end only by the leader's monotonic clock now: the wall-clock command is never proposed.
        assert!(authorize(&with_node, &n, &MetaCommand::ExpireSessions { now_ms: 1 }).is_err());
        assert!(denied_for(&s, &n, &MetaCommand::OpenSession { tenant: t, session: SessionId(1), now_ms: 0, lease_ms: 1 }));
    }

    #[test]
    fn operators_bootstrap_tenants_once_and_tenants_act_within_their_roles() {
        let (mut s, t) = state();
        let op = Principal::Operator;
        assert!(authorize(&s, &op, &token(Some(t), &[Role::Admin], Actor::Operator)).is_ok());
        assert!(denied_for(&s, &op, &token(Some(t), &[Role::Backup], Actor::Operator)), "operators issue no device tokens");
        s.bootstrapped.insert(t);
        assert!(denied_for(&s, &op, &token(Some(t), &[Role::Admin], Actor::Operator)), "only one bootstrap");
        let admin = Principal::Tenant { tenant: t, roles: RoleSet::of(&[Role::Admin]) };
        assert!(authorize(&s, &admin, &token(Some(t), &[Role::Backup], Actor::TenantAdmin(t))).is_ok());
        assert!(denied_for(&s, &admin, &token(Some(t), &[Role::Admin], Actor::TenantAdmin(t))));
        assert!(denied_for(&s, &admin, &token(Some(t), &[Role::Backup], Actor::Operator)), "the issuer must be who asks");
        assert!(denied_for(&s, &admin, &token(Some(TenantId(99)), &[Role::Backup], Actor::TenantAdmin(TenantId(99)))));
        let laptop = Principal::Tenant { tenant: t, roles: RoleSet::of(&[Role::Backup]) };
        assert!(authorize(&s, &laptop, &MetaCommand::OpenSession { tenant: t, session: SessionId(1), now_ms: 0, lease_ms: 1 }).is_ok());
        assert!(denied_for(&s, &laptop, &MetaCommand::ForgetSnapshots { tenant: t, ids: vec![] }));
        let key = MetaCommand::StoreKeyFile { tenant: t, text: "k".into(), check: [0; 32], proof: None, now_ms: 0 };
        assert!(denied_for(&s, &laptop, &key), "a backup token cannot replace the key file");
        assert!(authorize(&s, &admin, &key).is_ok());
        assert!(denied_for(&s, &laptop, &token(Some(t), &[Role::Restore], Actor::TenantAdmin(t))));
        let revoke = MetaCommand::RevokeToken { id: [0; 8], tenant: Some(t), by: Actor::TenantAdmin(t), now_ms: 0 };
        assert!(authorize(&s, &admin, &revoke).is_ok());
        assert!(denied_for(&s, &laptop, &revoke));
    }

    #[test]
    fn joins_need_their_token_and_legacy_commands_are_never_proposed() {
        let (mut s, _) = state();
        let admit = MetaCommand::AdmitNode {
            join_digest: [3; 32],
            now_ms: 0,
            addr: "a:1".into(),
            zone: "z".into(),
            capacity_bytes: 1,
            generation: "g".into(),
        };
        assert_eq!(authorize(&s, &Principal::Joining([3; 32]), &admit).unwrap_err().code, ErrorCode::Unauthenticated, "never issued");
        s.join_tokens.insert([3; 32], u64::MAX);
        assert!(authorize(&s, &Principal::Joining([3; 32]), &admit).is_ok());
        assert!(denied_for(&s, &Principal::Joining([4; 32]), &admit));
        assert!(denied_for(&s, &Principal::Node(NodeId(1)), &admit));
        for legacy in [MetaCommand::ReserveNodeId, MetaCommand::ConsumeJoinToken { digest: [3; 32], now_ms: 0 }] {
            assert!(authorize(&s, &Principal::Operator, &legacy).is_err());
        }
    }

    #[test]
    fn sizes_are_checked_before_anything_is_proposed() {
        let (s, t) = state();
        let admin = Principal::Tenant { tenant: t, roles: RoleSet::of(&[Role::Admin]) };
        let long_label = MetaCommand::IssueToken {
            digest: [9; 32],
            tenant: Some(t),
            roles: RoleSet::of(&[Role::Backup]),
            expires_at_ms: None,
            label: "x".repeat(MAX_LABEL_BYTES + 1),
            now_ms: 1,
            issuer: Actor::TenantAdmin(t),
        };
        assert_eq!(check_proposal(&s, &admin, &long_label).unwrap_err().code, ErrorCode::TooLarge);
        let record = |summary: usize, refs: usize| SnapshotRecord {
            id: SnapshotId([1; 16]),
            time_ms: 0,
            committed_ms: 0,
            summary: vec![0; summary],
            refs: vec![strata_proto::ChunkId([2; 32]); refs],
            ref_digests: vec![[3; 32]; refs],
        };
        let commit = |r| MetaCommand::CommitSnapshot { tenant: t, session: SessionId(1), record: r, now_ms: 0 };
        assert!(check_proposal(&s, &admin, &commit(record(1000, 10))).is_ok());
        assert_eq!(check_proposal(&s, &admin, &commit(record(MAX_SUMMARY_BYTES + 1, 1))).unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(check_proposal(&s, &admin, &commit(record(10, MAX_REF_BLOBS + 1))).unwrap_err().code, ErrorCode::TooLarge);
        let mut no_digests = record(10, 2);
        no_digests.ref_digests.clear();
        assert_eq!(check_proposal(&s, &admin, &commit(no_digests)).unwrap_err().code, ErrorCode::BadRequest);
        // The largest commit the limits allow still fits one log entry.
        assert!(check_proposal(&s, &admin, &commit(record(MAX_SUMMARY_BYTES, MAX_REF_BLOBS))).is_ok());
    }
}
