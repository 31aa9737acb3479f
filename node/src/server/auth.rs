//! Who is calling: a node (by its certificate), a tenant or an operator (by token), or nobody.
//!
//! Node-to-node requests require a certificate signed by the cluster CA (checked by TLS) that names a node.
//! Client requests carry a bearer token, looked up by digest in the replicated state. A token this replica does
//! not know yet may have been created a moment ago through another node, so before refusing it the node catches
//! up with the leader once (rate-limited, so garbage tokens cannot turn into a flood of Raft reads).

use std::time::{Duration, Instant};

use strata_proto::{ErrorCode, NodeId, Request, Role, RoleSet, Secret, TenantId, WireError};

use crate::context::NodeContext;
use crate::meta::state::TokenProblem;

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Another node of this cluster.
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
    /// A node asking to join, with the digest of the join token it presented.
    Joining([u8; 32]),
    /// No credentials (only `Ping`).
    Anonymous,
}

/// Minimum time between catch-up reads triggered by unknown tokens.
const BARRIER_INTERVAL: Duration = Duration::from_millis(500);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Authenticates the caller of `request`.
pub async fn authenticate(ctx: &NodeContext, peer: Option<NodeId>, auth: Option<&Secret>, request: &Request) -> Result<Caller, WireError> {
    if request.is_internal() {
        return peer.map(Caller::Node).ok_or_else(|| {
            WireError::new(
                ErrorCode::PermissionDenied,
                format!("{} is for cluster nodes only: a node certificate is required", request.op_name()),
            )
        });
    }
    if matches!(request, Request::Ping) {
        return Ok(Caller::Anonymous);
    }
    if matches!(request, Request::Join { .. }) {
        return auth
            .map(|s| Caller::Joining(s.digest()))
            .ok_or_else(|| WireError::new(ErrorCode::Unauthenticated, "join requires a join token"));
    }
    let Some(secret) = auth else {
        return Err(WireError::new(ErrorCode::Unauthenticated, format!("{} requires a token", request.op_name())));
    };
    let digest = secret.digest();
    let mut lookup = ctx.meta.reader.read(|s| s.token(&digest, now_ms()).cloned());
    if lookup == Err(TokenProblem::Unknown) && barrier_allowed(ctx) {
        if let Err(e) = ctx.meta.read_barrier().await {
            tracing::debug!(error = %e, "read barrier for an unknown token failed");
        }
        lookup = ctx.meta.reader.read(|s| s.token(&digest, now_ms()).cloned());
    }
    match lookup {
        Ok(t) => Ok(match t.tenant {
            Some(tenant) => Caller::Tenant { tenant, roles: t.roles },
            None if t.roles.allows(Role::Operator) => Caller::Operator,
            None => return Err(WireError::new(ErrorCode::PermissionDenied, "token has no tenant and no operator role")),
        }),
        Err(TokenProblem::Unknown) => Err(WireError::new(ErrorCode::Unauthenticated, "unknown token")),
        Err(TokenProblem::Expired) => Err(WireError::new(ErrorCode::TokenExpired, "the token has expired; ask an operator for a new one")),
    }
}

fn barrier_allowed(ctx: &NodeContext) -> bool {
    let mut last = ctx.last_token_barrier.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < BARRIER_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

impl Caller {
    /// The tenant, if the caller's roles satisfy `allowed`.
    pub fn tenant_with(self, what: &str, allowed: impl Fn(RoleSet) -> bool) -> Result<TenantId, WireError> {
        match self {
            Caller::Tenant { tenant, roles } if allowed(roles) => Ok(tenant),
            Caller::Tenant { .. } => Err(WireError::new(ErrorCode::PermissionDenied, format!("this token may not {what}"))),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, format!("{what} needs a tenant token"))),
        }
    }

    /// Succeeds for operators.
    pub fn operator(self, what: &str) -> Result<(), WireError> {
        match self {
            Caller::Operator => Ok(()),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, format!("{what} needs an operator token"))),
        }
    }

    /// The calling node.
    pub fn node(self) -> Result<NodeId, WireError> {
        match self {
            Caller::Node(n) => Ok(n),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, "node certificate required")),
        }
    }
}
