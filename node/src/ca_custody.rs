//! Custody of the cluster CA key: the Raft voters hold it, so that admitting nodes and renewing certificates
//! outlive any one node (docs/rfcs/0003-node-trust.md).
//!
//! A node holding the key records itself as a holder in the replicated state. A voter that does not hold it
//! asks a recorded holder for it over mutual TLS; the holder hands it only to a node it sees as a voter. The
//! new holder checks that the key belongs to the cluster CA, stores it beside its certificate (owner-only)
//! and records itself. Voters are chosen from Active generations, so by the time a drained generation is
//! dropped its successors hold the key, and dropping the last holders is refused (`meta::custody_state`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use strata_client::RpcPool;
use strata_proto::{NodeState, Request, Response};
use tokio::sync::watch;

use crate::context::NodeContext;
use crate::meta::command::MetaCommand;
use crate::pki::{self, CaMaterial};

/// How often custody is checked.
const TICK: Duration = Duration::from_secs(3);

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<NodeContext>, pool: Arc<RpcPool>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = step(&ctx, &pool).await {
            tracing::info!(error = %e, "CA key custody: not done yet; will retry");
        }
    }
}

async fn step(ctx: &NodeContext, pool: &RpcPool) -> anyhow::Result<()> {
    let (recorded, initialised, me) =
        ctx.meta.reader.read(|s| (s.ca_holders.contains(&ctx.id), s.cluster_name.is_some(), s.map.nodes.get(&ctx.id).map(|n| n.state)));
    if !initialised || me.is_none_or(|s| s == NodeState::Removed) {
        return Ok(());
    }
    if ctx.ca_key().is_some() {
        if !recorded {
            ctx.meta.write(MetaCommand::RecordCaHolder { node: ctx.id, now_ms: crate::server::now_ms() }).await?;
            tracing::info!("recorded this node as a holder of the cluster CA key");
        }
        return Ok(());
    }
    if !crate::server::is_voter(ctx, ctx.id) {
        return Ok(());
    }
    let key_pem = fetch(ctx, pool).await?;
    let material = CaMaterial { cert_pem: ctx.ca_pem.clone(), key_pem };
    anyhow::ensure!(pki::key_matches_ca(&material), "the key a holder sent does not belong to this cluster's CA");
    crate::identity::replace_file(&ctx.config.tls.ca_key_path(), material.key_pem.as_bytes(), true)?;
    *ctx.ca.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(material));
    ctx.meta.write(MetaCommand::RecordCaHolder { node: ctx.id, now_ms: crate::server::now_ms() }).await?;
    tracing::info!(path = %ctx.config.tls.ca_key_path().display(), "received the cluster CA key as a Raft voter");
    Ok(())
}

async fn fetch(ctx: &NodeContext, pool: &RpcPool) -> anyhow::Result<String> {
    let holders: Vec<(strata_proto::NodeId, String)> = ctx.meta.reader.read(|s| {
        s.ca_holders
            .iter()
            .filter_map(|n| s.map.nodes.get(n))
            .filter(|d| d.state == NodeState::Active)
            .map(|d| (d.id, d.addr.clone()))
            .collect()
    });
    let mut last = None;
    for (node, addr) in holders {
        match pool.call_named(&addr, &pki::node_dns_name(node), None, Request::FetchCaKey, Bytes::new()).await {
            Ok(reply) if matches!(reply.response, Response::CaKey) => {
                return String::from_utf8(reply.body).context("the CA key is not text");
            }
            Ok(reply) => last = Some(anyhow::anyhow!("{node} answered {:?}", reply.response)),
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("asking {node}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no holder of the CA key is recorded yet")))
}
