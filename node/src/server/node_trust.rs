//! Handlers for node trust: renewing a node's certificate, handing the CA key to a new voter, revoking a node.
//!
//! Only nodes holding the CA key sign or hand it on; a certificate is always signed for the node that the
//! caller's own certificate names (never for an id in the request), and the key goes only to a node that this
//! holder sees as a Raft voter, over the mutual-TLS connection that proved who it is.

use bytes::Bytes;
use strata_proto::{ErrorCode, NodeId, Request, Response, WireError};

use super::auth::{Caller, now_ms};
use crate::context::NodeContext;
use crate::meta::command::MetaCommand;
use crate::pki;

type Reply = Result<(Response, Bytes), WireError>;

fn not_holder(ctx: &NodeContext) -> WireError {
    WireError::new(ErrorCode::Unavailable, format!("{} does not hold the cluster CA key; ask a node that does", ctx.id))
}

/// Serves one node-trust request.
pub async fn dispatch(ctx: &NodeContext, caller: Caller, request: Request) -> Reply {
    match request {
        Request::RenewCertificate { csr_der } => {
            let node = caller.node()?;
            let ca = ctx.ca_key().ok_or_else(|| not_holder(ctx))?;
            pki::check_csr(&csr_der).map_err(|e| WireError::new(ErrorCode::BadRequest, e.to_string()))?;
            let cert_pem = pki::sign_csr(&ca, &csr_der, node, ctx.config.tls.cert_lifetime_secs)
                .map_err(|e| WireError::new(ErrorCode::BadRequest, e.to_string()))?;
            tracing::info!(%node, "signed a renewed certificate");
            Ok((Response::Certificate { cert_pem }, Bytes::new()))
        }
        Request::FetchCaKey => {
            let node = caller.node()?;
            let ca = ctx.ca_key().ok_or_else(|| not_holder(ctx))?;
            if !is_voter(ctx, node) {
                return Err(WireError::new(
                    ErrorCode::PermissionDenied,
                    format!("{node} is not a Raft voter here; only voters receive the cluster CA key"),
                ));
            }
            tracing::info!(%node, "handed the cluster CA key to a voter");
            Ok((Response::CaKey, Bytes::from(ca.key_pem.clone().into_bytes())))
        }
        Request::RevokeNode { node } => {
            caller.operator("revoking nodes")?;
            ctx.meta.write_as(caller.origin(), MetaCommand::RevokeNode { node, now_ms: now_ms() }).await.map_err(|e| e.to_wire())?;
            Ok((Response::Ok, Bytes::new()))
        }
        other => Err(WireError::new(ErrorCode::Internal, format!("{} is not a node-trust request", other.op_name()))),
    }
}

/// Whether `node` is a voter of the Raft membership as this node sees it.
pub fn is_voter(ctx: &NodeContext, node: NodeId) -> bool {
    let metrics = ctx.meta.raft.metrics();
    let m = metrics.borrow();
    m.membership_config.membership().voter_ids().any(|v| v == node.0)
}
