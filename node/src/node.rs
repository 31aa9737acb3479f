//! Starting and stopping a node: open storage, bring up QUIC with mutual TLS, start Raft and the background
//! tasks, register with the cluster, serve until asked to stop, then shut down in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use strata_proto::{EcProfile, ErrorCode, NodeAnnouncement, NodeId, Request, Response};
use strata_transport::{RpcLimits, RpcPool};
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::context::NodeContext;
use crate::coordinator::{Coordinator, ShardPeers};
use crate::custody::Custody;
use crate::health::{self, Health};
use crate::identity::Identity;
use crate::meta::command::{InitCluster, MetaCommand};
use crate::meta::{Meta, MetaError, leader_tasks};
use crate::metrics::Metrics;
use crate::pki::{self, CaMaterial};
use crate::store::{DiskReserve, RocksShardStore, ShardStore};
use crate::trust::Revocations;
use crate::{db, http, migrate, scrub, server};

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs a node until `stop` resolves.
pub async fn run(config: NodeConfig, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let id = NodeId(config.node_id);
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let db_opts =
        db::DbOptions { block_cache_bytes: config.storage.block_cache_bytes, write_buffer_bytes: config.storage.write_buffer_bytes };
    let database = db::open(&config.data_dir.join("db"), &db_opts)?;
    let store: Arc<dyn ShardStore> = Arc::new(
        RocksShardStore::open(database.clone(), config.capacity_bytes, config.storage.sync_writes)?
            .with_reserve(DiskReserve::new(config.data_dir.clone(), config.storage.reserve_bytes)),
    );

    Identity::finish_pending(&config.tls.node_cert, &config.tls.node_key)?;
    let identity = Identity {
        ca_pem: read(&config.tls.ca_cert)?,
        cross_pem: None,
        cert_pem: read(&config.tls.node_cert)?,
        key_pem: read(&config.tls.node_key)?,
    };
    let ca_pem = identity.ca_pem.clone();
    let ca = load_ca_key(&config, &ca_pem)?;
    let revocations = Arc::new(Revocations::default());
    let listen = config.listen_addr.parse().context("listen_addr")?;
    let endpoint = quinn::Endpoint::server(identity.server_config(&config.limits, &revocations)?, listen)
        .with_context(|| format!("cannot listen on {listen} (UDP)"))?;
    let client = identity.client_config(&revocations)?;
    let limits = RpcLimits {
        request_timeout: Duration::from_millis(config.limits.request_timeout_ms),
        max_frame_bytes: config.limits.max_frame_bytes,
        max_body_bytes: config.limits.max_internal_body_bytes.max(config.limits.max_blob_bytes),
        ..RpcLimits::default()
    };
    let pool = Arc::new(RpcPool::new(endpoint.clone(), client, limits));

    let meta =
        Meta::start(id, database.clone(), pool.clone(), &config.raft, "strata", config.limits.max_internal_body_bytes, ca_pem.clone())
            .await?;
    if config.bootstrap.is_some() && meta.initialize_if_new(config.advertised()).await? {
        tracing::info!("initialised a new Raft group with this node as its only voter");
    }
    let metrics = Arc::new(Metrics::new(id.0));
    metrics.capacity_bytes.set(config.capacity_bytes as i64);
    let health = Arc::new(Health::default());
    let custody = Arc::new(Custody::new(id, meta.reader.clone(), store.clone()));
    let peers =
        ShardPeers::new(custody, pool.clone(), health.clone(), metrics.clone(), Duration::from_millis(config.limits.shard_timeout_ms));
    let coordinator = Coordinator::new(peers, meta.reader.clone(), metrics.clone(), config.durability.extra_shards_for_ack);
    let ctx = Arc::new(NodeContext {
        id,
        meta: meta.clone(),
        coordinator,
        store,
        health: health.clone(),
        metrics: metrics.clone(),
        admission: crate::server::Admission::new(&config.limits),
        ca_pem,
        ca: std::sync::RwLock::new(ca.map(Arc::new)),
        revocations: revocations.clone(),
        last_token_barrier: Mutex::new(None),
        gc_lock: tokio::sync::Mutex::new(()),
        scrubbed_at_ms: std::sync::atomic::AtomicU64::new(0),
        trust_changes: watch::channel(0).0,
        join_rate: crate::server::Rate::per_minute(config.limits.join_requests_per_minute),
        catalog_rate: crate::server::KeyedRate::per_minute(config.limits.catalog_writes_per_minute_per_tenant),
        config: config.clone(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(server::serve(endpoint.clone(), ctx.clone(), stop_rx.clone())),
        tokio::spawn(leader_tasks::run(meta.clone(), health.clone(), config.clone(), stop_rx.clone())),
        tokio::spawn(migrate::run(ctx.clone(), stop_rx.clone())),
        tokio::spawn(migrate::retire::run(ctx.clone(), stop_rx.clone())),
        tokio::spawn(scrub::run(ctx.clone(), stop_rx.clone())),
        tokio::spawn(health::probe_loop(id, health, pool.clone(), meta.reader.clone(), metrics.clone(), stop_rx.clone())),
        tokio::spawn(refresh_metrics(ctx.clone(), stop_rx.clone())),
        tokio::spawn(announce(ctx.clone(), pool.clone(), stop_rx.clone())),
        tokio::spawn(follow_revocations(meta.reader.clone(), revocations, pool.clone(), stop_rx.clone())),
        tokio::spawn(crate::renewal::run(ctx.clone(), identity, endpoint.clone(), pool.clone(), stop_rx.clone())),
        tokio::spawn(crate::ca_custody::run(ctx.clone(), pool.clone(), stop_rx.clone())),
    ];
    if let Some(addr) = &config.metrics_addr {
        let addr = addr.parse().context("metrics_addr")?;
        let (ctx, rx) = (ctx.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(addr, ctx, rx).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        }));
    }
    tracing::info!(node = %id, listen = %config.listen_addr, "node started");
    let raft_failure = tokio::select! {
        () = stop => None,
        failure = raft_stopped(&meta) => Some(failure),
    };
    match &raft_failure {
        None => tracing::info!("shutting down"),
        Some(failure) => tracing::error!(
            %failure,
            "the metadata log stopped (Raft cannot go on after a storage error): stopping this node so that it \
             starts again on its data once the cause is fixed (a service manager restarts it)"
        ),
    }
    let _ = stop_tx.send(true);
    endpoint.close(0u32.into(), b"node shutting down");
    meta.shutdown().await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    pool.close_all();
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    if let Some(failure) = raft_failure {
        // The data directory may be full or failing: flushing may fail as well, and must not hide why.
        if let Err(e) = database.flush_wal(true) {
            tracing::warn!(error = %e, "could not flush the write-ahead log while stopping");
        }
        anyhow::bail!("the metadata log stopped: {failure}");
    }
    database.flush_wal(true).context("flushing the write-ahead log")?;
    // The log already holds everything: a failed flush (a full disk) costs a longer replay at the next start.
    if let Err(e) = db::flush_all(&database) {
        tracing::warn!(error = %e, "could not flush the memtables while stopping; the next start replays the log");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves when this node's Raft core has stopped by itself (a storage error: openraft does not go on after
/// one), with the reason. A node whose Raft is gone must not keep answering as if it were a member.
async fn raft_stopped(meta: &Meta) -> String {
    let mut metrics = meta.raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "the Raft core exited".into();
        }
    }
}

/// The CA key: from `tls.ca_key` (the node `init` created), or the copy this node received as a voter. A key
/// file that does not belong to the cluster CA stops the node: it would sign certificates nobody accepts.
fn load_ca_key(config: &NodeConfig, ca_pem: &str) -> anyhow::Result<Option<CaMaterial>> {
    let path = config.tls.ca_key_path();
    let key_pem = match std::fs::read_to_string(&path) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A node that stopped being a voter hands its copy back (`ca_custody`); it starts without one.
            if config.tls.ca_key.is_some() {
                tracing::warn!(path = %path.display(), "tls.ca_key names a file that does not exist; starting without the CA key");
            }
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the CA key {}", path.display())),
    };
    // After a rotation `tls.ca_cert` holds every trusted CA; the last one issues.
    let mut trusted = pki::pem_blocks(ca_pem);
    let issuing = trusted.pop().unwrap_or_default();
    let material = CaMaterial { cert_pem: issuing, key_pem };
    if pki::key_matches_ca(&material) {
        return Ok(Some(material));
    }
    let of_older = trusted.into_iter().any(|cert_pem| pki::key_matches_ca(&CaMaterial { cert_pem, key_pem: material.key_pem.clone() }));
    anyhow::ensure!(of_older, "{} is not the key of the cluster CA in tls.ca_cert", path.display());
    tracing::warn!(path = %path.display(), "the CA key is the key of a CA the cluster rotated away from; it is not used");
    Ok(None)
}

/// Keeps the set of revoked node certificates equal to the Removed nodes of the applied map.
async fn follow_revocations(
    reader: crate::meta::state_machine::MetaReader,
    revocations: Arc<Revocations>,
    pool: Arc<RpcPool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut maps = reader.subscribe_map();
    loop {
        revocations.update(&maps.borrow_and_update());
        // Connections this node opened to a node now revoked are closed too, not only those it accepted.
        pool.close_refused(|cert| pki::node_id_of(cert).is_some_and(|n| revocations.is_removed(n)));
        tokio::select! {
            changed = maps.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Creates the cluster (bootstrap node only) and registers this node, retrying until both are done.
async fn announce(ctx: Arc<NodeContext>, pool: Arc<RpcPool>, mut stop: watch::Receiver<bool>) {
    let config = &ctx.config;
    let me = NodeAnnouncement {
        id: ctx.id,
        addr: config.advertised().to_owned(),
        zone: config.zone.clone(),
        capacity_bytes: config.capacity_bytes,
        generation: config.generation.clone(),
    };
    // Keep checking after registering: a node the cluster declared Down while it was cut off announces
    // itself again once it can, which makes it Active.
    let mut delay = Duration::from_millis(200);
    loop {
        match try_announce(&ctx, &pool, &me).await {
            Ok(true) => delay = Duration::from_secs(10),
            Ok(false) => delay = (delay * 2).min(Duration::from_secs(3)),
            Err(e) => {
                tracing::info!(error = %e, "not registered with the cluster yet; retrying");
                delay = (delay * 2).min(Duration::from_secs(3));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One attempt; `Ok(true)` when this node is registered with its current description.
async fn try_announce(ctx: &NodeContext, pool: &RpcPool, me: &NodeAnnouncement) -> anyhow::Result<bool> {
    let (initialised, current) = ctx.meta.reader.read(|s| (s.cluster_name.is_some(), s.map.nodes.get(&me.id).cloned()));
    if let Some(b) = &ctx.config.bootstrap
        && !initialised
    {
        if ctx.meta.leader() != Some(ctx.id.0) {
            return Ok(false);
        }
        let digest = hex::decode(&b.operator_token_digest)?.try_into().map_err(|_| anyhow::anyhow!("bad operator digest"))?;
        let profile: EcProfile = b.ec_profile.parse()?;
        let init = InitCluster {
            cluster_name: b.cluster_name.clone(),
            partition_bits: b.partition_bits,
            generation_name: ctx.config.generation.clone(),
            profile,
            operator_token: digest,
            now_ms: crate::server::now_ms(),
        };
        match ctx.meta.write(MetaCommand::Init(init)).await {
            Ok(_) => tracing::info!(cluster = %b.cluster_name, "cluster initialised"),
            Err(MetaError::Rejected(e)) if e.code == ErrorCode::Conflict => {}
            Err(e) => return Err(e.into()),
        }
    }
    if current.is_some_and(|d| {
        d.addr == me.addr && d.zone == me.zone && d.capacity_bytes == me.capacity_bytes && d.state != strata_proto::NodeState::Down
    }) {
        return Ok(true);
    }
    if ctx.meta.leader().is_some() {
        ctx.meta.write(MetaCommand::RegisterNode(me.clone())).await?;
        tracing::info!("registered with the cluster");
        return Ok(true);
    }
    // Not a member yet: ask a seed, which registers us if it leads and otherwise names the leader to ask.
    let mut last = None;
    for seed in &ctx.config.seeds {
        let mut addr = seed.clone();
        for _ in 0..2 {
            match pool.call(&addr, None, Request::RegisterNode { node: me.clone() }, Bytes::new()).await {
                Ok(reply) => match reply.response {
                    Response::RegisterWithLeader { addr: Some(leader) } if leader != addr => addr = leader,
                    Response::RegisterWithLeader { .. } => break,
                    _ => {
                        tracing::info!(leader = %addr, "registered with the cluster");
                        return Ok(true);
                    }
                },
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => Ok(false),
    }
}

async fn refresh_metrics(ctx: Arc<NodeContext>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let m = &ctx.metrics;
        let usage = ctx.store.usage();
        m.shards_stored.set(usage.shards as i64);
        m.shard_bytes.set(usage.bytes as i64);
        let map = ctx.meta.reader.map();
        m.map_epoch.set(map.epoch.0 as i64);
        m.partitions.set(map.partitions_on(ctx.id) as i64);
        {
            let r = ctx.meta.raft.metrics();
            let r = r.borrow();
            m.raft_term.set(r.current_term as i64);
            m.raft_leader.set(r.current_leader.unwrap_or(0) as i64);
            m.raft_is_leader.set(i64::from(r.current_leader == Some(ctx.id.0)));
            m.raft_applied_index.set(r.last_applied.map(|l| l.index).unwrap_or(0) as i64);
            m.raft_last_log_index.set(r.last_log_index.unwrap_or(0) as i64);
        }
        for (class, bytes) in ctx.admission.held_bytes() {
            m.inflight_bytes.with_label_values(&[class]).set(bytes as i64);
        }
        m.connections.set(ctx.admission.connections() as i64);
    }
}
