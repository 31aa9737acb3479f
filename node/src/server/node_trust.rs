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
        Request::RotateCa => {
            caller.operator("replacing the cluster CA")?;
            rotate(ctx, &caller).await?;
            Ok((Response::Ok, Bytes::new()))
        }
        Request::FinishCaRotation { force } => {
            caller.operator("replacing the cluster CA")?;
            ctx.meta.write_as(caller.origin(), MetaCommand::FinishCaRotation { force, now_ms: now_ms() }).await.map_err(|e| e.to_wire())?;
            tracing::info!(force, "finished replacing the cluster CA");
            Ok((Response::Ok, Bytes::new()))
        }
        Request::GetTrust => Ok((Response::Trust { ca_pem: ctx.trusted_pem() }, Bytes::new())),
        other => Err(WireError::new(ErrorCode::Internal, format!("{} is not a node-trust request", other.op_name()))),
    }
}

/// Begins a CA rotation from this node, which must hold the current CA key: makes the new CA and its
/// certificate signed by the old key, keeps the new key beside the old one (`ca.key.next`) until the change
/// is committed, then puts it in place and records this node as its first holder. A crash in between leaves
/// `ca.key.next`, which custody adopts once the change is applied (`ca_custody`).
async fn rotate(ctx: &NodeContext, caller: &Caller) -> Result<(), WireError> {
    let internal = |e: &dyn std::fmt::Display| WireError::new(ErrorCode::Internal, format!("rotating the CA: {e}"));
    let current = ctx.ca_key().ok_or_else(|| not_holder(ctx))?;
    let (rotating, cluster, trusted) =
        ctx.meta.reader.read(|s| (s.ca_cross.is_some(), s.cluster_name.clone().unwrap_or_default(), s.cas.clone()));
    if rotating {
        return Err(WireError::new(ErrorCode::Conflict, "a CA rotation is in progress; finish it first (`strata admin ca finish`)"));
    }
    let now = now_ms();
    let (new, cross_pem) = pki::generate_successor_ca(&current, &cluster, now).map_err(|e| internal(&e))?;
    let key_path = ctx.config.tls.ca_key_path();
    let next_path = crate::ca_custody::next_key_path(&key_path);
    crate::identity::replace_file(&next_path, new.key_pem.as_bytes(), true).map_err(|e| internal(&e))?;
    let mut trusted = if trusted.is_empty() { pki::pem_blocks(&ctx.ca_pem) } else { trusted };
    trusted.push(new.cert_pem.clone());
    let begun = ctx.meta.write_as(caller.origin(), MetaCommand::BeginCaRotation { trusted, cross_pem, now_ms: now }).await;
    if let Err(e) = begun {
        let _ = std::fs::remove_file(&next_path);
        return Err(e.to_wire());
    }
    // Applied here too, then the new key replaces the old one (or custody does it at its next tick).
    if let Err(e) = ctx.meta.read_barrier().await {
        tracing::warn!(error = %e, "the CA rotation is committed but not applied here yet; custody will adopt the new key");
    }
    crate::ca_custody::adopt_next_key(ctx).map_err(|e| internal(&e))?;
    tracing::info!("began replacing the cluster CA; nodes renew onto the new one");
    Ok(())
}

/// Whether `node` is a voter of the Raft membership as this node sees it.
pub fn is_voter(ctx: &NodeContext, node: NodeId) -> bool {
    let metrics = ctx.meta.raft.metrics();
    let m = metrics.borrow();
    m.membership_config.membership().voter_ids().any(|v| v == node.0)
}
