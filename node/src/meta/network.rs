//! Raft RPCs over Strata's QUIC transport.
//!
//! Each openraft RPC is postcard-encoded into the body of a `Request::Raft` on the node-to-node (mutual TLS)
//! connection pool; the reply body is the encoded `Result` from the peer's Raft. A peer that cannot be reached
//! is reported as `Unreachable` so openraft backs off instead of hammering it. Answers are taken as Raft
//! defines them, a higher vote from a learner included: a node that was demoted while cut off comes back
//! with a higher term, and only a leader that steps above it brings it back into replication.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_proto::{RaftRpc, Request};
use strata_transport::RpcPool;

use super::types::TypeConfig;

/// The voters of the Raft membership as this node sees it, kept current from openraft's metrics.
pub type Voters = Arc<RwLock<BTreeSet<u64>>>;

/// Creates a [`PeerLink`] per Raft peer.
#[derive(Clone)]
pub struct RaftNetworkFactoryImpl {
    pool: Arc<RpcPool>,
}

impl RaftNetworkFactoryImpl {
    /// Raft networking over `pool` (the node's mutual-TLS pool).
    pub fn new(pool: Arc<RpcPool>) -> Self {
        RaftNetworkFactoryImpl { pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for RaftNetworkFactoryImpl {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerLink {
        PeerLink { target, addr: node.addr.clone(), pool: self.pool.clone() }
    }
}

/// The link to one Raft peer.
pub struct PeerLink {
    target: u64,
    addr: String,
    pool: Arc<RpcPool>,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl PeerLink {
    async fn send<Req, Resp, E>(&self, rpc: RaftRpc, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let name = crate::pki::node_dns_name(strata_proto::NodeId(self.target));
        let call = self.pool.call_named(&self.addr, &name, None, Request::Raft { rpc }, Bytes::from(body));
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
            Ok(Err(e)) if e.is_unreachable() => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(e)) => return Err(RPCError::Network(NetworkError::new(&e))),
            Ok(Ok(reply)) => reply,
        };
        let result: Result<Resp, RaftError<u64, E>> =
            postcard::from_bytes(&reply.body).map_err(|e| RPCError::Network(NetworkError::new(&AnyError::new(&e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.send(RaftRpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.send(RaftRpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.send(RaftRpc::Vote, &rpc, &option).await
    }
}
