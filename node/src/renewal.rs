//! Renewing this node's certificate while it runs, before it expires.
//!
//! Node certificates are short-lived (30 days by default). That bounds a certificate nobody renews, such as one
//! left on a decommissioned disk; whoever holds a certificate and its key can renew it, so a stolen one is
//! stopped by revoking its node. When a third of the lifetime is left, or at once when a CA rotation made
//! another CA the issuing one, the node makes a new key pair, has a node holding the CA key sign it (itself,
//! if it holds the key), writes the new pair to its files and installs it on its endpoint and connection pool
//! (`identity`). Failures are logged and retried on the next tick; the expiry is exported as
//! `strata_tls_cert_expiry_timestamp_seconds` for alerting. The same loop keeps the node's trusted CAs (file,
//! endpoint, pool) equal to the cluster's, and closes connections a finished rotation no longer trusts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use strata_proto::{NodeState, Request, Response};
use strata_transport::RpcPool;
use tokio::sync::watch;

use crate::context::NodeContext;
use crate::identity::Identity;
use crate::pki;

/// Checks the certificate every second and renews it when a third of its lifetime is left,
/// or at once when a CA rotation made another CA the issuing one; follows the cluster's trusted CAs.
pub async fn run(
    ctx: Arc<NodeContext>,
    mut identity: Identity,
    endpoint: quinn::Endpoint,
    pool: Arc<RpcPool>,
    mut stop: watch::Receiver<bool>,
) {
    let lifetime = ctx.config.tls.cert_lifetime_secs;
    // Every second: following the trusted CAs must be quick (a finished rotation cuts off the old CA), and
    // the checks cost a few reads of the applied state.
    let tick = Duration::from_secs(1);
    loop {
        if let Err(e) = follow_trust(&ctx, &mut identity, &endpoint, &pool) {
            tracing::error!(error = %e, "could not follow the cluster's trusted CAs; will retry");
        }
        let not_after = match identity.not_after() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read this node's certificate expiry");
                i64::MAX
            }
        };
        ctx.metrics.cert_expiry.set(not_after);
        let left = not_after.saturating_sub(crate::server::now_ms() as i64 / 1000);
        let issuing = ctx.issuing_pem();
        let rotating = ctx.cross_pem().is_some();
        let stale_ca = rotating && !identity.issued_by(&issuing);
        if rotating && !stale_ca {
            record_renewal(&ctx).await;
        }
        if left < (lifetime / 3) as i64 || stale_ca {
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

/// Keeps this node's trusted CAs (its `tls.ca_cert` file, so a restart trusts them too, and the running
/// endpoint and pool) and the cross certificate it sends equal to the cluster's.
fn follow_trust(ctx: &NodeContext, identity: &mut Identity, endpoint: &quinn::Endpoint, pool: &RpcPool) -> anyhow::Result<()> {
    let (trusted, cross) = (ctx.trusted_pem(), ctx.cross_pem());
    if trusted == identity.ca_pem && cross == identity.cross_pem {
        return Ok(());
    }
    let next = Identity { ca_pem: trusted, cross_pem: cross, ..identity.clone() };
    crate::identity::replace_file(&ctx.config.tls.ca_cert, next.ca_pem.as_bytes(), false)?;
    next.install(endpoint, pool, &ctx.config.limits, &ctx.revocations)?;
    // Connections made under the previous set: ours to peers whose certificate is no longer trusted, and
    // (through `trust_changes`) theirs to us.
    pool.close_refused(|cert| !ctx.issued_by_trusted(cert));
    ctx.trust_changes.send_modify(|v| *v += 1);
    let count = pki::pem_blocks(&next.ca_pem).len();
    tracing::info!(trusted_cas = count, rotating = next.cross_pem.is_some(), "now trusting the cluster's CAs");
    *identity = next;
    Ok(())
}

/// Records (once per rotation) that this node's certificate is from the new CA.
async fn record_renewal(ctx: &NodeContext) {
    if ctx.meta.reader.read(|s| s.ca_renewed.contains(&ctx.id)) {
        return;
    }
    match ctx.meta.write(crate::meta::command::MetaCommand::RecordCaRenewal { node: ctx.id, now_ms: crate::server::now_ms() }).await {
        Ok(_) => tracing::info!("recorded this node's renewal onto the new cluster CA"),
        Err(e) => tracing::info!(error = %e, "could not record the renewal onto the new CA yet; will retry"),
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
    let der = strata_transport::tls::certs_from_pem(&cert_pem, "renewed certificate")?;
    anyhow::ensure!(der.first().and_then(|c| pki::node_id_of(c)) == Some(ctx.id), "the renewed certificate does not name this node");
    anyhow::ensure!(
        der.first().is_some_and(|c| pki::issued_by(c, &ctx.issuing_pem())),
        "the renewed certificate is not from the CA that issues now (the signer holds an older key)"
    );
    Ok(Identity { ca_pem: current.ca_pem.clone(), cross_pem: current.cross_pem.clone(), cert_pem, key_pem: key.serialize_pem() })
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
