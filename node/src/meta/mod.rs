//! Cluster metadata through Raft (openraft 0.9, storage-v2): the log and state machine on RocksDB, RPCs over
//! QUIC, and [`Meta`], the handle the rest of the node uses to write commands and read state.
//!
//! Writes may be issued on any node: a follower forwards them to the leader over the node-to-node connection.
//! Reads that must be linearizable call [`Meta::read_barrier`] first (ReadIndex: the leader confirms its
//! leadership and returns its commit index; the local replica waits until it has applied that far). Raft
//! never holds per-chunk data, only the small tables of [`state::MetaState`].

pub mod authority;
pub mod catalog;
pub mod command;
mod custody_state;
pub mod generations;
pub mod leader_tasks;
pub mod legacy;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod session_watch;
pub mod state;
pub mod state_machine;
mod state_v1;
mod state_v2;
mod state_v3;
pub mod tokens;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use strata_proto::{ErrorCode, NodeId, Request, WireError};
use strata_transport::RpcPool;

use self::authority::{Origin, Principal, check_proposal, principal_of};
use self::command::{MetaCommand, MetaResponse};
use self::log_store::LogStore;
use self::network::RaftNetworkFactoryImpl;
use self::state_machine::{MetaReader, StateMachineStore};
use self::types::Raft;
use crate::config::RaftSettings;
use crate::db::Db;

/// Errors at the metadata boundary.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No leader could be reached before the deadline.
    #[error("no Raft leader reachable within {0} ms; is a majority of voters running?")]
    NoLeader(u128),
    /// Raft itself failed (storage error, shutdown).
    #[error("raft: {0}")]
    Raft(String),
    /// The leader refused the command.
    #[error(transparent)]
    Rejected(WireError),
    /// Forwarding to the leader failed.
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    /// Opening storage failed.
    #[error("metadata storage: {0}")]
    Storage(String),
}

impl MetaError {
    /// The wire error for a client.
    pub fn to_wire(&self) -> WireError {
        match self {
            MetaError::Rejected(e) => e.clone(),
            MetaError::NoLeader(_) | MetaError::Forward(_) => WireError::new(ErrorCode::Unavailable, self.to_string()),
            _ => WireError::new(ErrorCode::Internal, self.to_string()),
        }
    }
}

/// A metadata request forwarded to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command on behalf of `origin`; the leader checks the credential itself.
    Write {
        /// The command.
        cmd: MetaCommand,
        /// Whose command it is.
        origin: Origin,
    },
    /// Return the index a linearizable read must wait for.
    ReadIndex,
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    /// The command was committed and applied with this result.
    Written(MetaResponse),
    /// Reads must wait until this index is applied.
    ReadIndex(Option<u64>),
    /// The receiver is not the leader (it names the leader if it knows it).
    NotLeader(Option<u64>),
    /// Raft failed on the leader.
    Failed(String),
}

/// How long a write or barrier keeps looking for a leader.
const LEADER_DEADLINE: Duration = Duration::from_secs(15);

/// How far the date in a CA key holder proof may be from the checking node's clock.
const HOLDER_PROOF_WINDOW: Duration = Duration::from_secs(600);

/// The node's handle on cluster metadata.
#[derive(Clone)]
pub struct Meta {
    /// The Raft instance.
    pub raft: Raft,
    /// Read access to applied state.
    pub reader: MetaReader,
    node_id: NodeId,
    pool: Arc<RpcPool>,
    voters: network::Voters,
    /// The cluster CA certificate (PEM), against which CA key holder proofs are checked.
    ca_pem: String,
}

/// Keeps `voters` equal to the voters of the effective membership, until Raft shuts down.
async fn follow_voters(raft: Raft, voters: network::Voters) {
    let mut metrics = raft.metrics();
    loop {
        let current: std::collections::BTreeSet<u64> = metrics.borrow_and_update().membership_config.membership().voter_ids().collect();
        *voters.write().unwrap_or_else(|e| e.into_inner()) = current;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Meta {
    /// Starts Raft on `db`.
    pub async fn start(
        node_id: NodeId,
        db: Arc<Db>,
        pool: Arc<RpcPool>,
        settings: &RaftSettings,
        cluster_name: &str,
        max_body_bytes: u64,
        ca_pem: String,
    ) -> Result<Self, MetaError> {
        let config = openraft::Config {
            cluster_name: cluster_name.to_owned(),
            heartbeat_interval: settings.heartbeat_interval_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: 200,
            // A replication batch of full entries must stay below the body limit peers accept, or followers
            // refuse every AppendEntries once the log holds large entries.
            max_payload_entries: (max_body_bytes / 2 / authority::MAX_ENTRY_BYTES as u64).clamp(1, 300),
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Raft(e.to_string()))?;
        let log = LogStore::new(db.clone());
        let sm = StateMachineStore::open(db).map_err(|e| MetaError::Storage(e.to_string()))?;
        let reader = sm.reader();
        let voters = network::Voters::default();
        let network = RaftNetworkFactoryImpl::new(pool.clone());
        let raft = Raft::new(node_id.0, Arc::new(config), network, log, sm).await.map_err(|e| MetaError::Raft(e.to_string()))?;
        tokio::spawn(follow_voters(raft.clone(), voters.clone()));
        Ok(Meta { raft, reader, node_id, pool, voters, ca_pem })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Makes this node the single voter of a new Raft group, unless the group already exists.
    pub async fn initialize_if_new(&self, addr: &str) -> Result<bool, MetaError> {
        if self.raft.is_initialized().await.map_err(|e| MetaError::Raft(e.to_string()))? {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.node_id.0, BasicNode { addr: addr.to_owned() })]);
        self.raft.initialize(members).await.map_err(|e| MetaError::Raft(e.to_string()))?;
        Ok(true)
    }

    /// The current leader as this node sees it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The address of node `leader` in the Raft membership.
    pub fn leader_addr(&self, leader: u64) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    /// Registers node `node`, which asked this node (the leader) over a connection that showed its certificate.
    /// Refused unless this node is the leader: anywhere else the request would reach the leader as this node's.
    pub async fn register_for(&self, node: NodeId, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        let now = crate::server::now_ms();
        self.reader
            .read(|s| principal_of(s, &Origin::Node, node, now).and_then(|p| check_proposal(s, &p, &cmd)))
            .map_err(MetaError::Rejected)?;
        match self.raft.client_write(cmd).await {
            Ok(resp) => match resp.data {
                MetaResponse::Rejected(e) => Err(MetaError::Rejected(e)),
                r => Ok(r),
            },
            Err(e) => Err(MetaError::Raft(e.to_string())),
        }
    }

    /// Proposes a command of this node's own (`Origin::Node`) through the leader and returns its result.
    /// Refusals become [`MetaError::Rejected`].
    pub async fn write(&self, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        self.write_as(Origin::Node, cmd).await
    }

    /// Proposes `cmd` on behalf of `origin` (the credential a client presented, or this node). The command is
    /// checked here against the principal behind `origin` ([`authority`]) and again by the leader, so nothing
    /// a caller may not do reaches the log. Refusals become [`MetaError::Rejected`].
    pub async fn write_as(&self, origin: Origin, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        let now = crate::server::now_ms();
        self.reader
            .read(|s| principal_of(s, &origin, self.node_id, now).and_then(|p| check_proposal(s, &p, &cmd)))
            .map_err(MetaError::Rejected)?;
        self.check_holder_proof(&cmd, now).map_err(MetaError::Rejected)?;
        match self.propose(ForwardRequest::Write { cmd, origin }).await? {
            ForwardReply::Written(MetaResponse::Rejected(e)) => Err(MetaError::Rejected(e)),
            ForwardReply::Written(r) => Ok(r),
            other => Err(MetaError::Forward(format!("unexpected reply {other:?}"))),
        }
    }

    /// Waits until this replica reflects every write committed before the call (linearizable reads).
    pub async fn read_barrier(&self) -> Result<(), MetaError> {
        let index = match self.propose(ForwardRequest::ReadIndex).await? {
            ForwardReply::ReadIndex(i) => i,
            other => return Err(MetaError::Forward(format!("unexpected reply {other:?}"))),
        };
        self.raft
            .wait(Some(LEADER_DEADLINE))
            .applied_index_at_least(index, "read barrier")
            .await
            .map_err(|e| MetaError::Raft(e.to_string()))?;
        Ok(())
    }

    /// Sends a request to the leader (locally if we are it), retrying while the leader is unknown or changing.
    async fn propose(&self, req: ForwardRequest) -> Result<ForwardReply, MetaError> {
        let started = Instant::now();
        let mut last_error = String::from("no leader known");
        while started.elapsed() < LEADER_DEADLINE {
            let reply = match self.leader() {
                Some(l) if l == self.node_id.0 => self.handle_as_leader(&req, self.node_id).await,
                Some(l) => match self.leader_addr(l) {
                    Some(addr) => self.forward(l, &addr, &req).await.unwrap_or_else(|e| ForwardReply::Failed(e.to_string())),
                    None => ForwardReply::NotLeader(None),
                },
                None => ForwardReply::NotLeader(None),
            };
            match reply {
                ForwardReply::NotLeader(_) => {}
                ForwardReply::Failed(e) => last_error = e,
                done => return Ok(done),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(error = %last_error, "metadata request found no leader");
        Err(MetaError::NoLeader(LEADER_DEADLINE.as_millis()))
    }

    async fn forward(&self, leader: u64, addr: &str, req: &ForwardRequest) -> Result<ForwardReply, String> {
        let body = postcard::to_stdvec(req).map_err(|e| e.to_string())?;
        let name = crate::pki::node_dns_name(NodeId(leader));
        let reply = self.pool.call_named(addr, &name, None, Request::Meta, body.into()).await.map_err(|e| e.to_string())?;
        postcard::from_bytes(&reply.body).map_err(|e| format!("malformed forward reply: {e}"))
    }

    /// Serves a forwarded request (the leader side of `Meta::propose`) that arrived from node `via`: a write is
    /// checked against the credential that came with it before it is proposed.
    pub async fn handle_as_leader(&self, req: &ForwardRequest, via: NodeId) -> ForwardReply {
        match req {
            ForwardRequest::Write { cmd, origin } => {
                if let Err(e) = self.leader_check(origin, via, cmd).await {
                    return ForwardReply::Written(MetaResponse::Rejected(e));
                }
                match self.raft.client_write(cmd.clone()).await {
                    Ok(resp) => ForwardReply::Written(resp.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => ForwardReply::NotLeader(f.leader_id),
                    Err(e) => ForwardReply::Failed(e.to_string()),
                }
            }
            ForwardRequest::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _applied)) => ForwardReply::ReadIndex(read.map(|l| l.index)),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => ForwardReply::NotLeader(f.leader_id),
                Err(e) => ForwardReply::Failed(e.to_string()),
            },
        }
    }

    /// Serves a Raft RPC from peer `from` (a member: `server::auth` refused removed and unknown nodes already):
    /// refuses a vote request unless `from` is a voter (once this node knows the membership), decodes the body,
    /// checks that the vote in it is `from`'s own (a node certificate speaks for its node only: no node can
    /// campaign or lead in another's name), runs it and returns the encoded result.
    pub async fn handle_raft(&self, rpc: strata_proto::RaftRpc, body: &[u8], from: NodeId) -> Result<Vec<u8>, WireError> {
        let bad = |e: postcard::Error| WireError::new(ErrorCode::BadRequest, format!("malformed raft {rpc:?} body: {e}"));
        // Only voters campaign: a learner (every storage node) cannot start elections. A candidate whose log
        // is longer than ours may know a newer voter set than we do (a membership change we have not received
        // yet), so its request goes to openraft, which grants it only on Raft's own terms. Replication is not
        // held to the voter rule at all: a follower that restarts with an old log knows an old voter set,
        // possibly all gone, and only the current leader's AppendEntries can tell it the new one.
        let not_voter = {
            let voters = self.voters.read().unwrap_or_else(|e| e.into_inner());
            !voters.is_empty() && !voters.contains(&from.0)
        };
        let own = |vote: &openraft::Vote<u64>| -> Result<(), WireError> {
            match vote.leader_id().voted_for() {
                Some(n) if n == from.0 => Ok(()),
                other => Err(WireError::new(
                    ErrorCode::PermissionDenied,
                    format!("{from} sent a Raft {rpc:?} in the name of node {}", other.map_or("none".into(), |n| n.to_string())),
                )),
            }
        };
        let encoded = match rpc {
            strata_proto::RaftRpc::AppendEntries => {
                let req: openraft::raft::AppendEntriesRequest<types::TypeConfig> = postcard::from_bytes(body).map_err(bad)?;
                own(&req.vote)?;
                postcard::to_stdvec(&self.raft.append_entries(req).await)
            }
            strata_proto::RaftRpc::Vote => {
                let req: openraft::raft::VoteRequest<u64> = postcard::from_bytes(body).map_err(bad)?;
                own(&req.vote)?;
                let ours = self.raft.metrics().borrow().last_log_index;
                if not_voter && req.last_log_id.map(|l| l.index) <= ours {
                    return Err(WireError::new(
                        ErrorCode::PermissionDenied,
                        format!("{from} is not a Raft voter here: its vote request is refused"),
                    ));
                }
                postcard::to_stdvec(&self.raft.vote(req).await)
            }
            strata_proto::RaftRpc::InstallSnapshot => {
                let req: openraft::raft::InstallSnapshotRequest<types::TypeConfig> = postcard::from_bytes(body).map_err(bad)?;
                own(&req.vote)?;
                postcard::to_stdvec(&self.raft.install_snapshot(req).await)
            }
        };
        encoded.map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
    }

    /// The leader's own check of a write: the principal is derived from the credential that came with it (a
    /// token is looked up in the leader's state, caught up to its commit index first if it is not there yet).
    async fn leader_check(&self, origin: &Origin, via: NodeId, cmd: &MetaCommand) -> Result<(), WireError> {
        let now = crate::server::now_ms();
        // Only the leader knows, on its own monotonic clock, which sessions went a lease without renewal: a
        // DropSessions forwarded by any other node (a stale leader, or a compromised one) is refused.
        if matches!(cmd, MetaCommand::DropSessions { .. }) && via != self.node_id {
            return Err(WireError::new(ErrorCode::PermissionDenied, format!("only the leader ends upload sessions, not {via}")));
        }
        self.check_holder_proof(cmd, now)?;
        let check = |s: &state::MetaState| -> Result<Principal, WireError> {
            let p = principal_of(s, origin, via, now)?;
            check_proposal(s, &p, cmd)?;
            Ok(p)
        };
        match self.reader.read(check) {
            Err(e) if e.code == ErrorCode::Unauthenticated && matches!(origin, Origin::Token(_)) => {
                // Created a moment ago and committed, but not applied here yet.
                if let Ok((read, _)) = self.raft.get_read_log_id().await {
                    let _ =
                        self.raft.wait(Some(Duration::from_secs(5))).applied_index_at_least(read.map(|l| l.index), "token lookup").await;
                }
                self.reader.read(check).map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// A node records itself as a CA key holder only with a fresh signature by the CA key, so a node that never
    /// held the key cannot make the cluster believe it does (and let the last real holders be dropped).
    fn check_holder_proof(&self, cmd: &MetaCommand, now: u64) -> Result<(), WireError> {
        let MetaCommand::RecordCaHolder { node, now_ms, proof } = cmd else { return Ok(()) };
        if now_ms.abs_diff(now) > HOLDER_PROOF_WINDOW.as_millis() as u64 {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!("the CA key holder proof of {node} is dated {now_ms} ms, too far from this node's clock ({now} ms)"),
            ));
        }
        // The CA that issues now: the last trusted one after a rotation, else the CA the node started with.
        let issuing =
            self.reader.read(|s| s.cas.last().cloned()).unwrap_or_else(|| crate::pki::pem_blocks(&self.ca_pem).pop().unwrap_or_default());
        if !crate::pki::verify_holder_proof(&issuing, *node, *now_ms, proof) {
            return Err(WireError::new(ErrorCode::PermissionDenied, format!("{node} did not prove that it holds the cluster CA key")));
        }
        Ok(())
    }

    /// Serves a `Request::Meta` body forwarded by node `via`.
    pub async fn handle_forward(&self, body: &[u8], via: NodeId) -> Result<Vec<u8>, WireError> {
        let req: ForwardRequest =
            postcard::from_bytes(body).map_err(|e| WireError::new(ErrorCode::BadRequest, format!("malformed metadata request: {e}")))?;
        let reply = self.handle_as_leader(&req, via).await;
        postcard::to_stdvec(&reply).map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

#[cfg(test)]
mod storage_suite;
