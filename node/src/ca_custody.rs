//! Custody of the cluster CA key: the Raft voters hold it, so that admitting nodes and renewing certificates
//! outlive any one node (docs/rfcs/0003-node-trust.md).
//!
//! A node holding the key records itself as a holder in the replicated state. A voter that does not hold it
//! asks a recorded holder for it over mutual TLS; the holder hands it only to a node it sees as a voter. The
//! new holder checks that the key belongs to the cluster CA, stores it beside its certificate (owner-only)
//! and records itself, proving it with a signature by the key. Voters are chosen from Active generations, so
//! by the time a drained generation is dropped its successors hold the key, and dropping the last holders is
//! refused (`meta::custody_state`). A node that stops being a voter deletes its copy once two other voters
//! hold one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use strata_proto::{NodeState, Request, Response};
use strata_transport::RpcPool;
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
    // A rotation begun here and interrupted before the new key was put in place.
    if ctx.ca_key().is_none() && adopt_next_key(ctx)? {
        tracing::info!("put the new cluster CA key in place");
    }
    forget_rotated_key(ctx)?;
    if let Some(ca) = ctx.ca_key() {
        let voter = crate::server::is_voter(ctx, ctx.id);
        // A key file the operator configured (`tls.ca_key`) is theirs to manage: it is never deleted here.
        if !voter && ctx.config.tls.ca_key.is_none() && others_hold_it(ctx) {
            return relinquish(ctx, recorded).await;
        }
        if !recorded {
            record(ctx, &ca).await?;
            tracing::info!("recorded this node as a holder of the cluster CA key");
        }
        return Ok(());
    }
    if !crate::server::is_voter(ctx, ctx.id) {
        return Ok(());
    }
    let key_pem = fetch(ctx, pool).await?;
    let material = CaMaterial { cert_pem: ctx.issuing_pem(), key_pem };
    anyhow::ensure!(pki::key_matches_ca(&material), "the key a holder sent does not belong to this cluster's CA");
    crate::identity::replace_file(&ctx.config.tls.ca_key_path(), material.key_pem.as_bytes(), true)?;
    let material = Arc::new(material);
    *ctx.ca.write().unwrap_or_else(|e| e.into_inner()) = Some(material.clone());
    record(ctx, &material).await?;
    tracing::info!(path = %ctx.config.tls.ca_key_path().display(), "received the cluster CA key as a Raft voter");
    Ok(())
}

/// Where a CA key waits while the rotation that made it is being committed.
pub fn next_key_path(key_path: &std::path::Path) -> std::path::PathBuf {
    let mut name = key_path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    key_path.with_file_name(name)
}

/// Puts a new CA key waiting in `ca.key.next` in place once it is the issuing CA's key (the rotation that made
/// it is applied here); returns whether it did.
pub fn adopt_next_key(ctx: &NodeContext) -> anyhow::Result<bool> {
    let key_path = ctx.config.tls.ca_key_path();
    let next = next_key_path(&key_path);
    let key_pem = match std::fs::read_to_string(&next) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", next.display())),
    };
    let material = CaMaterial { cert_pem: ctx.issuing_pem(), key_pem };
    if !pki::key_matches_ca(&material) {
        return Ok(false);
    }
    std::fs::rename(&next, &key_path).with_context(|| format!("cannot move {} to {}", next.display(), key_path.display()))?;
    *ctx.ca.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(material));
    Ok(true)
}

/// After a rotation, a key of a CA that no longer issues is deleted: nothing is signed with it any more, and
/// a copy that stays around is one more to steal (a voter fetches the new key next).
fn forget_rotated_key(ctx: &NodeContext) -> anyhow::Result<()> {
    let stale = ctx.ca.read().unwrap_or_else(|e| e.into_inner()).is_some() && ctx.ca_key().is_none();
    let rotated = ctx.meta.reader.read(|s| !s.cas.is_empty());
    if !(stale && rotated) {
        return Ok(());
    }
    let path = delete_key_file(ctx)?;
    tracing::info!(path = %path.display(), "deleted the key of the CA the cluster rotated away from");
    Ok(())
}

/// Records this node as a holder, with a signature by the key as proof.
async fn record(ctx: &NodeContext, ca: &CaMaterial) -> anyhow::Result<()> {
    let now_ms = crate::server::now_ms();
    let proof = pki::holder_proof(ca, ctx.id, now_ms)?;
    ctx.meta.write(MetaCommand::RecordCaHolder { node: ctx.id, now_ms, proof }).await?;
    Ok(())
}

/// Whether at least two other Active voters are recorded as holders, so this node's copy is not needed.
fn others_hold_it(ctx: &NodeContext) -> bool {
    let holders: Vec<strata_proto::NodeId> = ctx.meta.reader.read(|s| {
        s.ca_holders.iter().filter(|n| **n != ctx.id && s.map.nodes.get(n).is_some_and(|d| d.state == NodeState::Active)).copied().collect()
    });
    holders.iter().filter(|n| crate::server::is_voter(ctx, **n)).count() >= 2
}

/// A node that is no longer a voter deletes its copy of the CA key (fewer copies, fewer places to steal it
/// from) and records that it no longer holds it.
async fn relinquish(ctx: &NodeContext, recorded: bool) -> anyhow::Result<()> {
    if recorded {
        ctx.meta.write(MetaCommand::DropCaHolder { node: ctx.id, now_ms: crate::server::now_ms() }).await?;
    }
    let path = delete_key_file(ctx)?;
    tracing::info!(path = %path.display(), "deleted this node's copy of the cluster CA key: it is no longer a Raft voter");
    Ok(())
}

/// Deletes this node's CA key file (gone already is fine) and forgets the key in memory; returns the path.
fn delete_key_file(ctx: &NodeContext) -> anyhow::Result<std::path::PathBuf> {
    let path = ctx.config.tls.ca_key_path();
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
    *ctx.ca.write().unwrap_or_else(|e| e.into_inner()) = None;
    Ok(path)
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
