//! Admitting a new node: one-time join tokens and certificate signing.
//!
//! A join token is `stj1_<secret>_<CA fingerprint>`. The secret authenticates the new node to the cluster (the
//! cluster stores only its digest and uses it up atomically through Raft); the fingerprint lets the new node
//! authenticate the cluster before it trusts anything, by pinning the CA its seed presents. The new node sends
//! a certificate signing request, so its private key never leaves it.

use bytes::Bytes;
use strata_proto::{ErrorCode, Request, Response, Secret, WireError};

use super::auth::{Caller, now_ms};
use crate::context::NodeContext;
use crate::meta::command::{MetaCommand, MetaResponse};
use crate::pki;

/// A fresh random secret with a type prefix, e.g. `stk1_<64 hex digits>`.
pub fn new_secret(prefix: &str) -> Secret {
    Secret(format!("{prefix}_{}", hex::encode(rand::random::<[u8; 32]>())))
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    text: String,
    ca_fingerprint: [u8; 32],
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

impl JoinToken {
    /// A new token for the cluster whose CA certificate is `ca_pem`.
    pub fn create(ca_pem: &str) -> Result<Self, WireError> {
        let ca =
            strata_transport::tls::certs_from_pem(ca_pem, "cluster CA").map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
        let fp = strata_transport::tls::fingerprint(&ca[0]);
        let secret = new_secret("stj1");
        Ok(JoinToken { text: format!("{}_{}", secret.expose(), hex::encode(fp)), ca_fingerprint: fp })
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || "not a join token (expected stj1_<secret>_<fingerprint>)".to_string();
        let rest = text.trim().strip_prefix("stj1_").ok_or_else(bad)?;
        let (secret, fp) = rest.split_once('_').ok_or_else(bad)?;
        if secret.len() != 64 || hex::decode(secret).is_err() {
            return Err(bad());
        }
        let mut ca_fingerprint = [0u8; 32];
        hex::decode_to_slice(fp, &mut ca_fingerprint).map_err(|_| bad())?;
        Ok(JoinToken { text: text.trim().to_owned(), ca_fingerprint })
    }

    /// The secret sent with the join request.
    pub fn secret(&self) -> Secret {
        Secret(self.text.clone())
    }

    /// Fingerprint of the cluster CA to pin.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        self.ca_fingerprint
    }
}

/// Serves `Request::Join`. Everything that can be checked without writing is checked first, the join token
/// included (an unknown token never reaches the Raft log); then one command uses the token up, assigns the
/// node id and registers the node, and the certificate is signed for that id.
pub async fn handle(ctx: &NodeContext, request: Request, caller: Caller) -> Result<(Response, Bytes), WireError> {
    let Request::Join { csr_der, addr, zone, capacity_bytes, generation } = request else {
        return Err(WireError::new(ErrorCode::Internal, "join handler called for another request"));
    };
    let Caller::Joining(secret) = &caller else {
        return Err(WireError::new(ErrorCode::Unauthenticated, "join requires a join token"));
    };
    if !ctx.join_rate.try_take() {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!("this node serves at most {} join requests a minute; retry shortly", ctx.config.limits.join_requests_per_minute),
        ));
    }
    let Some(ca) = ctx.ca_key() else {
        // Only nodes holding the CA key sign certificates: name them (the joiner pinned the CA, so it can trust
        // whichever of them it reaches).
        let addrs: Vec<String> = ctx.meta.reader.read(|s| {
            s.ca_holders
                .iter()
                .filter_map(|n| s.map.nodes.get(n))
                .filter(|d| d.state == strata_proto::NodeState::Active)
                .map(|d| d.addr.clone())
                .collect()
        });
        if addrs.is_empty() {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!("{} does not hold the cluster CA key and knows no node that does", ctx.id),
            ));
        }
        return Ok((Response::JoinElsewhere { addrs }, Bytes::new()));
    };
    check_join_token(ctx, &secret.digest()).await?;
    if ctx.meta.reader.read(|s| s.map.generation_by_name(&generation).is_none()) {
        return Err(WireError::new(ErrorCode::NotFound, format!("generation {generation:?} does not exist")));
    }
    if addr.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) || zone.trim().is_empty() || capacity_bytes == 0
    {
        return Err(WireError::new(ErrorCode::BadRequest, "join needs an address (host:port), a zone and a positive capacity"));
    }
    pki::check_csr(&csr_der).map_err(|e| WireError::new(ErrorCode::BadRequest, e.to_string()))?;
    let cmd =
        MetaCommand::AdmitNode { join_digest: secret.digest(), now_ms: now_ms(), addr: addr.clone(), zone, capacity_bytes, generation };
    let node_id = match ctx.meta.write_as(caller.origin(), cmd).await.map_err(|e| e.to_wire())? {
        MetaResponse::NodeId(n) => n,
        other => return Err(WireError::new(ErrorCode::Internal, format!("unexpected result {other:?}"))),
    };
    let cert_pem = pki::sign_csr(&ca, &csr_der, node_id, ctx.config.tls.cert_lifetime_secs)
        .map_err(|e| WireError::new(ErrorCode::BadRequest, e.to_string()))?;
    let seeds = ctx.meta.reader.read(|s| s.map.nodes.values().filter(|n| n.id != node_id).map(|n| n.addr.clone()).collect());
    tracing::info!(node = %node_id, %addr, "admitted a new node");
    Ok((Response::Joined { node_id, cert_pem, ca_pem: ctx.trusted_pem(), seeds }, Bytes::new()))
}

/// Refuses a join token this replica does not hold as valid, after catching up once if it is not known yet
/// (it may have been created through another node a moment ago). Nothing is written.
async fn check_join_token(ctx: &NodeContext, digest: &[u8; 32]) -> Result<(), WireError> {
    let lookup = |ctx: &NodeContext| ctx.meta.reader.read(|s| s.join_tokens.get(digest).copied());
    let mut expiry = lookup(ctx);
    if expiry.is_none() {
        ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
        expiry = lookup(ctx);
    }
    match expiry {
        None => Err(WireError::new(ErrorCode::Unauthenticated, "unknown or already used join token")),
        Some(t) if t <= now_ms() => Err(WireError::new(ErrorCode::TokenExpired, "the join token has expired; create a new one")),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_reject_garbage() {
        let ca = pki::generate_ca("t").unwrap();
        let t = JoinToken::create(&ca.cert_pem).unwrap();
        let back = JoinToken::parse(t.secret().expose()).unwrap();
        assert_eq!(back, t);
        assert!(!format!("{t:?}").contains("stj1"));
        for bad in ["", "stk1_aa_bb", "stj1_zz_00", &format!("stj1_{}_{}", "a".repeat(64), "b".repeat(10))] {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
    }
}
