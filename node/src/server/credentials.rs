//! Handlers for tenants and credentials: creating a tenant with its first admin token, creating, listing and
//! revoking tokens, join tokens, and the audit log.
//!
//! The rules (who may issue which token) live in `meta::authority`, checked before proposing and again by the
//! leader; these handlers only turn requests into commands and results into replies. Secrets are generated
//! here, returned once, and only their digests are written to the log.

use bytes::Bytes;
use strata_proto::{AuditEntry, ErrorCode, Request, Response, Role, RoleSet, TokenInfo, WireError};

use super::auth::{Caller, now_ms};
use super::join;
use crate::context::NodeContext;
use crate::meta::authority::Actor;
use crate::meta::command::{MetaCommand, MetaResponse, token_id};

type Reply = Result<(Response, Bytes), WireError>;

/// Lifetime of backup and restore tokens created without one: a device that disappears loses its access.
pub const DEFAULT_DEVICE_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;

fn ok(r: Response) -> Reply {
    Ok((r, Bytes::new()))
}

/// Serves one credentials request.
pub async fn dispatch(ctx: &NodeContext, caller: Caller, request: Request) -> Reply {
    match request {
        Request::CreateTenant { name } => create_tenant(ctx, caller, name).await,
        Request::CreateToken { tenant, roles, ttl_secs, label } => {
            // A tenant admin's token without a tenant is for its own tenant.
            let tenant = match (&caller, tenant) {
                (Caller::Tenant { tenant: own, .. }, None) if !roles.allows(Role::Operator) => Some(*own),
                (_, t) => t,
            };
            let token = issue(ctx, &caller, tenant, roles, ttl_secs, label).await?;
            ok(Response::TokenCreated { token })
        }
        Request::ListTokens { tenant } => list_tokens(ctx, caller, tenant).await,
        Request::RevokeToken { id } => {
            let (tenant, by) = match &caller {
                Caller::Operator { .. } => (None, Actor::Operator),
                Caller::Tenant { tenant, roles, .. } if roles.allows(Role::Admin) => (Some(*tenant), Actor::TenantAdmin(*tenant)),
                _ => return Err(WireError::new(ErrorCode::PermissionDenied, "revoking tokens needs an operator or a tenant admin token")),
            };
            ctx.meta
                .write_as(caller.origin(), MetaCommand::RevokeToken { id, tenant, by, now_ms: now_ms() })
                .await
                .map_err(|e| e.to_wire())?;
            ok(Response::Ok)
        }
        Request::CreateJoinToken { ttl_secs } => {
            caller.operator("creating join tokens")?;
            let token = join::JoinToken::create(&ctx.trusted_pem())?;
            let cmd = MetaCommand::CreateJoinToken {
                digest: token.secret().digest(),
                expires_at_ms: now_ms().saturating_add(ttl_secs.saturating_mul(1000)),
            };
            ctx.meta.write_as(caller.origin(), cmd).await.map_err(|e| e.to_wire())?;
            ok(Response::TokenCreated { token: token.secret() })
        }
        Request::ListAudit => {
            caller.operator("reading the audit log")?;
            ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
            let entries = ctx.meta.reader.read(|s| {
                s.audit.iter().map(|r| AuditEntry { at_ms: r.at_ms, actor: r.actor.to_string(), what: r.what.clone() }).collect()
            });
            ok(Response::Audit(entries))
        }
        other => Err(WireError::new(ErrorCode::Internal, format!("{} is not a credentials request", other.op_name()))),
    }
}

/// Creates a tenant and its first admin token, the only tenant token an operator ever obtains.
async fn create_tenant(ctx: &NodeContext, caller: Caller, name: String) -> Reply {
    caller.operator("creating tenants")?;
    let tenant =
        match ctx.meta.write_as(caller.origin(), MetaCommand::CreateTenant { name, now_ms: now_ms() }).await.map_err(|e| e.to_wire())? {
            MetaResponse::TenantId(t) => t,
            other => return Err(WireError::new(ErrorCode::Internal, format!("unexpected result {other:?}"))),
        };
    let admin_token = issue(ctx, &caller, Some(tenant), RoleSet::of(&[Role::Admin]), Some(0), "first admin token".into()).await?;
    ok(Response::TenantCreated { tenant, admin_token })
}

/// Issues a token on behalf of `caller` (the authority rules decide whether it may).
async fn issue(
    ctx: &NodeContext,
    caller: &Caller,
    tenant: Option<strata_proto::TenantId>,
    roles: RoleSet,
    ttl_secs: Option<u64>,
    label: String,
) -> Result<strata_proto::Secret, WireError> {
    let issuer = caller.actor()?;
    let ttl = match ttl_secs {
        Some(0) => None,
        Some(t) => Some(t),
        None if roles.allows(Role::Admin) || roles.allows(Role::Operator) => None,
        None => Some(DEFAULT_DEVICE_TOKEN_TTL_SECS),
    };
    let token = join::new_secret("stk1");
    let now = now_ms();
    let cmd = MetaCommand::IssueToken {
        digest: token.digest(),
        tenant,
        roles,
        expires_at_ms: ttl.map(|t| now.saturating_add(t.saturating_mul(1000))),
        label,
        now_ms: now,
        issuer,
    };
    ctx.meta.write_as(caller.origin(), cmd).await.map_err(|e| e.to_wire())?;
    Ok(token)
}

async fn list_tokens(ctx: &NodeContext, caller: Caller, filter: Option<strata_proto::TenantId>) -> Reply {
    let scope = match &caller {
        Caller::Operator { .. } => filter,
        Caller::Tenant { tenant, roles, .. } if roles.allows(Role::Admin) => Some(*tenant),
        _ => return Err(WireError::new(ErrorCode::PermissionDenied, "listing tokens needs an operator or a tenant admin token")),
    };
    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    let tokens = ctx.meta.reader.read(|s| {
        s.tokens
            .iter()
            .filter(|(_, t)| scope.is_none() || t.tenant == scope)
            .map(|(d, t)| TokenInfo {
                id: token_id(d),
                tenant: t.tenant,
                roles: t.roles,
                label: t.label.clone(),
                created_at_ms: t.created_at_ms,
                expires_at_ms: t.expires_at_ms,
            })
            .collect()
    });
    ok(Response::Tokens(tokens))
}
