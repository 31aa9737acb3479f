//! Commands replicated through Raft and their results.
//!
//! A command carries every input its effect depends on (including the proposer's clock where time matters), so
//! applying it is deterministic on every replica. Application-level refusals (a name already taken, a stale
//! epoch) are results, not errors: the log entry is committed either way and every replica refuses alike.

use serde::{Deserialize, Serialize};

use super::authority::Actor;

/// Most sessions one [`MetaCommand::DropSessions`] ends.
pub const MAX_DROPPED_SESSIONS: usize = 1024;
use super::legacy::SnapshotRecordV1;
use strata_proto::{
    EcProfile, Epoch, ErrorCode, NodeAnnouncement, NodeId, NodeSet, NodeState, PartitionId, PartitionPlacement, RoleSet, SessionId,
    SnapshotId, SnapshotRecord, TenantId, WireError,
};

/// Digest of a bearer secret (see `strata_proto::Secret::digest`).
pub type Digest = [u8; 32];

/// Parameters of a new cluster, applied once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitCluster {
    /// Human-readable cluster name.
    pub cluster_name: String,
    /// `2^partition_bits` partitions, fixed for the cluster's life.
    pub partition_bits: u8,
    /// Name of the first storage generation.
    pub generation_name: String,
    /// Its erasure-code profile.
    pub profile: EcProfile,
    /// Digest of the first operator token.
    pub operator_token: Digest,
    /// Proposer's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// A metadata change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Initialise the cluster (only once).
    Init(InitCluster),
    /// Add a node or update its address, zone or capacity.
    RegisterNode(NodeAnnouncement),
    /// Allocate a node id for a joining node (old log entries only; joins now use [`MetaCommand::AdmitNode`]).
    ReserveNodeId,
    /// Record a one-time join token.
    CreateJoinToken {
        /// Its digest.
        digest: Digest,
        /// When it stops being valid.
        expires_at_ms: u64,
    },
    /// Use up a join token; refused if unknown, used or expired (old log entries only).
    ConsumeJoinToken {
        /// Its digest.
        digest: Digest,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Create a tenant.
    CreateTenant {
        /// Unique name.
        name: String,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Record a token (old log entries only; tokens are now issued with [`MetaCommand::IssueToken`]).
    CreateToken {
        /// Its digest.
        digest: Digest,
        /// Tenant it is scoped to.
        tenant: Option<TenantId>,
        /// Roles granted.
        roles: RoleSet,
        /// Expiry, if any.
        expires_at_ms: Option<u64>,
        /// Operator-visible label.
        label: String,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Replace the partition table, if the map is still at `expected_epoch`.
    SetPlacement {
        /// Epoch the placement was computed from.
        expected_epoch: Epoch,
        /// One entry per partition.
        partitions: Vec<PartitionPlacement>,
    },
    /// Does nothing; used to commit an entry of the leader's term.
    Noop,
    /// Open an upload session with the next sequential id (old log entries only; see
    /// [`MetaCommand::OpenSession`]).
    OpenSessionV1 {
        /// Tenant.
        tenant: TenantId,
        /// Proposer's clock.
        now_ms: u64,
        /// Lease: the session expires this long after its last renewal.
        lease_ms: u64,
    },
    /// Renew a session's lease as log entries written before leases were kept by the leader's monotonic clock
    /// hold it: refused if the lease already ran out by the proposer's clock, and never moves the renewal
    /// time back. Kept for those entries; nodes propose [`MetaCommand::RenewSession`].
    RenewSessionV1 {
        /// Tenant (must own the session).
        tenant: TenantId,
        /// Session.
        session: SessionId,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Close a session without a snapshot.
    CloseSession {
        /// Tenant (must own the session).
        tenant: TenantId,
        /// Session.
        session: SessionId,
    },
    /// A snapshot commit as protocol version 1 proposed it (log entries written before reference-list
    /// digests); applied exactly like [`MetaCommand::CommitSnapshotV2`] with no digests.
    CommitSnapshotV1 {
        /// Tenant.
        tenant: TenantId,
        /// Session it was uploaded in.
        session: SessionId,
        /// The snapshot.
        record: SnapshotRecordV1,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Remove snapshots from a tenant's catalog.
    ForgetSnapshots {
        /// Tenant.
        tenant: TenantId,
        /// Snapshots.
        ids: Vec<SnapshotId>,
    },
    /// Store a tenant's wrapped key file (old log entries only; see [`MetaCommand::StoreKeyFile`]).
    PutKeyFile {
        /// Tenant.
        tenant: TenantId,
        /// Key file text.
        text: String,
        /// Digest of the update key of this key file.
        check: Digest,
        /// The update key of the key file being replaced.
        proof: Option<Digest>,
    },
    /// Drop sessions whose lease ran out.
    ExpireSessions {
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Create an empty, Active storage generation.
    AddGeneration {
        /// Unique name.
        name: String,
        /// Its erasure-code profile.
        profile: EcProfile,
    },
    /// Move a generation along its life cycle.
    GenerationStep {
        /// Generation name.
        name: String,
        /// What to do.
        step: GenerationStep,
    },
    /// Override every node's configured migration rate (`None`: back to the configured values).
    SetMigrationRate {
        /// Bytes per second per node; 0 = unlimited.
        bytes_per_sec: Option<u64>,
    },
    /// Start moving partitions: each gets a target set. Refused unless the map is still at `expected_epoch`.
    StartMoves {
        /// Epoch the moves were planned from.
        expected_epoch: Epoch,
        /// Partition and the set it moves to.
        moves: Vec<(PartitionId, NodeSet)>,
    },
    /// Declare a node Down (its shards get rebuilt elsewhere) or Active again.
    SetNodeState {
        /// The node.
        node: NodeId,
        /// `Down` or `Active`.
        state: NodeState,
    },
    /// A partition's data is copied to and verified on its target: the target becomes current.
    CompleteMove {
        /// The partition.
        partition: PartitionId,
        /// The target the mover copied to (refused if the partition's target has changed since).
        target: NodeSet,
    },
    /// A snapshot commit as log entries written before leases were kept by the leader's monotonic clock hold
    /// it: refused if the session's lease ran out by the proposer's clock. Kept for those entries; nodes
    /// propose [`MetaCommand::CommitSnapshot`].
    CommitSnapshotV2 {
        /// Tenant.
        tenant: TenantId,
        /// Session it was uploaded in.
        session: SessionId,
        /// The snapshot (its `committed_ms` is replaced by `now_ms`).
        record: SnapshotRecord,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Admit a joining node in one step: use up its join token, give it the next node id and register it.
    AdmitNode {
        /// Digest of the join token it presented.
        join_digest: Digest,
        /// Proposer's clock.
        now_ms: u64,
        /// Address it will listen on.
        addr: String,
        /// Failure domain.
        zone: String,
        /// Capacity offered.
        capacity_bytes: u64,
        /// Generation it joins.
        generation: String,
    },
    /// Record a token, with who issued it (kept in the audit log).
    IssueToken {
        /// Its digest.
        digest: Digest,
        /// Tenant it is scoped to; `None` for an operator token.
        tenant: Option<TenantId>,
        /// Roles granted.
        roles: RoleSet,
        /// Expiry, if any.
        expires_at_ms: Option<u64>,
        /// Operator-visible label.
        label: String,
        /// Proposer's clock.
        now_ms: u64,
        /// Who issued it.
        issuer: Actor,
    },
    /// Revoke the token whose id ([`token_id`]) is `id`; a tenant admin may only revoke its tenant's tokens.
    RevokeToken {
        /// The token's id.
        id: TokenId,
        /// The revoker's tenant, which the token must belong to (`None`: an operator, any token).
        tenant: Option<TenantId>,
        /// Who revokes it.
        by: Actor,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Open an upload session under an id the proposer drew at random (ids cannot be guessed).
    OpenSession {
        /// Tenant.
        tenant: TenantId,
        /// The new session's id.
        session: SessionId,
        /// Proposer's clock.
        now_ms: u64,
        /// Lease: the session expires this long after its last renewal.
        lease_ms: u64,
    },
    /// Store a tenant's wrapped key file, keeping the one it replaces in the key file history.
    StoreKeyFile {
        /// Tenant.
        tenant: TenantId,
        /// Key file text.
        text: String,
        /// Digest of the update key of this key file.
        check: Digest,
        /// The update key of the key file being replaced.
        proof: Option<Digest>,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Record that `node` holds the cluster CA's key (it received it, or was created with it).
    RecordCaHolder {
        /// The node.
        node: NodeId,
        /// Proposer's clock.
        now_ms: u64,
        /// A signature made with the CA key over the node and the time (`pki::holder_proof`): a node cannot
        /// claim to hold the key without holding it.
        proof: Vec<u8>,
    },
    /// Record that `node` no longer holds the CA key (it stopped being a voter and deleted its copy).
    DropCaHolder {
        /// The node.
        node: NodeId,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Revoke a node: it is Removed (its certificate is refused at every handshake, it leaves Raft and its
    /// shards are rebuilt elsewhere). Refused while that would leave some partition with more unavailable
    /// shards than it has parity.
    RevokeNode {
        /// The node.
        node: NodeId,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Begin replacing the cluster CA: `trusted` becomes the set of trusted CA certificates (the current ones
    /// and, last, the new one, which issues from now on); `cross_pem` is the new CA signed by the old one.
    /// Clears the recorded key holders: they held the old key.
    BeginCaRotation {
        /// Trusted CA certificates (PEM each), the new one last.
        trusted: Vec<String>,
        /// The new CA's certificate signed by the old CA's key.
        cross_pem: String,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Record that `node` renewed its certificate onto the new CA during a rotation.
    RecordCaRenewal {
        /// The node.
        node: NodeId,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// End a CA rotation: only the new CA is trusted from then on.
    FinishCaRotation {
        /// Even though some nodes have not renewed.
        force: bool,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Renew a session's lease: the session must still be open (the leader alone ends sessions, by its
    /// monotonic clock, with [`MetaCommand::DropSessions`]); `renewed_ms` becomes `now_ms`, so every renewal
    /// changes it, whichever node's clock stamped it.
    RenewSession {
        /// Tenant (must own the session).
        tenant: TenantId,
        /// Session.
        session: SessionId,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Add a snapshot to the catalog and close its session; refused if the session is no longer open (garbage
    /// collection waits for every open session, so what it deduplicated against is still there).
    CommitSnapshot {
        /// Tenant.
        tenant: TenantId,
        /// Session it was uploaded in.
        session: SessionId,
        /// The snapshot (its `committed_ms` is replaced by `now_ms`).
        record: SnapshotRecord,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// End sessions the leader saw no renewal of for a whole lease, measured on its monotonic clock. Each
    /// names the renewal stamp the leader last saw: a session renewed since (the entry was delayed, or the
    /// leader's state lagged) is kept. Only the leader proposes it, for itself.
    DropSessions {
        /// The sessions and their last renewal stamps seen (at most [`MAX_DROPPED_SESSIONS`]).
        sessions: Vec<(SessionId, u64)>,
    },
}

/// A token's public id: the first eight bytes of its digest, shown in lists and used to revoke it.
pub type TokenId = [u8; 8];

/// The public id of the token with digest `digest`.
pub fn token_id(digest: &Digest) -> TokenId {
    digest[..8].try_into().expect("8 of 32 bytes")
}

/// A life-cycle step of a storage generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenerationStep {
    /// Active -> Draining: move every partition off it.
    Drain,
    /// Draining -> Active: partitions on their way out turn around.
    Cancel,
    /// Stop moves from or to it.
    Pause,
    /// Let moves from or to it continue.
    Resume,
    /// Draining -> Drained, once no partition has data on it (proposed by the leader).
    MarkDrained,
    /// Drained -> Dropped: its nodes leave the cluster. `force` allows any state if it holds no data.
    Drop {
        /// Skip the Drained requirement (never the "holds no data" one).
        force: bool,
    },
}

/// The result of applying a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// Applied.
    Ok,
    /// Applied; the node id allocated.
    NodeId(NodeId),
    /// Applied; the tenant created.
    TenantId(TenantId),
    /// Applied; the map's new epoch.
    Epoch(Epoch),
    /// Applied; the session opened.
    Session(SessionId),
    /// Applied; how many items were affected.
    Count(u64),
    /// Refused, identically on every replica.
    Rejected(WireError),
}

impl MetaResponse {
    /// A refusal with a code and a message.
    pub fn reject(code: ErrorCode, message: impl Into<String>) -> Self {
        MetaResponse::Rejected(WireError::new(code, message))
    }
}
