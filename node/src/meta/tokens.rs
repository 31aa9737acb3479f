//! Applying token and audit commands: issuing and revoking tokens, and the bounded audit log of who changed
//! what about credentials, tenants and nodes.
//!
//! Like the rest of `MetaState::apply`, these are deterministic: the issuer and the time come in the command,
//! and the authority check (`authority.rs`) has already decided that the issuer may do it.

use strata_proto::{ErrorCode, Role, RoleSet, TenantId};

use super::authority::Actor;
use super::command::{Digest, MetaResponse, TokenId, token_id};
use super::state::{AuditRecord, MetaState, TokenRecord};

/// Audit records kept; older ones are dropped (they remain in the node logs).
pub const AUDIT_LOG_LEN: usize = 1000;
/// Tokens one tenant may hold at once.
pub const MAX_TOKENS_PER_TENANT: usize = 10_000;

/// A token to issue.
pub struct NewToken<'a> {
    /// Its digest.
    pub digest: &'a Digest,
    /// Tenant scope, `None` for an operator token.
    pub tenant: Option<TenantId>,
    /// Roles.
    pub roles: RoleSet,
    /// Expiry.
    pub expires_at_ms: Option<u64>,
    /// Label.
    pub label: &'a str,
}

impl MetaState {
    /// Appends an audit record, dropping the oldest beyond [`AUDIT_LOG_LEN`].
    pub(super) fn audit(&mut self, at_ms: u64, actor: Actor, what: String) {
        tracing::info!(target: "audit", %actor, what = %what, "audit");
        self.audit.push_back(AuditRecord { at_ms, actor, what });
        while self.audit.len() > AUDIT_LOG_LEN {
            self.audit.pop_front();
        }
    }

    pub(super) fn issue_token(&mut self, t: NewToken<'_>, now_ms: u64, issuer: Actor) -> MetaResponse {
        if let Some(tenant) = t.tenant {
            if !self.tenants.contains_key(&tenant) {
                return MetaResponse::reject(ErrorCode::NotFound, format!("{tenant} does not exist"));
            }
            if self.tokens.values().filter(|r| r.tenant == Some(tenant)).count() >= MAX_TOKENS_PER_TENANT {
                return MetaResponse::reject(
                    ErrorCode::TooLarge,
                    format!("{tenant} holds {MAX_TOKENS_PER_TENANT} tokens, the limit; revoke unused ones first"),
                );
            }
            // The operator's one tenant token is its first admin token.
            if issuer == Actor::Operator {
                if self.bootstrapped.contains(&tenant) {
                    return MetaResponse::reject(ErrorCode::PermissionDenied, format!("{tenant} already received its first admin token"));
                }
                self.bootstrapped.insert(tenant);
            }
        }
        if self.tokens.contains_key(t.digest) {
            return MetaResponse::reject(ErrorCode::Conflict, "a token with this digest exists");
        }
        let record = TokenRecord {
            tenant: t.tenant,
            roles: t.roles,
            expires_at_ms: t.expires_at_ms,
            label: t.label.to_owned(),
            created_at_ms: now_ms,
        };
        self.tokens.insert(*t.digest, record);
        let scope = t.tenant.map(|x| x.to_string()).unwrap_or_else(|| "the cluster".into());
        let roles: Vec<String> = t.roles.roles().iter().map(Role::to_string).collect();
        let id = hex::encode(token_id(t.digest));
        self.audit(now_ms, issuer, format!("issued token {id} ({}) for {scope}, labelled {:?}", roles.join("+"), t.label));
        MetaResponse::Ok
    }

    pub(super) fn revoke_token(&mut self, id: &TokenId, tenant: Option<TenantId>, by: Actor, now_ms: u64) -> MetaResponse {
        let matching: Vec<Digest> =
            self.tokens.iter().filter(|(d, r)| token_id(d) == *id && (tenant.is_none() || r.tenant == tenant)).map(|(d, _)| *d).collect();
        let [digest] = matching[..] else {
            return MetaResponse::reject(ErrorCode::NotFound, format!("no token {} that you may revoke", hex::encode(id)));
        };
        let record = &self.tokens[&digest];
        let tenant_admin = record.tenant.filter(|_| record.roles.allows(Role::Admin));
        if let Some(tenant) = tenant_admin
            && by != Actor::Operator
        {
            // A tenant has one admin token (its admins cannot issue another), so revoking it itself would
            // leave nobody able to forget snapshots or issue and revoke device tokens.
            return MetaResponse::reject(
                ErrorCode::Conflict,
                format!(
                    "this is {tenant}'s admin token, its only one; an operator can revoke it (a leaked admin token) and \
                     hand the tenant a new one"
                ),
            );
        }
        if record.tenant.is_none() {
            let operators = self.tokens.values().filter(|r| r.tenant.is_none() && r.roles.allows(Role::Operator)).count();
            if operators <= 1 {
                return MetaResponse::reject(
                    ErrorCode::Conflict,
                    "this is the last operator token; create another one before revoking it (`strata admin token create --operator`)",
                );
            }
        }
        let label = record.label.clone();
        self.tokens.remove(&digest);
        self.audit(now_ms, by.clone(), format!("revoked token {} labelled {label:?}", hex::encode(id)));
        if let Some(tenant) = tenant_admin
            && !self.tokens.values().any(|r| r.tenant == Some(tenant) && r.roles.allows(Role::Admin))
        {
            // An operator revoked a (leaked) admin token: the tenant may receive a new first admin token.
            self.bootstrapped.remove(&tenant);
            self.audit(now_ms, by, format!("{tenant} has no admin token left; an operator may issue it a new one"));
        }
        MetaResponse::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::command::{InitCluster, MetaCommand};
    use strata_proto::EcProfile;

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

    fn issue(digest: u8, tenant: Option<TenantId>, roles: &[Role], issuer: Actor) -> MetaCommand {
        MetaCommand::IssueToken {
            digest: [digest; 32],
            tenant,
            roles: RoleSet::of(roles),
            expires_at_ms: None,
            label: format!("token {digest}"),
            now_ms: 7,
            issuer,
        }
    }

    fn rejected(r: MetaResponse, code: ErrorCode) -> bool {
        matches!(r, MetaResponse::Rejected(e) if e.code == code)
    }

    #[test]
    fn the_operator_bootstraps_a_tenant_once_and_everything_is_audited() {
        let (mut s, t) = state();
        assert_eq!(s.apply(&issue(2, Some(t), &[Role::Admin], Actor::Operator)), MetaResponse::Ok);
        assert!(rejected(s.apply(&issue(3, Some(t), &[Role::Admin], Actor::Operator)), ErrorCode::PermissionDenied));
        assert_eq!(s.apply(&issue(4, Some(t), &[Role::Backup], Actor::TenantAdmin(t))), MetaResponse::Ok);
        assert!(s.token(&[4; 32], 8).is_ok());
        let audit: Vec<String> = s.audit.iter().map(|r| format!("{}: {}", r.actor, r.what)).collect();
        assert!(audit[0].starts_with("an operator: issued token 0202020202020202 (admin) for tenant-1"), "{audit:?}");
        assert!(audit[1].contains("an admin of tenant-1: issued token 0404040404040404 (backup)"), "{audit:?}");
    }

    #[test]
    fn revocation_is_scoped_and_keeps_an_operator() {
        let (mut s, t) = state();
        s.apply(&issue(2, Some(t), &[Role::Admin], Actor::Operator));
        s.apply(&issue(4, Some(t), &[Role::Backup], Actor::TenantAdmin(t)));
        let MetaResponse::TenantId(other) = s.apply(&MetaCommand::CreateTenant { name: "u".into(), now_ms: 0 }) else { panic!() };
        let revoke = |id: u8, tenant, by| MetaCommand::RevokeToken { id: [id; 8], tenant, by, now_ms: 9 };
        // Another tenant's admin cannot see, let alone revoke, this tenant's token.
        assert!(rejected(s.apply(&revoke(4, Some(other), Actor::TenantAdmin(other))), ErrorCode::NotFound));
        assert_eq!(s.apply(&revoke(4, Some(t), Actor::TenantAdmin(t))), MetaResponse::Ok);
        assert!(s.token(&[4; 32], 10).is_err(), "a revoked token no longer authenticates");
        // A tenant's one admin token cannot be revoked by the tenant; an operator can (a leaked admin token),
        // and may then hand the tenant a new one, once.
        assert!(rejected(s.apply(&revoke(2, Some(t), Actor::TenantAdmin(t))), ErrorCode::Conflict));
        assert!(s.token(&[2; 32], 10).is_ok());
        assert_eq!(s.apply(&revoke(2, Some(t), Actor::Operator)), MetaResponse::Ok);
        assert!(s.token(&[2; 32], 10).is_err());
        assert_eq!(s.apply(&issue(6, Some(t), &[Role::Admin], Actor::Operator)), MetaResponse::Ok);
        assert!(rejected(s.apply(&issue(7, Some(t), &[Role::Admin], Actor::Operator)), ErrorCode::PermissionDenied));
        // The last operator token cannot go; with a second one it can.
        assert!(rejected(s.apply(&revoke(1, None, Actor::Operator)), ErrorCode::Conflict));
        assert_eq!(s.apply(&issue(5, None, &[Role::Operator], Actor::Operator)), MetaResponse::Ok);
        assert_eq!(s.apply(&revoke(1, None, Actor::Operator)), MetaResponse::Ok);
        assert!(s.audit.iter().any(|r| r.what.contains("revoked token 0101010101010101")));
    }

    #[test]
    fn the_audit_log_is_bounded() {
        let (mut s, _) = state();
        for i in 0..(AUDIT_LOG_LEN + 50) {
            s.audit(i as u64, Actor::Operator, format!("event {i}"));
        }
        assert_eq!(s.audit.len(), AUDIT_LOG_LEN);
        assert_eq!(s.audit.front().map(|r| r.at_ms), Some(50));
    }
}
