//! Renewing this node's certificate while it runs, before it expires.
//!
//! Node certificates are short-lived, so a certificate that leaks or outlives its node stops opening anything
//! on its own. When a third of its lifetime is left, the node makes a new key pair, has a node holding the CA
//! key sign it (itself, if it holds the key), writes the new pair to its files and installs it on its endpoint
//! and connection pool (`identity`). Failures are logged and retried on the next tick; the expiry is exported
//! as `strata_tls_cert_expiry_timestamp_seconds` for alerting.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use strata_client::RpcPool;
use strata_proto::{NodeState, Request, Response};
use tokio::sync::watch;

use crate::context::NodeContext;
use crate::identity::Identity;
use crate::pki;

/// Checks the certificate every `lifetime / 10` (at most a minute) and renews it when a third is left.
pub async fn run(
    ctx: Arc<NodeContext>,
    mut identity: Identity,
    endpoint: quinn::Endpoint,
    pool: Arc<RpcPool>,
    mut stop: watch::Receiver<bool>,
) {
    let lifetime = ctx.config.tls.cert_lifetime_secs;
    let tick = Duration::from_secs((lifetime / 10).clamp(1, 60));
    loop {
        let not_after = match identity.not_after() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read this node's certificate expiry");
                i64::MAX
            }
        };
        ctx.metrics.cert_expiry.set(not_after);
        let left = not_after.saturating_sub(crate::server::now_ms() as i64 / 1000);
        if left < (lifetime / 3) as i64 {
            match renew(&ctx, &identity, &pool).await {
                Ok(renewed) => match install(&ctx, &renewed, &endpoint, &pool) {
                    Ok(()) => {
                        tracing::info!(expires_in_s = lifetime, "renewed this node's certificate");
                        identity = renewed;
                        continue;
                    }
                    Err(e) => tracing::error!(error = %e, "a renewed certificate could not be installed; keeping the current one"),
                },
                Err(e) => tracing::warn!(error = %e, left_s = left, "could not renew this node's certificate yet; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}

fn install(ctx: &NodeContext, renewed: &Identity, endpoint: &quinn::Endpoint, pool: &RpcPool) -> anyhow::Result<()> {
    renewed.save(&ctx.config.tls.node_cert, &ctx.config.tls.node_key)?;
    renewed.install(endpoint, pool, &ctx.config.limits, &ctx.revocations)
}

/// A new key pair with a certificate for it, signed here or by a holder of the CA key.
async fn renew(ctx: &NodeContext, current: &Identity, pool: &RpcPool) -> anyhow::Result<Identity> {
    let (key, csr) = pki::new_csr()?;
    let cert_pem = match ctx.ca_key() {
        Some(ca) => pki::sign_csr(&ca, &csr, ctx.id, ctx.config.tls.cert_lifetime_secs)?,
        None => signed_by_a_holder(ctx, pool, csr).await?,
    };
    let der = strata_client::tls::certs_from_pem(&cert_pem, "renewed certificate")?;
    anyhow::ensure!(der.first().and_then(|c| pki::node_id_of(c)) == Some(ctx.id), "the renewed certificate does not name this node");
    Ok(Identity { ca_pem: current.ca_pem.clone(), cert_pem, key_pem: key.serialize_pem() })
}

async fn signed_by_a_holder(ctx: &NodeContext, pool: &RpcPool, csr: Vec<u8>) -> anyhow::Result<String> {
    let holders: Vec<(strata_proto::NodeId, String)> = ctx.meta.reader.read(|s| {
        s.ca_holders
            .iter()
            .filter_map(|n| s.map.nodes.get(n))
            .filter(|d| d.state == NodeState::Active && d.id != ctx.id)
            .map(|d| (d.id, d.addr.clone()))
            .collect()
    });
    let mut last = None;
    for (node, addr) in holders {
        let request = Request::RenewCertificate { csr_der: csr.clone() };
        match pool.call_named(&addr, &pki::node_dns_name(node), None, request, Bytes::new()).await {
            Ok(reply) => match reply.response {
                Response::Certificate { cert_pem } => return Ok(cert_pem),
                other => last = Some(anyhow::anyhow!("{node} answered {other:?}")),
            },
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("asking {node}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node holding the CA key is known"))).context("no CA key holder signed the renewal")
}
