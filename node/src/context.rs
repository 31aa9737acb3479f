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
    /// The CA certificates in `tls.ca_cert` when the node started (PEM); see [`NodeContext::trusted_pem`].
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
    /// Bumped whenever this node starts trusting another set of CAs (a rotation began or finished): open
    /// connections of nodes whose certificate no trusted CA issued are closed then.
    pub trust_changes: tokio::sync::watch::Sender<u64>,
}

impl NodeContext {
    /// The key of the CA that issues certificates now, if this node holds it (a key of a CA that was rotated
    /// away counts as none: nothing is signed with it any more).
    pub fn ca_key(&self) -> Option<Arc<CaMaterial>> {
        let ca = self.ca.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        crate::pki::same_cert(&ca.cert_pem, &self.issuing_pem()).then_some(ca)
    }

    /// The trusted CA certificates (PEM, concatenated): the replicated set once the CA has been rotated, else
    /// the `tls.ca_cert` file this node started with.
    pub fn trusted_pem(&self) -> String {
        let cas = self.meta.reader.read(|s| s.cas.clone());
        if cas.is_empty() { self.ca_pem.clone() } else { cas.concat() }
    }

    /// The certificate (PEM) of the CA that issues certificates now.
    pub fn issuing_pem(&self) -> String {
        self.meta.reader.read(|s| s.cas.last().cloned()).unwrap_or_else(|| crate::pki::pem_blocks(&self.ca_pem).pop().unwrap_or_default())
    }

    /// Whether a trusted CA issued `cert_der` (the handshake checked it against the CAs trusted then).
    pub fn issued_by_trusted(&self, cert_der: &[u8]) -> bool {
        crate::pki::pem_blocks(&self.trusted_pem()).iter().any(|ca| crate::pki::issued_by(cert_der, ca))
    }

    /// While a CA rotation is in progress, the new CA's certificate signed by the old one (sent with this
    /// node's chain so that clients trusting only the old CA accept certificates from the new one).
    pub fn cross_pem(&self) -> Option<String> {
        self.meta.reader.read(|s| s.ca_cross.clone())
    }
}
