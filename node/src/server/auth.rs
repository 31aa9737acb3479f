//! Who is calling: a node (by its certificate), a tenant or an operator (by token), or nobody.
//!
//! Node-to-node requests require a certificate signed by the cluster CA (checked by TLS) that names a node, and
//! that node must be a member the cluster has not removed: a retired node's certificate opens nothing. Client
//! requests carry a bearer token, looked up by digest in the replicated state. A token (or node) this replica
//! does not know yet may have been created a moment ago through another node, so before refusing it the node
//! catches up with the leader once (rate-limited, so garbage cannot turn into a flood of Raft reads). The
//! caller keeps its credential, so a metadata write made on its behalf carries it to the leader, which checks
//! it again (`meta::authority`).

use std::time::{Duration, Instant};

use strata_proto::{ErrorCode, NodeId, NodeState, Request, Role, RoleSet, Secret, TenantId, WireError};

use crate::context::NodeContext;
use crate::meta::authority::{Actor, Origin};
use crate::meta::state::TokenProblem;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Another node of this cluster.
    Node(NodeId),
    /// A tenant token.
    Tenant {
        /// Its tenant.
        tenant: TenantId,
        /// Its roles.
        roles: RoleSet,
        /// The token itself, forwarded with metadata writes made on its behalf.
        token: Secret,
    },
    /// An operator token.
    Operator {
        /// The token itself.
        token: Secret,
    },
    /// A node asking to join, with the join token it presented.
    Joining(Secret),
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
        let node = peer.ok_or_else(|| {
            WireError::new(
                ErrorCode::PermissionDenied,
                format!("{} is for cluster nodes only: a node certificate is required", request.op_name()),
            )
        })?;
        return member(ctx, node, request).await.map(|()| Caller::Node(node));
    }
    // The trusted CA certificates are public (every handshake shows them).
    if matches!(request, Request::Ping | Request::GetTrust) {
        return Ok(Caller::Anonymous);
    }
    if matches!(request, Request::Join { .. }) {
        return auth.cloned().map(Caller::Joining).ok_or_else(|| WireError::new(ErrorCode::Unauthenticated, "join requires a join token"));
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
            Some(tenant) => Caller::Tenant { tenant, roles: t.roles, token: secret.clone() },
            None if t.roles.allows(Role::Operator) => Caller::Operator { token: secret.clone() },
            None => return Err(WireError::new(ErrorCode::PermissionDenied, "token has no tenant and no operator role")),
        }),
        Err(TokenProblem::Unknown) => Err(WireError::new(ErrorCode::Unauthenticated, "unknown or revoked token")),
        Err(TokenProblem::Expired) => Err(WireError::new(ErrorCode::TokenExpired, "the token has expired; ask an operator for a new one")),
    }
}

/// Whether `node` may make internal requests: a member the cluster has not removed. A node this replica does
/// not know yet may only announce itself, forward metadata writes (which the leader authorizes against the
/// node's membership) or take part in Raft (a replica that has not caught up knows nobody), after one
/// catch-up read.
async fn member(ctx: &NodeContext, node: NodeId, request: &Request) -> Result<(), WireError> {
    let state = |ctx: &NodeContext| ctx.meta.reader.read(|s| s.map.nodes.get(&node).map(|n| n.state));
    // Registering (directly or forwarded to the leader, which checks the node only registers itself) and
    // Raft are how a node becomes known in the first place: they need no catch-up read, which would stall a
    // replica that does not know its leader yet.
    let bootstrap = matches!(request, Request::RegisterNode { .. } | Request::Raft { .. } | Request::Meta);
    let mut known = state(ctx);
    if known.is_none() && !bootstrap && barrier_allowed(ctx) {
        if let Err(e) = ctx.meta.read_barrier().await {
            tracing::debug!(error = %e, "read barrier for an unknown node failed");
        }
        known = state(ctx);
    }
    match known {
        Some(NodeState::Removed) => {
            Err(WireError::new(ErrorCode::PermissionDenied, format!("{node} was removed from the cluster; its certificate opens nothing")))
        }
        Some(_) => Ok(()),
        None if bootstrap => Ok(()),
        None => Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("{node} is not a member of this cluster (yet): {} refused", request.op_name()),
        )),
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
    pub fn tenant_with(&self, what: &str, allowed: impl Fn(RoleSet) -> bool) -> Result<TenantId, WireError> {
        match self {
            Caller::Tenant { tenant, roles, .. } if allowed(*roles) => Ok(*tenant),
            Caller::Tenant { .. } => Err(WireError::new(ErrorCode::PermissionDenied, format!("this token may not {what}"))),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, format!("{what} needs a tenant token"))),
        }
    }

    /// Succeeds for operators.
    pub fn operator(&self, what: &str) -> Result<(), WireError> {
        match self {
            Caller::Operator { .. } => Ok(()),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, format!("{what} needs an operator token"))),
        }
    }

    /// The calling node.
    pub fn node(&self) -> Result<NodeId, WireError> {
        match self {
            Caller::Node(n) => Ok(*n),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, "node certificate required")),
        }
    }

    /// The credential a metadata write made on this caller's behalf carries to the leader.
    pub fn origin(&self) -> Origin {
        match self {
            Caller::Node(_) => Origin::Node,
            Caller::Tenant { token, .. } | Caller::Operator { token } => Origin::Token(token.clone()),
            Caller::Joining(secret) => Origin::Join(secret.clone()),
            // Never authorises anything: the leader finds no such token.
            Caller::Anonymous => Origin::Token(Secret(String::new())),
        }
    }

    /// Who acts, for the audit log: an operator or a tenant admin.
    pub fn actor(&self) -> Result<Actor, WireError> {
        match self {
            Caller::Operator { .. } => Ok(Actor::Operator),
            Caller::Tenant { tenant, roles, .. } if roles.allows(Role::Admin) => Ok(Actor::TenantAdmin(*tenant)),
            Caller::Node(n) => Ok(Actor::Node(*n)),
            _ => Err(WireError::new(ErrorCode::PermissionDenied, "this needs an operator token or a tenant admin token")),
        }
    }
}
