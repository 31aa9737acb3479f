//! Which peers answer: probed every few seconds, updated by every shard RPC, read by the coordinator (to skip
//! nodes that are down instead of waiting for a timeout) and by `Status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::{NodeId, Request, Response};
use strata_transport::RpcPool;
use tokio::sync::watch;

use crate::meta::state_machine::MetaReader;
use crate::metrics::Metrics;

/// How often peers are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What we know about one peer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerHealth {
    /// Last successful contact.
    pub last_ok: Option<Instant>,
    /// Last failed contact.
    pub last_fail: Option<Instant>,
    /// Usage it reported on its last probe: (shards, bytes).
    pub usage: Option<(u64, u64)>,
    /// Failed contacts since the last success.
    pub failures_in_a_row: u32,
    /// When the current run of failed contacts began (`None` while the peer answers).
    pub unreachable_since: Option<Instant>,
    /// Start of the current window over which the peer's moved bytes are measured: (when, its total then).
    pub moved_window: Option<(Instant, u64)>,
    /// Bytes per second the peer moved over the last full window.
    pub moved_bytes_per_sec: u64,
    /// When the peer's last complete scrub pass ended, ms since the Unix epoch (0: none since it started).
    pub scrubbed_at_ms: u64,
}

/// Length of the window over which move rates are measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Failed contacts in a row after which a peer is treated as down (skipped instead of waited for).
const DOWN_AFTER_FAILURES: u32 = 2;

impl PeerHealth {
    /// Whether the peer failed its last few contacts (one failure may be a restart in progress).
    pub fn is_down(&self) -> bool {
        self.failures_in_a_row >= DOWN_AFTER_FAILURES
    }
}

/// Peer reachability, shared by the node's tasks.
#[derive(Default)]
pub struct Health {
    peers: Mutex<HashMap<NodeId, PeerHealth>>,
}

impl Health {
    fn update(&self, node: NodeId, f: impl FnOnce(&mut PeerHealth)) {
        f(self.peers.lock().unwrap_or_else(|e| e.into_inner()).entry(node).or_default());
    }

    /// Records a successful contact.
    pub fn record_ok(&self, node: NodeId) {
        self.update(node, |p| {
            p.last_ok = Some(Instant::now());
            p.failures_in_a_row = 0;
            p.unreachable_since = None;
        });
    }

    /// Records a failed contact.
    pub fn record_fail(&self, node: NodeId) {
        self.update(node, |p| {
            p.last_fail = Some(Instant::now());
            p.failures_in_a_row += 1;
            p.unreachable_since.get_or_insert_with(Instant::now);
        });
    }

    /// Whether `node`'s last contact failed.
    pub fn is_down(&self, node: NodeId) -> bool {
        self.get(node).is_down()
    }

    /// What we know about `node`.
    pub fn get(&self, node: NodeId) -> PeerHealth {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).get(&node).copied().unwrap_or_default()
    }

    /// Records a node's total of moved bytes (from its probe answer, or this node's own counter).
    pub fn record_moved(&self, node: NodeId, total: u64) {
        self.update(node, |p| {
            let now = Instant::now();
            match p.moved_window {
                Some((since, at)) if now.duration_since(since) >= RATE_WINDOW => {
                    let secs = now.duration_since(since).as_secs_f64();
                    p.moved_bytes_per_sec = (total.saturating_sub(at) as f64 / secs) as u64;
                    p.moved_window = Some((now, total));
                }
                Some(_) => {}
                None => p.moved_window = Some((now, total)),
            }
        });
    }

    /// Bytes per second moved by all nodes together, over the last windows.
    pub fn total_moved_bytes_per_sec(&self) -> u64 {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).values().map(|p| p.moved_bytes_per_sec).sum()
    }

    fn record_usage(&self, node: NodeId, usage: (u64, u64)) {
        self.update(node, |p| {
            p.last_ok = Some(Instant::now());
            p.failures_in_a_row = 0;
            p.unreachable_since = None;
            p.usage = Some(usage);
        });
    }
}

/// Pings every other node of the map until `shutdown` turns true.
pub async fn probe_loop(
    me: NodeId,
    health: Arc<Health>,
    pool: Arc<RpcPool>,
    meta: MetaReader,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let map = meta.map();
        let probes = map.nodes.values().filter(|n| n.id != me).map(|n| {
            let (health, pool, metrics) = (health.clone(), pool.clone(), metrics.clone());
            let (id, addr) = (n.id, n.addr.clone());
            async move {
                let name = crate::pki::node_dns_name(id);
                let call = pool.call_named(&addr, &name, None, Request::Ping, Bytes::new());
                let reply = tokio::time::timeout(Duration::from_secs(2), call).await;
                let up = match reply {
                    Ok(Ok(r)) => match r.response {
                        Response::Pong { shards, bytes, moved_bytes, scrubbed_at_ms, .. } => {
                            health.record_usage(id, (shards, bytes));
                            health.record_moved(id, moved_bytes);
                            health.update(id, |p| p.scrubbed_at_ms = scrubbed_at_ms);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !up {
                    health.record_fail(id);
                }
                metrics.peer_reachable.with_label_values(&[&id.0.to_string()]).set(i64::from(up));
            }
        });
        futures::future::join_all(probes).await;
    }
}
