//! Shard operations on any node of the cluster: local calls go straight to the store (on the blocking pool),
//! remote ones go over the node-to-node pool. Every outcome updates peer health, and every shard received from
//! a peer is verified against its header before it is trusted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_proto::cluster_map::NodeDescriptor;
use strata_proto::{
    ChunkId, Epoch, ErrorCode, GcAction, Holding, NodeId, PartitionId, Request, Response, ShardHeader, ShardKey, ShardPut, StripeTag,
    TenantId, WriteMode,
};
use strata_transport::{RpcError, RpcPool};

use crate::custody::{Custody, CustodyError};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::{Shard, ShardStore, ShardWrite, StoreError};

/// A shard on its way to a holder.
#[derive(Debug, Clone)]
pub struct OutgoingShard {
    /// Where.
    pub key: ShardKey,
    /// Verification data.
    pub header: ShardHeader,
    /// The bytes.
    pub data: Bytes,
    /// Repair only: the stripe whose intact shard in the slot may be replaced.
    pub replaces: Option<StripeTag>,
}

/// Why a shard operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardOpError {
    /// The holder could not be reached (or was skipped because it is known to be down).
    #[error("{node} unreachable: {reason}")]
    Unreachable {
        /// Holder.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The holder has no room.
    #[error("{node} has no space: {reason}")]
    NoSpace {
        /// Holder.
        node: NodeId,
        /// Its explanation.
        reason: String,
    },
    /// The shard is stored but corrupt.
    #[error("{node} holds a corrupt shard: {reason}")]
    Corrupt {
        /// Holder.
        node: NodeId,
        /// What failed.
        reason: String,
    },
    /// The holder keeps a shard this write may not replace (another stripe, or a damaged shard for a create).
    #[error("{node} kept what it holds: {reason}")]
    Conflict {
        /// Holder.
        node: NodeId,
        /// Its explanation.
        reason: String,
    },
    /// The holder does not have the shard.
    #[error("{node} does not hold the shard")]
    NotFound {
        /// Holder.
        node: NodeId,
    },
    /// Any other failure at the holder.
    #[error("{node} failed: {reason}")]
    Failed {
        /// Holder.
        node: NodeId,
        /// Its explanation.
        reason: String,
    },
}

/// Shard operations addressed to nodes.
pub struct ShardPeers {
    me: NodeId,
    store: Arc<dyn ShardStore>,
    custody: Arc<Custody>,
    pool: Arc<RpcPool>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl ShardPeers {
    /// Shard access from node `me`.
    pub fn new(custody: Arc<Custody>, pool: Arc<RpcPool>, health: Arc<Health>, metrics: Arc<Metrics>, timeout: Duration) -> Self {
        let store = custody.store().clone();
        let me = custody.me();
        ShardPeers { me, store, custody, pool, health, metrics, timeout }
    }

    /// This node's shard custody.
    pub fn custody(&self) -> &Arc<Custody> {
        &self.custody
    }

    fn store_error(&self, e: StoreError) -> ShardOpError {
        let node = self.me;
        match e {
            StoreError::NoSpace(reason) => ShardOpError::NoSpace { node, reason },
            StoreError::Corrupt { reason, .. } => ShardOpError::Corrupt { node, reason },
            StoreError::Conflict { reason, .. } => ShardOpError::Conflict { node, reason },
            other => ShardOpError::Failed { node, reason: other.to_string() },
        }
    }

    async fn local<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ShardStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ShardOpError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
            Ok(r) => r.map_err(|e| self.store_error(e)),
            Err(e) => Err(ShardOpError::Failed { node: self.me, reason: format!("store task failed: {e}") }),
        }
    }

    async fn remote(
        &self,
        node: &NodeDescriptor,
        op: &'static str,
        request: Request,
        body: Bytes,
    ) -> Result<strata_transport::Reply, ShardOpError> {
        self.remote_with(node, op, request, body, true).await
    }

    /// Like `remote`; with `skip_if_down` false the call is tried even to a node whose probes failed
    /// (maintenance work, where a wasted timeout matters less than skipping a live node).
    async fn remote_with(
        &self,
        node: &NodeDescriptor,
        op: &'static str,
        request: Request,
        body: Bytes,
        skip_if_down: bool,
    ) -> Result<strata_transport::Reply, ShardOpError> {
        if skip_if_down && self.health.is_down(node.id) {
            self.metrics.shard_rpc_failures.with_label_values(&[op]).inc();
            return Err(ShardOpError::Unreachable { node: node.id, reason: "its last probe failed".into() });
        }
        // Asking for the node's own name: the certificate must be that node's, not any node's.
        let name = crate::pki::node_dns_name(node.id);
        let result = tokio::time::timeout(self.timeout, self.pool.call_named(&node.addr, &name, None, request, body)).await;
        let result = result.unwrap_or_else(|_| Err(RpcError::Timeout { addr: node.addr.clone(), op, ms: self.timeout.as_millis() }));
        match &result {
            Ok(_) => self.health.record_ok(node.id),
            Err(e) if e.is_unreachable() => self.health.record_fail(node.id),
            Err(_) => {}
        }
        result.map_err(|e| {
            if !matches!(e.code(), Some(ErrorCode::NotFound)) {
                self.metrics.shard_rpc_failures.with_label_values(&[op]).inc();
            }
            match e {
                e if e.is_unreachable() => ShardOpError::Unreachable { node: node.id, reason: e.to_string() },
                RpcError::Remote { error, .. } => match error.code {
                    ErrorCode::NoSpace => ShardOpError::NoSpace { node: node.id, reason: error.message },
                    ErrorCode::Corrupt => ShardOpError::Corrupt { node: node.id, reason: error.message },
                    ErrorCode::Conflict => ShardOpError::Conflict { node: node.id, reason: error.message },
                    ErrorCode::NotFound => ShardOpError::NotFound { node: node.id },
                    _ => ShardOpError::Failed { node: node.id, reason: error.to_string() },
                },
                other => ShardOpError::Failed { node: node.id, reason: other.to_string() },
            }
        })
    }

    /// Stores several shards on `node` with one durable write; one result per shard, in order. `epoch` is the
    /// epoch of the map the shards were placed with (see `Custody`); `mode` says what may happen to a slot
    /// that already holds a shard.
    pub async fn put_many(
        &self,
        node: &NodeDescriptor,
        epoch: Epoch,
        mode: WriteMode,
        items: Vec<OutgoingShard>,
    ) -> Result<Vec<Result<(), ShardOpError>>, ShardOpError> {
        if node.id == self.me {
            let me = self.me;
            let custody = self.custody.clone();
            let results = tokio::task::spawn_blocking(move || {
                let writes: Vec<ShardWrite<'_>> =
                    items.iter().map(|o| ShardWrite { key: o.key, header: o.header, data: &o.data, replaces: o.replaces }).collect();
                custody.put_many(&writes, mode)
            })
            .await
            .map_err(|e| ShardOpError::Failed { node: me, reason: format!("store task failed: {e}") })?;
            return Ok(results
                .into_iter()
                .map(|r| {
                    r.map_err(|e| match e {
                        CustodyError::Store(s) => self.store_error(s),
                        other => ShardOpError::Failed { node: me, reason: other.to_string() },
                    })
                })
                .collect());
        }
        let shards: Vec<ShardPut> =
            items.iter().map(|o| ShardPut { key: o.key, header: o.header, len: o.data.len() as u32, replaces: o.replaces }).collect();
        let mut body = Vec::with_capacity(items.iter().map(|o| o.data.len()).sum());
        for o in &items {
            body.extend_from_slice(&o.data);
        }
        let n = items.len();
        match self.remote(node, "put_shards", Request::PutShards { shards, epoch, mode }, Bytes::from(body)).await?.response {
            Response::PutShards { results } if results.len() == n => Ok(results
                .into_iter()
                .map(|r| {
                    r.map_err(|e| match e.code {
                        ErrorCode::NoSpace => ShardOpError::NoSpace { node: node.id, reason: e.message },
                        ErrorCode::Conflict => ShardOpError::Conflict { node: node.id, reason: e.message },
                        _ => ShardOpError::Failed { node: node.id, reason: e.to_string() },
                    })
                })
                .collect()),
            other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
        }
    }

    /// Reads a shard from `node`: `Ok(None)` when the holder does not have it.
    pub async fn get(&self, node: &NodeDescriptor, key: ShardKey) -> Result<Option<Shard>, ShardOpError> {
        if node.id == self.me {
            return self.local(move |s| s.get(&key)).await;
        }
        match self.remote(node, "get_shard", Request::GetShard { key }, Bytes::new()).await {
            Ok(reply) => match reply.response {
                Response::Shard { header } if header.verifies(key.index, &reply.body) => Ok(Some(Shard { header, data: reply.body })),
                Response::Shard { .. } => {
                    Err(ShardOpError::Corrupt { node: node.id, reason: "shard failed its checksum in transit".into() })
                }
                other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
            },
            Err(ShardOpError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What `node` holds of each chunk: the shard indices and their stripe.
    pub async fn held(
        &self,
        node: &NodeDescriptor,
        tenant: TenantId,
        chunks: Vec<(PartitionId, ChunkId)>,
        include_condemned: bool,
    ) -> Result<Vec<Holding>, ShardOpError> {
        if node.id == self.me {
            return self.local(move |s| chunks.iter().map(|(p, c)| s.held(tenant, *p, c, include_condemned)).collect()).await;
        }
        let n = chunks.len();
        match self.remote(node, "has_shards", Request::HasShards { tenant, chunks, include_condemned }, Bytes::new()).await?.response {
            Response::HasShards { held } if held.len() == n => Ok(held),
            other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
        }
    }

    /// One page of the shard keys `node` holds in `partition`, once it has applied `min_epoch` and fenced off
    /// writes admitted under older maps (see `Custody`). Goes over QUIC even to this node, like other
    /// maintenance calls, so the fence runs in one place.
    pub async fn scan(
        &self,
        node: &NodeDescriptor,
        partition: PartitionId,
        after: Option<ShardKey>,
        limit: u32,
        min_epoch: Epoch,
    ) -> Result<Vec<(ShardKey, ShardHeader)>, ShardOpError> {
        let request = Request::ScanShards { partition, after, limit, min_epoch };
        match self.remote_with(node, "scan_shards", request, Bytes::new(), false).await?.response {
            Response::ShardKeys { entries } => Ok(entries),
            other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
        }
    }

    /// A page of the (partition, chunk) entries a tenant has on `node` in `partitions`.
    pub async fn list_chunks(
        &self,
        node: &NodeDescriptor,
        tenant: TenantId,
        partitions: Vec<PartitionId>,
        after: Option<(PartitionId, ChunkId)>,
        limit: u32,
    ) -> Result<Vec<(PartitionId, ChunkId)>, ShardOpError> {
        let request = Request::ListChunks { tenant, partitions, after, limit };
        // Maintenance calls go over QUIC even to this node (one code path; the extra local hop is cheap here).
        match self.remote_with(node, "list_chunks", request, Bytes::new(), false).await?.response {
            Response::Chunks { entries } => Ok(entries),
            other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
        }
    }

    /// Runs a garbage-collection step on `node`'s shards of `chunks`; returns (shards, bytes) affected.
    pub async fn gc(
        &self,
        node: &NodeDescriptor,
        tenant: TenantId,
        action: GcAction,
        chunks: Vec<(PartitionId, ChunkId)>,
    ) -> Result<(u64, u64), ShardOpError> {
        match self.remote_with(node, "gc_shards", Request::GcShards { tenant, action, chunks }, Bytes::new(), false).await?.response {
            Response::GcShards { shards, bytes } => Ok((shards, bytes)),
            other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
        }
    }

    /// Deletes a shard on `node`; returns whether it existed.
    pub async fn delete(&self, node: &NodeDescriptor, key: ShardKey) -> Result<bool, ShardOpError> {
        if node.id == self.me {
            return self.local(move |s| s.delete(&key)).await;
        }
        match self.remote(node, "delete_shard", Request::DeleteShard { key }, Bytes::new()).await?.response {
            Response::Deleted { existed } => Ok(existed),
            other => Err(ShardOpError::Failed { node: node.id, reason: format!("unexpected reply {other:?}") }),
        }
    }
}
