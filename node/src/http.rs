//! The node's HTTP endpoint: `/metrics` for Prometheus and `/health` for orchestrators and tests.
//!
//! `/health` answers 200 with a JSON body once the node is ready (it knows a Raft leader, it is in the cluster
//! map and partitions are placed) and 503 with the same body before; it never blocks on the network.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::context::NodeContext;

/// What `/health` reports.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// This node.
    pub node_id: u64,
    /// Ready to serve data requests.
    pub ready: bool,
    /// Current Raft leader.
    pub leader: Option<u64>,
    /// Raft role of this node.
    pub raft_state: String,
    /// Map epoch.
    pub epoch: u64,
    /// Whether partitions are placed.
    pub placed: bool,
    /// Whether this node is in the cluster map.
    pub registered: bool,
    /// Raft voters, and how many the cluster should have for its size.
    pub voters: usize,
    /// Target number of voters.
    pub voters_wanted: usize,
    /// Shards stored here.
    pub shards: u64,
    /// Bytes of shard data stored here.
    pub bytes: u64,
    /// This node's wall clock (ms since the Unix epoch): compare across nodes to see clock skew.
    pub time_ms: u64,
}

/// Builds the health report.
pub fn health_report(ctx: &NodeContext) -> HealthReport {
    let (leader, raft_state, voters) = {
        let m = ctx.meta.raft.metrics();
        let m = m.borrow();
        (m.current_leader, format!("{:?}", m.state), m.membership_config.membership().voter_ids().count())
    };
    let map = ctx.meta.reader.map();
    let registered = map.nodes.contains_key(&ctx.id);
    let usage = ctx.store.usage();
    let active = map.nodes.values().filter(|n| n.state == strata_proto::NodeState::Active).count();
    let voters_wanted = crate::meta::membership::target_voters(active);
    HealthReport {
        node_id: ctx.id.0,
        ready: leader.is_some() && registered && map.is_placed() && voters >= voters_wanted,
        voters,
        voters_wanted,
        leader,
        raft_state,
        epoch: map.epoch.0,
        placed: map.is_placed(),
        registered,
        shards: usage.shards,
        bytes: usage.bytes,
        time_ms: crate::server::now_ms(),
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(addr: SocketAddr, ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let metrics_ctx = ctx.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics_ctx.metrics.render()) }),
        )
        .route(
            "/health",
            get(move || async move {
                let report = health_report(&ctx);
                let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                let body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}
