//! A connection to a whole cluster: routing by cluster map, failover between nodes, bounded retries.
//!
//! The client keeps a copy of the cluster map and sends each blob request to the first node of the blob's
//! partition (which holds a shard, saving one hop); if that node is unreachable it tries the next. The map is
//! only a routing hint: any node can coordinate any request. Retryable failures (leader change, not enough
//! shards reachable yet) are retried with backoff a bounded number of times, then reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::status::ClusterStatus;
use strata_proto::{
    AuditEntry, BlobDigest, ChunkId, ClusterMap, Epoch, GcReport, GenerationOp, NodeId, Request, Response, Role, RoleSet, Secret,
    SessionId, SnapshotId, SnapshotRecord, TenantId, TokenInfo, WireError,
};

use crate::error::ClientError;
use strata_transport::profile::Profile;
use strata_transport::rpc::{Reply, RpcError, RpcLimits, RpcPool};
use strata_transport::tls;

/// Most ids sent in one dedup query.
pub const HAS_BATCH: usize = 1024;
/// Attempts for a retryable request before giving up.
const ATTEMPTS: u32 = 8;
/// How long an address that could not be reached is tried only after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(15);

/// When a request moves on to the next address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failover {
    /// Only when the node cannot be reached.
    Unreachable,
    /// Also when it answers with a retryable refusal (idempotent requests only).
    AlsoRefused,
}

/// Which credential of the profile a request is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The operator token.
    Operator,
    /// The tenant token.
    Tenant,
}

/// Outcome of storing a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// Shards durably written.
    pub shards_stored: u8,
    /// k + m.
    pub shards_total: u8,
}

/// A client of one cluster.
pub struct ClusterClient {
    pool: Arc<RpcPool>,
    seeds: Vec<String>,
    token: Option<Secret>,
    operator: Option<Secret>,
    map: RwLock<Option<Arc<ClusterMap>>>,
    /// Addresses of the cluster's nodes from the last map fetched; kept when the map is invalidated, so the
    /// client still finds the cluster after every seed's generation was drained and switched off.
    learned: RwLock<Vec<String>>,
    /// Addresses of nodes the last map fetched says were removed: seeds among them are not tried.
    removed: RwLock<Vec<String>>,
    rotation: AtomicUsize,
    /// Addresses that recently could not be reached, with when that was.
    suspects: Mutex<HashMap<String, Instant>>,
    /// Where the addresses learned from the map are kept between runs, if anywhere.
    node_cache: Option<NodeCache>,
}

/// The node addresses a client learned from the cluster map, kept in a file it owns (one `host:port` per
/// line) so that the next run finds the cluster even when every address in the profile is gone: a drained
/// and dropped generation takes its addresses with it, and a fleet's profiles must not need editing.
#[derive(Debug, Clone)]
pub struct NodeCache {
    path: std::path::PathBuf,
}

/// Whether `a` looks like `host:port`, with nothing that could break the cache's one-per-line format.
fn is_host_port(a: &str) -> bool {
    !a.chars().any(|c| c.is_control() || c.is_whitespace())
        && a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// Most addresses read from a node cache (a damaged or hostile file cannot make a client try millions).
const NODE_CACHE_MAX: usize = 4096;

impl NodeCache {
    /// A cache kept at `path`.
    pub fn new(path: std::path::PathBuf) -> Self {
        NodeCache { path }
    }

    /// The addresses stored, in order; none if the file is missing. Lines that are not `host:port` are
    /// skipped (with a warning): the cache only ever adds to the profile's seeds.
    pub fn load(&self) -> Vec<String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the node address cache; using the profile's addresses");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if is_host_port(line) {
                if !out.iter().any(|a| a == line) && out.len() < NODE_CACHE_MAX {
                    out.push(line.to_owned());
                }
            } else {
                tracing::warn!(path = %self.path.display(), line, "skipping a line of the node address cache that is not host:port");
            }
        }
        out
    }

    /// Replaces the stored addresses (atomically; owner-only like the profile beside it).
    pub fn store(&self, addrs: &[String]) -> std::io::Result<()> {
        let mut text = String::from("# Node addresses learned from the cluster map by `strata`; rewritten on every map fetch.\n");
        for a in addrs.iter().filter(|a| is_host_port(a)).take(NODE_CACHE_MAX) {
            text.push_str(a);
            text.push('\n');
        }
        strata_transport::profile::write_private(&self.path, text.as_bytes())
    }
}

/// Snapshots asked for per page of the catalog (the node also bounds a page by bytes).
const SNAPSHOT_PAGE: u32 = 5000;
/// Most snapshots a listing may return (twice what a tenant may keep).
const MAX_LISTED_SNAPSHOTS: usize = 40_000;

impl ClusterClient {
    /// Connects using a profile (no network traffic until the first request).
    pub async fn from_profile(profile: &Profile) -> Result<Self, ClientError> {
        let ca = std::fs::read_to_string(profile.ca_cert_path())
            .map_err(|e| ClientError::Io(format!("cannot read {}: {e}", profile.ca_cert_path().display())))?;
        let config = tls::client_config(&ca, None)?;
        let first = strata_transport::rpc::resolve(&profile.nodes[0]).await?;
        let endpoint =
            strata_transport::endpoint::client_endpoint(first).map_err(|e| ClientError::Io(format!("cannot open a UDP socket: {e}")))?;
        let limits = RpcLimits { request_timeout: Duration::from_millis(profile.request_timeout_ms), ..RpcLimits::default() };
        Ok(Self::new(
            Arc::new(RpcPool::new(endpoint, config, limits)),
            profile.nodes.clone(),
            profile.tenant_token(),
            profile.operator_secret(),
        ))
    }

    /// Builds a client over an existing pool.
    pub fn new(pool: Arc<RpcPool>, seeds: Vec<String>, token: Option<Secret>, operator: Option<Secret>) -> Self {
        ClusterClient {
            pool,
            seeds,
            token,
            operator,
            map: RwLock::new(None),
            learned: RwLock::new(Vec::new()),
            removed: RwLock::new(Vec::new()),
            rotation: AtomicUsize::new(0),
            suspects: Mutex::new(HashMap::new()),
            node_cache: None,
        }
    }

    /// Keeps the addresses learned from the cluster map in `path` between runs, and starts from those kept
    /// there by earlier runs.
    pub fn with_node_cache(mut self, path: std::path::PathBuf) -> Self {
        let cache = NodeCache::new(path);
        *self.learned.write().unwrap_or_else(|e| e.into_inner()) = cache.load();
        self.node_cache = Some(cache);
        self
    }

    fn tenant_token(&self) -> Result<&Secret, ClientError> {
        self.token.as_ref().ok_or(ClientError::MissingCredential("tenant token (`token`)"))
    }

    fn operator_token(&self) -> Result<&Secret, ClientError> {
        self.operator.as_ref().ok_or(ClientError::MissingCredential("operator token (`operator_token`)"))
    }

    /// Every address we know: the map's nodes first (they are newer than the profile), then the seeds.
    fn addresses(&self) -> Vec<String> {
        let mut out = self.learned.read().unwrap_or_else(|e| e.into_inner()).clone();
        let removed = self.removed.read().unwrap_or_else(|e| e.into_inner());
        for a in &self.seeds {
            if !out.contains(a) && !removed.contains(a) {
                out.push(a.clone());
            }
        }
        if out.is_empty() {
            // Every address we know was removed: try the seeds anyway rather than nothing.
            out = self.seeds.clone();
        }
        out
    }

    fn cached_map(&self) -> Option<Arc<ClusterMap>> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends a request to any reachable node, rotating the starting point to spread load.
    async fn call_any(&self, auth: Option<&Secret>, request: Request, body: Bytes) -> Result<Reply, ClientError> {
        let addrs = self.addresses();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let order: Vec<String> = (0..addrs.len()).map(|i| addrs[(start + i) % addrs.len()].clone()).collect();
        self.call_in_order(&order, auth, request, body).await
    }

    /// Tries `addrs` in order until one answers; a node that cannot be reached is tried last for a while.
    async fn call_in_order(&self, addrs: &[String], auth: Option<&Secret>, request: Request, body: Bytes) -> Result<Reply, ClientError> {
        self.call_in_order_with(addrs, auth, request, body, Failover::Unreachable).await
    }

    /// Like [`Self::call_in_order`] for blob requests, which are idempotent: a node that answers with a
    /// retryable refusal (it cannot reach enough of its peers) is also tried last for a while and the next one
    /// is asked at once, so a node cut off from the others but not from us does not decide for the whole
    /// cluster. Metadata requests never fail over on a refusal: the write may have been proposed already.
    async fn call_blob(&self, addrs: &[String], auth: Option<&Secret>, request: Request, body: Bytes) -> Result<Reply, ClientError> {
        self.call_in_order_with(addrs, auth, request, body, Failover::AlsoRefused).await
    }

    async fn call_in_order_with(
        &self,
        addrs: &[String],
        auth: Option<&Secret>,
        request: Request,
        body: Bytes,
        failover: Failover,
    ) -> Result<Reply, ClientError> {
        let mut last_unreachable: Option<RpcError> = None;
        let mut last_refusal: Option<RpcError> = None;
        for addr in self.healthy_first(addrs) {
            match self.pool.call(&addr, auth, request.clone(), body.clone()).await {
                Ok(r) => {
                    self.suspects.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr);
                    return Ok(r);
                }
                Err(e) if e.is_unreachable() => {
                    self.suspects.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone(), Instant::now());
                    last_unreachable = Some(e);
                }
                Err(e) if failover == Failover::AlsoRefused && e.is_retryable() => {
                    tracing::debug!(%addr, error = %e, "asking the next node");
                    self.suspects.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone(), Instant::now());
                    last_refusal = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // What a node said is more useful than which nodes were silent.
        match (last_refusal, last_unreachable) {
            (Some(e), _) => Err(e.into()),
            (None, Some(e)) => Err(ClientError::Unreachable { tried: addrs.join(", "), last: e.to_string() }),
            (None, None) => Err(ClientError::Unreachable { tried: "no addresses".into(), last: "none".into() }),
        }
    }

    /// `addrs` with recently unreachable ones moved to the end (order otherwise kept).
    fn healthy_first(&self, addrs: &[String]) -> Vec<String> {
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        let (bad, good): (Vec<String>, Vec<String>) = addrs.iter().cloned().partition(|a| suspects.contains_key(a));
        good.into_iter().chain(bad).collect()
    }

    /// Runs `op` until it succeeds, fails permanently, or runs out of attempts.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying");
                    if matches!(&e, ClientError::Rpc(r) if r.code().is_some()) {
                        // The cluster changed under us: learn where it is now (and which nodes left it)
                        // before trying again.
                        self.invalidate_map();
                        if let Err(e) = self.map().await {
                            tracing::debug!(error = %e, "could not refresh the cluster map before retrying");
                        }
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn invalidate_map(&self) {
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The cluster map, fetched if not cached.
    pub async fn map(&self) -> Result<Arc<ClusterMap>, ClientError> {
        if let Some(m) = self.cached_map() {
            return Ok(m);
        }
        // Any valid token may read the map (it names nodes and generations, nothing of any tenant).
        let token = self.token.as_ref().or(self.operator.as_ref()).ok_or(ClientError::MissingCredential("token or operator token"))?;
        let reply = self.call_any(Some(token), Request::GetClusterMap { known_epoch: Epoch(0) }, Bytes::new()).await?;
        let map = match reply.response {
            // A map that does not hold together would send blobs to the wrong places: refuse it.
            Response::ClusterMap(Some(m)) => {
                m.validate().map_err(|e| ClientError::Unexpected(format!("a node sent an invalid cluster map: {e}")))?;
                Arc::new(*m)
            }
            other => {
                return Err(ClientError::Unexpected(format!("{other:?} to GetClusterMap")));
            }
        };
        let learned: Vec<String> =
            map.nodes.values().filter(|n| n.state != strata_proto::NodeState::Removed).map(|n| n.addr.clone()).collect();
        *self.removed.write().unwrap_or_else(|e| e.into_inner()) =
            map.nodes.values().filter(|n| n.state == strata_proto::NodeState::Removed).map(|n| n.addr.clone()).collect();
        let changed = {
            let mut current = self.learned.write().unwrap_or_else(|e| e.into_inner());
            let changed = *current != learned;
            *current = learned.clone();
            changed
        };
        if changed
            && !learned.is_empty()
            && let Some(cache) = &self.node_cache
            && let Err(e) = cache.store(&learned)
        {
            tracing::warn!(path = %cache.path.display(), error = %e, "cannot update the node address cache");
        }
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = Some(map.clone());
        Ok(map)
    }

    /// Addresses to try for a blob: its partition's nodes in shard order, then everything else.
    async fn route(&self, id: &ChunkId) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(map) = self.map().await
            && let Ok(loc) = map.locate(id)
        {
            out.extend(loc.write.nodes.iter().map(|n| n.addr.clone()));
        }
        for a in self.addresses() {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// Which of `ids` the cluster already stores durably for this tenant.
    pub async fn has_blobs(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ClientError> {
        let token = self.tenant_token()?;
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(HAS_BATCH) {
            let reply = self.retrying(|| self.call_any(Some(token), Request::HasBlobs { ids: batch.to_vec() }, Bytes::new())).await?;
            match reply.response {
                Response::HasBlobs { present } if present.len() == batch.len() => out.extend(present),
                other => return Err(ClientError::Unexpected(format!("{other:?} to HasBlobs"))),
            }
        }
        Ok(out)
    }

    /// Stores a blob.
    pub async fn put_blob(&self, id: ChunkId, data: Bytes) -> Result<PutOutcome, ClientError> {
        let token = self.tenant_token()?;
        let reply = self
            .retrying(|| async {
                let route = self.route(&id).await;
                self.call_blob(&route, Some(token), Request::PutBlob { id }, data.clone()).await
            })
            .await?;
        match reply.response {
            Response::PutBlob { shards_stored, shards_total } => Ok(PutOutcome { shards_stored, shards_total }),
            other => Err(ClientError::Unexpected(format!("{other:?} to PutBlob"))),
        }
    }

    /// Stores several blobs in one request (the whole batch is retried on connection failures; it is
    /// idempotent). Returns one outcome per blob; refused blobs can be retried alone.
    pub async fn put_blobs(&self, blobs: &[(ChunkId, Bytes)]) -> Result<Vec<Result<PutOutcome, WireError>>, ClientError> {
        let lengths = blobs.iter().map(|(id, b)| (*id, b.len() as u32)).collect();
        let mut body = Vec::with_capacity(blobs.iter().map(|(_, b)| b.len()).sum());
        for (_, b) in blobs {
            body.extend_from_slice(b);
        }
        self.put_blob_batch(lengths, Bytes::from(body)).await
    }

    /// [`put_blobs`](Self::put_blobs) for blobs already laid out back to back in `body`, in the order and
    /// with the lengths of `blobs`.
    pub async fn put_blob_batch(&self, blobs: Vec<(ChunkId, u32)>, body: Bytes) -> Result<Vec<Result<PutOutcome, WireError>>, ClientError> {
        let token = self.tenant_token()?;
        let count = blobs.len();
        let first = blobs.first().map(|(id, _)| *id);
        let reply = self
            .retrying(|| async {
                let route = match first {
                    Some(id) => self.route(&id).await,
                    None => self.addresses(),
                };
                self.call_blob(&route, Some(token), Request::PutBlobs { blobs: blobs.clone() }, body.clone()).await
            })
            .await?;
        match reply.response {
            Response::PutBlobs { results } if results.len() == count => {
                Ok(results.into_iter().map(|r| r.map(|(shards_stored, shards_total)| PutOutcome { shards_stored, shards_total })).collect())
            }
            other => Err(ClientError::Unexpected(format!("{other:?} to PutBlobs"))),
        }
    }

    /// Reads a blob.
    pub async fn get_blob(&self, id: ChunkId) -> Result<Vec<u8>, ClientError> {
        Ok(self.get_blob_excluding(id, &[]).await?.0)
    }

    /// Reads a blob from a stripe other than those in `exclude` (stored copies of the chunk id the caller could
    /// not use); returns it with the identity of the stripe it came from.
    pub async fn get_blob_excluding(&self, id: ChunkId, exclude: &[BlobDigest]) -> Result<(Vec<u8>, Option<BlobDigest>), ClientError> {
        let token = self.tenant_token()?;
        let request = Request::GetBlob { id, exclude: exclude.to_vec() };
        let reply = self
            .retrying(|| async {
                let route = self.route(&id).await;
                self.call_blob(&route, Some(token), request.clone(), Bytes::new()).await
            })
            .await?;
        match reply.response {
            Response::Blob { digest } => Ok((reply.body, digest)),
            other => Err(ClientError::Unexpected(format!("{other:?} to GetBlob"))),
        }
    }

    /// Deletes a blob (tenant admin token).
    pub async fn delete_blob(&self, id: ChunkId) -> Result<bool, ClientError> {
        let token = self.tenant_token()?;
        let reply = self
            .retrying(|| async { self.call_blob(&self.route(&id).await, Some(token), Request::DeleteBlob { id }, Bytes::new()).await })
            .await?;
        match reply.response {
            Response::Deleted { existed } => Ok(existed),
            other => Err(ClientError::Unexpected(format!("{other:?} to DeleteBlob"))),
        }
    }

    /// Cluster status (operator token).
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        let token = self.operator_token()?;
        let reply = self.retrying(|| self.call_any(Some(token), Request::Status, Bytes::new())).await?;
        match reply.response {
            Response::Status(s) => Ok(*s),
            other => Err(ClientError::Unexpected(format!("{other:?} to Status"))),
        }
    }

    /// Creates a tenant (operator token); returns its id and its first admin token (shown once: an operator
    /// obtains no other token of the tenant).
    pub async fn create_tenant(&self, name: &str) -> Result<(TenantId, Secret), ClientError> {
        let token = self.operator_token()?;
        let reply = self.retrying(|| self.call_any(Some(token), Request::CreateTenant { name: name.into() }, Bytes::new())).await?;
        match reply.response {
            Response::TenantCreated { tenant, admin_token } => Ok((tenant, admin_token)),
            other => Err(ClientError::Unexpected(format!("{other:?} to CreateTenant"))),
        }
    }

    /// Creates a backup or restore token with the profile's tenant token, which must be an admin token of the
    /// tenant (`tenant`, or the token's own when `None`). `ttl_secs`: `None` for the default (a year),
    /// `Some(0)` for no expiry.
    pub async fn create_token(
        &self,
        tenant: Option<TenantId>,
        roles: RoleSet,
        ttl_secs: Option<u64>,
        label: &str,
    ) -> Result<Secret, ClientError> {
        let request = Request::CreateToken { tenant, roles, ttl_secs, label: label.into() };
        self.token_created(Credential::Tenant, request).await
    }

    /// Issues tenant `tenant` a new admin token after an operator revoked its previous one (leaked or lost);
    /// refused while the tenant has one (operator token).
    pub async fn replace_tenant_admin_token(&self, tenant: TenantId) -> Result<Secret, ClientError> {
        let request = Request::CreateToken {
            tenant: Some(tenant),
            roles: RoleSet::of(&[Role::Admin]),
            ttl_secs: Some(0),
            label: "replacement admin token".into(),
        };
        self.token_created(Credential::Operator, request).await
    }

    /// Creates another operator token (operator token).
    pub async fn create_operator_token(&self, ttl_secs: Option<u64>, label: &str) -> Result<Secret, ClientError> {
        let request = Request::CreateToken { tenant: None, roles: RoleSet::of(&[Role::Operator]), ttl_secs, label: label.into() };
        self.token_created(Credential::Operator, request).await
    }

    async fn token_created(&self, who: Credential, request: Request) -> Result<Secret, ClientError> {
        let token = self.credential(who)?;
        let reply = self.retrying(|| self.call_any(Some(token), request.clone(), Bytes::new())).await?;
        match reply.response {
            Response::TokenCreated { token } => Ok(token),
            other => Err(ClientError::Unexpected(format!("{other:?} to CreateToken"))),
        }
    }

    fn credential(&self, who: Credential) -> Result<&Secret, ClientError> {
        match who {
            Credential::Operator => self.operator_token(),
            Credential::Tenant => self.tenant_token(),
        }
    }

    /// The tokens `who` may see (an operator: all, or `tenant`'s; a tenant admin: its tenant's).
    pub async fn list_tokens(&self, who: Credential, tenant: Option<TenantId>) -> Result<Vec<TokenInfo>, ClientError> {
        let token = self.credential(who)?;
        let reply = self.retrying(|| self.call_any(Some(token), Request::ListTokens { tenant }, Bytes::new())).await?;
        match reply.response {
            Response::Tokens(t) => Ok(t),
            other => Err(ClientError::Unexpected(format!("{other:?} to ListTokens"))),
        }
    }

    /// Revokes a token by its id (an operator: any token; a tenant admin: its tenant's).
    pub async fn revoke_token(&self, who: Credential, id: [u8; 8]) -> Result<(), ClientError> {
        let token = self.credential(who)?;
        self.retrying(|| self.call_any(Some(token), Request::RevokeToken { id }, Bytes::new())).await.map(|_| ())
    }

    /// Revokes a node (operator token): its certificate is refused from then on, its shards are rebuilt.
    pub async fn revoke_node(&self, node: NodeId) -> Result<(), ClientError> {
        let token = self.operator_token()?;
        self.retrying(|| self.call_any(Some(token), Request::RevokeNode { node }, Bytes::new())).await.map(|_| ())
    }

    /// Begins replacing the cluster CA (operator token). Asked of the nodes holding the current CA key, one
    /// after the other, since only they can sign the new CA into the old one's trust.
    pub async fn rotate_ca(&self) -> Result<(), ClientError> {
        let token = self.operator_token()?;
        let status = self.status().await?;
        let holders: Vec<String> =
            status.nodes.iter().filter(|n| status.ca_holders.contains(&n.descriptor.id)).map(|n| n.descriptor.addr.clone()).collect();
        if holders.is_empty() {
            return Err(ClientError::Unexpected("no node is recorded as holding the CA key yet; retry in a few seconds".into()));
        }
        self.call_in_order(&holders, Some(token), Request::RotateCa, Bytes::new()).await.map(|_| ())
    }

    /// Ends a CA rotation (operator token): only the new CA is trusted from then on.
    pub async fn finish_ca_rotation(&self, force: bool) -> Result<(), ClientError> {
        let token = self.operator_token()?;
        self.retrying(|| self.call_any(Some(token), Request::FinishCaRotation { force }, Bytes::new())).await.map(|_| ())
    }

    /// The CA certificates the cluster trusts (PEM), as a node this client already trusts tells it.
    pub async fn trusted_cas(&self) -> Result<String, ClientError> {
        match self.call_any(None, Request::GetTrust, Bytes::new()).await?.response {
            Response::Trust { ca_pem } => Ok(ca_pem),
            other => Err(ClientError::Unexpected(format!("{other:?} to GetTrust"))),
        }
    }

    /// The cluster's audit log, oldest first (operator token).
    pub async fn audit_log(&self) -> Result<Vec<AuditEntry>, ClientError> {
        let token = self.operator_token()?;
        let reply = self.retrying(|| self.call_any(Some(token), Request::ListAudit, Bytes::new())).await?;
        match reply.response {
            Response::Audit(a) => Ok(a),
            other => Err(ClientError::Unexpected(format!("{other:?} to ListAudit"))),
        }
    }

    /// Creates a one-time join token for a new node (operator token).
    pub async fn create_join_token(&self, ttl_secs: u64) -> Result<Secret, ClientError> {
        let token = self.operator_token()?;
        let reply = self.retrying(|| self.call_any(Some(token), Request::CreateJoinToken { ttl_secs }, Bytes::new())).await?;
        match reply.response {
            Response::TokenCreated { token } => Ok(token),
            other => Err(ClientError::Unexpected(format!("{other:?} to CreateJoinToken"))),
        }
    }

    /// Carries out a storage-generation action (operator token); returns the cluster's description of it.
    pub async fn generation(&self, op: GenerationOp) -> Result<String, ClientError> {
        let token = self.operator_token()?;
        let reply = self.retrying(|| self.call_any(Some(token), Request::Generation(op.clone()), Bytes::new())).await?;
        match reply.response {
            Response::Generation { message } => Ok(message),
            other => Err(ClientError::Unexpected(format!("{other:?} to Generation"))),
        }
    }

    /// A tenant request to any node, retried while retryable.
    async fn tenant_call(&self, request: Request) -> Result<Response, ClientError> {
        let token = self.tenant_token()?;
        Ok(self.retrying(|| self.call_any(Some(token), request.clone(), Bytes::new())).await?.response)
    }

    /// Opens an upload session; returns it and its lease in milliseconds.
    pub async fn open_session(&self) -> Result<(SessionId, u64), ClientError> {
        match self.tenant_call(Request::OpenSession).await? {
            Response::SessionOpened { session, lease_ms } => Ok((session, lease_ms)),
            other => Err(ClientError::Unexpected(format!("{other:?} to OpenSession"))),
        }
    }

    /// Renews a session's lease.
    pub async fn renew_session(&self, session: SessionId) -> Result<(), ClientError> {
        self.tenant_call(Request::RenewSession { session }).await.map(|_| ())
    }

    /// Closes a session without committing.
    pub async fn abort_session(&self, session: SessionId) -> Result<(), ClientError> {
        self.tenant_call(Request::AbortSession { session }).await.map(|_| ())
    }

    /// Commits a snapshot (idempotent: retrying a commit that succeeded succeeds).
    pub async fn commit_snapshot(&self, session: SessionId, snapshot: SnapshotRecord) -> Result<(), ClientError> {
        self.tenant_call(Request::CommitSnapshot { session, snapshot }).await.map(|_| ())
    }

    /// The tenant's snapshot catalog, fetched in pages (years of snapshots do not fit in one reply).
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>, ClientError> {
        self.list_snapshots_in_pages_of(SNAPSHOT_PAGE).await
    }

    /// Like [`ClusterClient::list_snapshots`], asking for at most `limit` snapshots per page.
    pub async fn list_snapshots_in_pages_of(&self, limit: u32) -> Result<Vec<SnapshotRecord>, ClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            match self.tenant_call(Request::ListSnapshotPage { after, limit }).await? {
                Response::SnapshotPage { snapshots, next } => {
                    // A cursor that does not move forward would loop for ever.
                    if next.is_some() && (snapshots.is_empty() || next <= after) {
                        return Err(ClientError::Unexpected("a snapshot page that does not advance".into()));
                    }
                    all.extend(snapshots);
                    // A tenant keeps at most 20,000 snapshots: a node that never stops paging is wrong.
                    if all.len() > MAX_LISTED_SNAPSHOTS {
                        return Err(ClientError::Unexpected(format!("the snapshot catalog ran past {MAX_LISTED_SNAPSHOTS} entries")));
                    }
                    match next {
                        Some(n) => after = Some(n),
                        None => return Ok(all),
                    }
                }
                other => return Err(ClientError::Unexpected(format!("{other:?} to ListSnapshotPage"))),
            }
        }
    }

    /// Removes snapshots from the catalog; returns how many existed.
    pub async fn forget_snapshots(&self, ids: Vec<SnapshotId>) -> Result<u64, ClientError> {
        match self.tenant_call(Request::ForgetSnapshots { ids }).await? {
            Response::Forgotten { count } => Ok(count),
            other => Err(ClientError::Unexpected(format!("{other:?} to ForgetSnapshots"))),
        }
    }

    /// The tenant's wrapped key file, if the cluster holds one.
    pub async fn get_key_file(&self) -> Result<Option<String>, ClientError> {
        match self.tenant_call(Request::GetKeyFile).await? {
            Response::KeyFile(k) => Ok(k),
            other => Err(ClientError::Unexpected(format!("{other:?} to GetKeyFile"))),
        }
    }

    /// Stores the tenant's wrapped key file.
    pub async fn put_key_file(&self, text: String, check: [u8; 32], proof: Option<[u8; 32]>) -> Result<(), ClientError> {
        self.tenant_call(Request::PutKeyFile { text, check, proof }).await.map(|_| ())
    }

    /// Runs garbage collection for the tenant (admin token); it may wait for running backups to commit.
    pub async fn collect_garbage(&self) -> Result<GcReport, ClientError> {
        let token = self.tenant_token()?;
        let mut last = None;
        for addr in self.healthy_first(&self.addresses()) {
            match self.pool.call_within(&addr, Some(token), Request::CollectGarbage, Bytes::new(), Duration::from_secs(2 * 3600)).await {
                Ok(reply) => match reply.response {
                    Response::GarbageCollected(report) => return Ok(report),
                    other => return Err(ClientError::Unexpected(format!("{other:?} to CollectGarbage"))),
                },
                Err(e) if e.is_unreachable() => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::Unreachable { tried: self.addresses().join(", "), last: last.map(|e| e.to_string()).unwrap_or_default() })
    }

    /// Closes pooled connections.
    pub fn close(&self) {
        self.pool.close_all();
    }
}

fn is_retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Rpc(r) => r.is_retryable(),
        ClientError::Unreachable { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_cache_keeps_addresses_and_skips_what_is_not_one() {
        let d = tempfile::tempdir().unwrap();
        let cache = NodeCache::new(d.path().join("profile.nodes"));
        assert!(cache.load().is_empty(), "no file yet");
        let addrs = vec!["10.0.0.7:7401".to_owned(), "node-8.example:7401".to_owned()];
        cache.store(&addrs).unwrap();
        assert_eq!(cache.load(), addrs);
        std::fs::write(
            d.path().join("profile.nodes"),
            "# comment\n10.0.0.7:7401\nnot an address\n:7401\nh:99999\n10.0.0.7:7401\n\n[::1]:7401\n",
        )
        .unwrap();
        assert_eq!(cache.load(), vec!["10.0.0.7:7401".to_owned(), "[::1]:7401".to_owned()]);
        std::fs::write(d.path().join("profile.nodes"), [0xffu8, 0xfe, 0x00]).unwrap();
        assert!(cache.load().is_empty(), "a file that is not text is ignored");
    }
}
