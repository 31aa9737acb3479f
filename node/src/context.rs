//! Everything a request handler may touch on this node, built once at start-up and shared.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use strata_proto::NodeId;

use crate::config::NodeConfig;
use crate::coordinator::Coordinator;
use crate::health::Health;
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::pki::CaMaterial;
use crate::store::ShardStore;

/// Shared node state.
pub struct NodeContext {
    /// This node.
    pub id: NodeId,
    /// Validated configuration.
    pub config: NodeConfig,
    /// Cluster metadata.
    pub meta: Meta,
    /// Blob coordinator.
    pub coordinator: Coordinator,
    /// Local shards.
    pub store: Arc<dyn ShardStore>,
    /// Peer reachability.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Connection caps and memory budgets.
    pub admission: Arc<crate::server::Admission>,
    /// The CA certificate (PEM), given to joining nodes.
    pub ca_pem: String,
    /// The CA key, if this node holds it (it then admits joining nodes and renews certificates).
    pub ca: RwLock<Option<Arc<CaMaterial>>>,
    /// The node ids whose certificates are refused (follows the cluster map).
    pub revocations: Arc<crate::trust::Revocations>,
    /// When this node last ran a read barrier for an unknown token (rate limit).
    pub last_token_barrier: Mutex<Option<Instant>>,
    /// Held while a garbage collection runs on this node.
    pub gc_lock: tokio::sync::Mutex<()>,
    /// Join requests this node still serves this minute.
    pub join_rate: crate::server::Rate,
    /// Catalog writes (sessions, commits, forgets) each tenant may still make through this node this minute.
    pub catalog_rate: crate::server::KeyedRate<strata_proto::TenantId>,
    /// When this node's last complete scrub pass ended, ms since the Unix epoch (0: never since start).
    pub scrubbed_at_ms: std::sync::atomic::AtomicU64,
}

impl NodeContext {
    /// The CA key, if this node holds it.
    pub fn ca_key(&self) -> Option<Arc<CaMaterial>> {
        self.ca.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
