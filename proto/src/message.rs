//! Requests and responses.
//!
//! One QUIC bidirectional stream carries one request and its response. Each side sends a frame holding an
//! envelope, then `body_len` raw bytes (a blob, a shard, a Raft payload), then finishes its half of the stream.
//! Client requests authenticate with a bearer token in the envelope; node-to-node requests authenticate with
//! the node certificate of the mutual-TLS connection and carry no token. New variants go at the end of each
//! enum: postcard encodes variants by position.

use serde::{Deserialize, Serialize};

use crate::auth::{AuditEntry, RoleSet, Secret, TokenInfo};
use crate::cluster_map::{ClusterMap, EcProfile};
use crate::error::WireError;
use crate::ids::{ChunkId, Epoch, NodeId, PartitionId, ShardIndex, TenantId};
use crate::snapshot::{SessionId, SnapshotId, SnapshotRecord};
use crate::status::ClusterStatus;

pub use crate::maintenance::{GcAction, GcReport, GenerationOp};

/// The first frame on a request stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Bearer token (client requests) or join token (`Join`); `None` for node-to-node requests.
    pub auth: Option<Secret>,
    /// Number of raw body bytes that follow the frame.
    pub body_len: u64,
    /// What is asked.
    pub request: Request,
}

/// The first frame on the response half of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// Number of raw body bytes that follow the frame.
    pub body_len: u64,
    /// The answer, or why there is none.
    pub result: Result<Response, WireError>,
}

/// Names one shard on one node: partition first, so a partition's shards are contiguous on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardKey {
    /// Partition of the chunk.
    pub partition: PartitionId,
    /// Tenant that owns the blob; tenants never share keys, so they can never see each other's data.
    pub tenant: TenantId,
    /// The blob's chunk id.
    pub chunk: ChunkId,
    /// Position in the stripe.
    pub index: ShardIndex,
}

/// The identity of a stripe: a digest of the whole blob it encodes (see [`ShardHeader::digest_of_blob`]).
///
/// Every shard of one encoding of a blob carries the same digest, whatever the erasure-code profile, so holders
/// can tell a shard of the stripe they hold from a shard of other bytes stored under the same chunk id, and
/// readers never mix shards of two stripes. Shards written before stripes had an identity carry none.
pub type BlobDigest = [u8; 32];

/// A short form of a stripe's identity, used where many chunks are answered for at once (holdings queries):
/// the first eight bytes of its [`BlobDigest`] with the lowest bit set, [`StripeTag::LEGACY`] for shards
/// without a digest, [`StripeTag::MIXED`] for a holder that holds shards of several stripes of one chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StripeTag(pub u64);

impl StripeTag {
    /// Shards written before stripes had an identity (shard header format 1).
    pub const LEGACY: StripeTag = StripeTag(0);
    /// One holder holds shards of more than one stripe of the chunk (tags of digests are odd, this is even).
    pub const MIXED: StripeTag = StripeTag(2);

    /// The tag of a stripe identity.
    pub fn of(digest: Option<&BlobDigest>) -> StripeTag {
        match digest {
            Some(d) => StripeTag(u64::from_le_bytes(d[..8].try_into().expect("8 of 32 bytes")) | 1),
            None => StripeTag::LEGACY,
        }
    }
}

/// What a shard holder must know to verify a shard and to rebuild its blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHeader {
    /// Profile the stripe was encoded with.
    pub profile: EcProfile,
    /// Length of the whole blob, to strip the padding after decoding.
    pub blob_len: u64,
    /// The stripe this shard belongs to; `None` only for shards written before stripes had an identity.
    pub blob_digest: Option<BlobDigest>,
    /// See [`ShardHeader::checksum_of`]; verified on receipt and on every read.
    pub checksum: [u8; 32],
}

impl ShardHeader {
    const CHECKSUM_CONTEXT: &'static str = "strata 2026-11 shard checksum v1";
    const CHECKSUM_CONTEXT_V2: &'static str = "strata 2026-12 shard checksum v2";
    const BLOB_DIGEST_CONTEXT: &'static str = "strata 2026-12 blob digest v1";

    /// The identity of the stripe that encodes `blob`.
    pub fn digest_of_blob(blob: &[u8]) -> BlobDigest {
        let mut h = blake3::Hasher::new_derive_key(Self::BLOB_DIGEST_CONTEXT);
        h.update(blob);
        *h.finalize().as_bytes()
    }

    /// The checksum of shard `index` of a stripe: BLAKE3 over the profile, blob length, index, stripe identity
    /// and bytes, so a shard moved to the wrong slot, paired with the wrong header or taken from another
    /// stripe fails verification too.
    pub fn checksum_of(profile: EcProfile, blob_len: u64, index: ShardIndex, blob_digest: Option<&BlobDigest>, data: &[u8]) -> [u8; 32] {
        let context = if blob_digest.is_some() { Self::CHECKSUM_CONTEXT_V2 } else { Self::CHECKSUM_CONTEXT };
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(&[profile.data_shards, profile.parity_shards, index]);
        h.update(&blob_len.to_le_bytes());
        if let Some(d) = blob_digest {
            h.update(d);
        }
        h.update(data);
        *h.finalize().as_bytes()
    }

    /// Builds the header of shard `index` holding `data`, of the stripe `blob_digest`.
    pub fn for_shard(profile: EcProfile, blob_len: u64, index: ShardIndex, blob_digest: Option<BlobDigest>, data: &[u8]) -> Self {
        ShardHeader { profile, blob_len, blob_digest, checksum: Self::checksum_of(profile, blob_len, index, blob_digest.as_ref(), data) }
    }

    /// Whether `data` is shard `index` as this header describes it.
    pub fn verifies(&self, index: ShardIndex, data: &[u8]) -> bool {
        Self::checksum_of(self.profile, self.blob_len, index, self.blob_digest.as_ref(), data) == self.checksum
    }

    /// The short form of this shard's stripe identity.
    pub fn stripe_tag(&self) -> StripeTag {
        StripeTag::of(self.blob_digest.as_ref())
    }
}

/// How a holder treats a shard write for a slot that already holds a shard.
///
/// In every mode an intact shard of the same stripe is kept as it is, and no mode replaces an intact shard of
/// another stripe unless the write names that stripe (`ShardPut::replaces`, repair only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteMode {
    /// A tenant's put: create the shard or find it already there. A slot holding anything else (another
    /// stripe, or a damaged shard) is answered with `Conflict` and left untouched.
    Create,
    /// Repair, scrub and moves: also replace a damaged shard, and an intact shard of the stripe named by
    /// `replaces` (one that cannot be decoded), with bytes of the stripe the writer decoded.
    Repair,
}

/// One shard of a `PutShards` request; its bytes follow in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPut {
    /// Where.
    pub key: ShardKey,
    /// Verification data.
    pub header: ShardHeader,
    /// Length of its bytes in the body.
    pub len: u32,
    /// Repair only: the stripe whose intact shard in this slot may be replaced.
    pub replaces: Option<StripeTag>,
}

/// What one holder has of one chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Bit `i` is set when shard `i` is held.
    pub mask: u64,
    /// The stripe of the shards held (`MIXED` if they belong to several).
    pub stripe: StripeTag,
}

/// What a node says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnnouncement {
    /// Its id (from its certificate).
    pub id: NodeId,
    /// Address it listens on.
    pub addr: String,
    /// Failure domain.
    pub zone: String,
    /// Capacity offered.
    pub capacity_bytes: u64,
    /// Name of its generation.
    pub generation: String,
}

/// Which Raft RPC a [`Request::Raft`] body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpc {
    /// openraft AppendEntries.
    AppendEntries,
    /// openraft Vote.
    Vote,
    /// openraft InstallSnapshot (one chunk).
    InstallSnapshot,
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness and version probe; needs no credentials.
    Ping,
    /// The cluster map, if newer than `known_epoch`.
    GetClusterMap {
        /// Epoch the caller already holds.
        known_epoch: Epoch,
    },
    /// Which of these blobs the tenant already stores durably (dedup query).
    HasBlobs {
        /// Blobs to check, at most the configured batch size.
        ids: Vec<ChunkId>,
    },
    /// Store a blob; the body is the blob.
    PutBlob {
        /// The blob's chunk id.
        id: ChunkId,
    },
    /// Read a blob; the response body is the blob.
    GetBlob {
        /// The blob's chunk id.
        id: ChunkId,
        /// Stripes not to return (a client that found one of them does not open asks for another).
        exclude: Vec<BlobDigest>,
    },
    /// Delete a blob of the tenant (tenant admin role).
    DeleteBlob {
        /// The blob's chunk id.
        id: ChunkId,
    },
    /// Cluster health and layout (operator role).
    Status,
    /// Create a tenant (operator role).
    CreateTenant {
        /// Unique name.
        name: String,
    },
    /// Create a token: a backup or restore token of a tenant (an admin of that tenant), or an operator token
    /// (an operator; `tenant` is `None`). A tenant's first admin token comes with the tenant.
    CreateToken {
        /// Tenant the token is scoped to; `None` for an operator token.
        tenant: Option<TenantId>,
        /// Roles granted.
        roles: RoleSet,
        /// Lifetime in seconds: `None` for the default (a year for backup and restore tokens, none for
        /// operator tokens), `Some(0)` for a token that does not expire.
        ttl_secs: Option<u64>,
        /// Free text shown to operators (device name, purpose).
        label: String,
    },
    /// Create a one-time token a new node uses to join (operator role).
    CreateJoinToken {
        /// Lifetime of the token.
        ttl_secs: u64,
    },
    /// A new node asks for a certificate; `auth` holds the join token.
    Join {
        /// PKCS#10 certificate signing request (DER) for the node's own key pair.
        csr_der: Vec<u8>,
        /// Address the node will listen on.
        addr: String,
        /// Failure domain.
        zone: String,
        /// Capacity offered.
        capacity_bytes: u64,
        /// Name of the generation to join.
        generation: String,
    },
    /// A node announces itself (or a changed address) to the cluster. Node certificate required, its identity
    /// must match `node.id`, and only the Raft leader registers: others answer `RegisterWithLeader`.
    RegisterNode {
        /// The node as it describes itself.
        node: NodeAnnouncement,
    },
    /// Read one shard; the response body is the shard. Node certificate required.
    GetShard {
        /// Which.
        key: ShardKey,
    },
    /// Which shard indices this node holds for each chunk. Node certificate required.
    HasShards {
        /// Tenant of the chunks.
        tenant: TenantId,
        /// Chunks to check, each with its partition.
        chunks: Vec<(PartitionId, ChunkId)>,
        /// Count shards condemned by garbage collection too (they are stored, but dedup must not rely on them).
        include_condemned: bool,
    },
    /// Delete one shard. Node certificate required.
    DeleteShard {
        /// Which.
        key: ShardKey,
    },
    /// A Raft RPC; the body is its postcard encoding. Node certificate required.
    Raft {
        /// Which RPC.
        rpc: RaftRpc,
    },
    /// A metadata request (write or read barrier) forwarded to the Raft leader; the body is its encoding.
    /// Node certificate required.
    Meta,
    /// Open an upload session for a backup (backup role).
    OpenSession,
    /// Keep a session alive (backup role).
    RenewSession {
        /// The session.
        session: SessionId,
    },
    /// Close a session without committing (backup role).
    AbortSession {
        /// The session.
        session: SessionId,
    },
    /// Commit a snapshot and close its session (backup role). Every blob it references must be stored.
    CommitSnapshot {
        /// The session the snapshot was uploaded in.
        session: SessionId,
        /// The snapshot (`committed_ms` is set by the cluster).
        snapshot: SnapshotRecord,
    },
    /// The tenant's snapshot catalog, reflecting every commit and forget before the request (read role).
    ListSnapshots,
    /// Remove snapshots from the catalog (admin role).
    ForgetSnapshots {
        /// Snapshots to forget.
        ids: Vec<SnapshotId>,
    },
    /// The tenant's wrapped key file, if stored (read role).
    GetKeyFile,
    /// Store the tenant's wrapped key file (backup role). Replacing one needs `proof` of the current master key.
    PutKeyFile {
        /// The key file (text form).
        text: String,
        /// Digest of the new update key, checked against the next replacement's proof.
        check: [u8; 32],
        /// The current update key, required when a key file exists.
        proof: Option<[u8; 32]>,
    },
    /// Free the blobs no snapshot of the tenant references (admin role); see docs/rfcs/0001.
    CollectGarbage,
    /// The chunks a tenant has shards of in these partitions, in (partition, chunk) order after `after`.
    /// Node certificate required.
    ListChunks {
        /// Tenant.
        tenant: TenantId,
        /// Partitions to scan, in increasing order.
        partitions: Vec<PartitionId>,
        /// Resume after this entry.
        after: Option<(PartitionId, ChunkId)>,
        /// Most entries to return.
        limit: u32,
    },
    /// A garbage-collection step on this node's shards of the given chunks. Node certificate required.
    GcShards {
        /// Tenant.
        tenant: TenantId,
        /// What to do.
        action: GcAction,
        /// The chunks, with their partitions.
        chunks: Vec<(PartitionId, ChunkId)>,
    },
    /// Store several blobs at once (backup role); the body is the blobs concatenated, in order. Each blob is
    /// acknowledged (or refused) on its own, by the same rule as `PutBlob`.
    PutBlobs {
        /// Each blob's id and length.
        blobs: Vec<(ChunkId, u32)>,
    },
    /// Store several shards at once in one durable write; the body is the shards concatenated, in order.
    /// Node certificate required.
    PutShards {
        /// Each shard's key, verification data and length.
        shards: Vec<ShardPut>,
        /// Epoch of the map the sender placed the shards with; the holder refuses a write for a slot it no
        /// longer holds and waits to learn a newer epoch before deciding.
        epoch: Epoch,
        /// Create (a tenant's put) or repair.
        mode: WriteMode,
    },
    /// A storage-generation action (operator role).
    Generation(GenerationOp),
    /// Shard keys this node holds in a partition, in key order after `after`, once the node has applied at
    /// least `min_epoch` and every write accepted under an older map has finished. Node certificate required.
    ScanShards {
        /// Partition to scan.
        partition: PartitionId,
        /// Resume after this key.
        after: Option<ShardKey>,
        /// Most entries to return.
        limit: u32,
        /// Map epoch the node must have applied first.
        min_epoch: Epoch,
    },
    /// The tokens an operator may see (all, or one tenant's) or a tenant admin may see (its tenant's): ids,
    /// roles, labels and expiry, never the secrets.
    ListTokens {
        /// Only this tenant's tokens (an operator's filter; ignored for a tenant admin).
        tenant: Option<TenantId>,
    },
    /// Revoke a token by its id (an operator: any token; a tenant admin: its tenant's).
    RevokeToken {
        /// The token's id, as `ListTokens` shows it.
        id: [u8; 8],
    },
    /// The audit log: token, tenant, node and key file changes (operator role).
    ListAudit,
    /// Sign a new certificate for the calling node (node certificate required; served by nodes holding the CA
    /// key). The certificate names the caller, whatever the request says.
    RenewCertificate {
        /// PKCS#10 signing request (DER) for the node's new key pair.
        csr_der: Vec<u8>,
    },
    /// Hand the cluster CA key to the calling node, which must be a Raft voter (node certificate required;
    /// served by nodes holding the key). The response body is the key (PEM), inside the TLS connection.
    FetchCaKey,
    /// Revoke a node (operator role): its certificate is refused from then on and its shards are rebuilt.
    RevokeNode {
        /// The node.
        node: NodeId,
    },
    /// One page of the tenant's snapshot catalog (read role), in id order: the snapshots after `after`, at most
    /// `limit` of them and as many as fit in the node's page size. A catalog of years of snapshots does not fit
    /// in one response frame; `ListSnapshots` is kept for older clients.
    ListSnapshotPage {
        /// Start after this snapshot (`None`: from the first).
        after: Option<SnapshotId>,
        /// Most snapshots wanted (the node may return fewer).
        limit: u32,
    },
    /// Start replacing the cluster CA (operator role; served by a node holding the current CA key): a new CA
    /// is made, trusted beside the old one, and nodes renew onto it (docs/rfcs/0003-node-trust.md).
    RotateCa,
    /// End a CA rotation (operator role): only the new CA is trusted from then on. Refused while a node that
    /// is not Removed still has a certificate from the old CA, unless `force`.
    FinishCaRotation {
        /// Finish even though some nodes have not renewed (they will need to be admitted again).
        force: bool,
    },
    /// The CA certificates the cluster trusts (any caller): clients keep their profile's CA file current.
    GetTrust,
}

impl Request {
    /// Short stable name, used as the `op` label in metrics and in logs.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::GetClusterMap { .. } => "get_cluster_map",
            Request::HasBlobs { .. } => "has_blobs",
            Request::PutBlob { .. } => "put_blob",
            Request::GetBlob { .. } => "get_blob",
            Request::DeleteBlob { .. } => "delete_blob",
            Request::Status => "status",
            Request::CreateTenant { .. } => "create_tenant",
            Request::CreateToken { .. } => "create_token",
            Request::CreateJoinToken { .. } => "create_join_token",
            Request::Join { .. } => "join",
            Request::RegisterNode { .. } => "register_node",
            Request::GetShard { .. } => "get_shard",
            Request::HasShards { .. } => "has_shards",
            Request::DeleteShard { .. } => "delete_shard",
            Request::Raft { rpc: RaftRpc::AppendEntries } => "raft_append",
            Request::Raft { rpc: RaftRpc::Vote } => "raft_vote",
            Request::Raft { rpc: RaftRpc::InstallSnapshot } => "raft_snapshot",
            Request::Meta => "meta",
            Request::OpenSession => "open_session",
            Request::RenewSession { .. } => "renew_session",
            Request::AbortSession { .. } => "abort_session",
            Request::CommitSnapshot { .. } => "commit_snapshot",
            Request::ListSnapshots => "list_snapshots",
            Request::ForgetSnapshots { .. } => "forget_snapshots",
            Request::GetKeyFile => "get_key_file",
            Request::PutKeyFile { .. } => "put_key_file",
            Request::CollectGarbage => "collect_garbage",
            Request::ListChunks { .. } => "list_chunks",
            Request::GcShards { .. } => "gc_shards",
            Request::PutBlobs { .. } => "put_blobs",
            Request::PutShards { .. } => "put_shards",
            Request::Generation(_) => "generation",
            Request::ScanShards { .. } => "scan_shards",
            Request::ListTokens { .. } => "list_tokens",
            Request::RevokeToken { .. } => "revoke_token",
            Request::ListAudit => "list_audit",
            Request::RenewCertificate { .. } => "renew_certificate",
            Request::FetchCaKey => "fetch_ca_key",
            Request::RevokeNode { .. } => "revoke_node",
            Request::ListSnapshotPage { .. } => "list_snapshots",
            Request::RotateCa => "rotate_ca",
            Request::FinishCaRotation { .. } => "finish_ca_rotation",
            Request::GetTrust => "get_trust",
        }
    }

    /// Whether the request is node-to-node and so requires a node certificate.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Request::RegisterNode { .. }
                | Request::GetShard { .. }
                | Request::HasShards { .. }
                | Request::DeleteShard { .. }
                | Request::Raft { .. }
                | Request::Meta
                | Request::ListChunks { .. }
                | Request::GcShards { .. }
                | Request::PutShards { .. }
                | Request::ScanShards { .. }
                | Request::RenewCertificate { .. }
                | Request::FetchCaKey
        )
    }

    /// Whether the request carries a body.
    pub fn has_body(&self) -> bool {
        matches!(
            self,
            Request::PutBlob { .. } | Request::Raft { .. } | Request::Meta | Request::PutBlobs { .. } | Request::PutShards { .. }
        )
    }
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Ping`.
    Pong {
        /// The answering node.
        node_id: NodeId,
        /// Its protocol version.
        protocol_version: u16,
        /// Shards it stores.
        shards: u64,
        /// Bytes of shard data it stores.
        bytes: u64,
        /// Bytes of shards it has written while moving partitions, since it started.
        moved_bytes: u64,
        /// When its last complete scrub pass ended, ms since the Unix epoch (0: none since it started).
        scrubbed_at_ms: u64,
    },
    /// Answer to `GetClusterMap`: `None` when the caller's epoch is current.
    ClusterMap(Option<Box<ClusterMap>>),
    /// Answer to `HasBlobs`, one flag per id in order.
    HasBlobs {
        /// `present[i]` is true when `ids[i]` is stored durably.
        present: Vec<bool>,
    },
    /// Answer to `PutBlob`.
    PutBlob {
        /// Shards durably stored.
        shards_stored: u8,
        /// k + m of the profile.
        shards_total: u8,
    },
    /// Answer to `GetBlob`; the body is the blob.
    Blob {
        /// The stripe it was read from (`None` for blobs stored before stripes had an identity).
        digest: Option<BlobDigest>,
    },
    /// Answer to `DeleteBlob`.
    Deleted {
        /// Whether any shard of the blob existed.
        existed: bool,
    },
    /// Answer to `Status`.
    Status(Box<ClusterStatus>),
    /// Answer to `CreateTenant`.
    TenantCreated {
        /// The new tenant's id.
        tenant: TenantId,
        /// Its first admin token, shown once: the only tenant token an operator ever obtains.
        admin_token: Secret,
    },
    /// Answer to `CreateToken` and `CreateJoinToken`. Shown once; the cluster keeps only a digest.
    TokenCreated {
        /// The secret.
        token: Secret,
    },
    /// Answer to `Join`.
    Joined {
        /// Id assigned to the node.
        node_id: NodeId,
        /// The node's certificate (PEM).
        cert_pem: String,
        /// The cluster CA certificate (PEM).
        ca_pem: String,
        /// Addresses of current members to contact at start-up.
        seeds: Vec<String>,
    },
    /// Generic success.
    Ok,
    /// Answer to `GetShard`; the body is the shard.
    Shard {
        /// Verification data stored with the shard.
        header: ShardHeader,
    },
    /// Answer to `HasShards`: for each chunk the shard indices held and their stripe.
    HasShards {
        /// What this node holds of `chunks[j]`.
        held: Vec<Holding>,
    },
    /// Answer to `Raft` and `Meta`; the body is the postcard-encoded reply.
    Raft,
    /// Answer to `OpenSession`.
    SessionOpened {
        /// The session.
        session: SessionId,
        /// Renew at least this often, in milliseconds, or the session expires.
        lease_ms: u64,
    },
    /// Answer to `ListSnapshots`.
    Snapshots(Vec<SnapshotRecord>),
    /// Answer to `ForgetSnapshots`.
    Forgotten {
        /// Snapshots removed.
        count: u64,
    },
    /// Answer to `GetKeyFile`.
    KeyFile(Option<String>),
    /// Answer to `CollectGarbage`.
    GarbageCollected(GcReport),
    /// Answer to `ListChunks`.
    Chunks {
        /// Entries in order; fewer than the limit means the scan is complete.
        entries: Vec<(PartitionId, ChunkId)>,
    },
    /// Answer to `GcShards`.
    GcShards {
        /// Shards affected.
        shards: u64,
        /// Bytes freed (sweep).
        bytes: u64,
    },
    /// Answer to `PutBlobs`: per blob, in order, (shards stored, k + m) or why it was refused.
    PutBlobs {
        /// One result per blob.
        results: Vec<Result<(u8, u8), WireError>>,
    },
    /// Answer to `PutShards`: per shard, in order, success or why not.
    PutShards {
        /// One result per shard.
        results: Vec<Result<(), WireError>>,
    },
    /// Answer to `Generation`: what was done, in words.
    Generation {
        /// Human-readable outcome.
        message: String,
    },
    /// Answer to `ScanShards`.
    ShardKeys {
        /// Keys with their headers; fewer than the limit means the scan is complete.
        entries: Vec<(ShardKey, ShardHeader)>,
    },
    /// Answer to `ListTokens`.
    Tokens(Vec<TokenInfo>),
    /// Answer to `RegisterNode` from a node that is not the Raft leader: a node registers only with the leader
    /// (the leader must see the certificate of the node it registers), so ask it there.
    RegisterWithLeader {
        /// The leader's address, if known.
        addr: Option<String>,
    },
    /// Answer to `ListAudit`, oldest first.
    Audit(Vec<AuditEntry>),
    /// Answer to `Join` from a node that does not hold the CA key: send the join to one of these.
    JoinElsewhere {
        /// Addresses of the nodes holding the CA key.
        addrs: Vec<String>,
    },
    /// Answer to `RenewCertificate`.
    Certificate {
        /// The new certificate (PEM).
        cert_pem: String,
    },
    /// Answer to `FetchCaKey`; the body is the key.
    CaKey,
    /// Answer to `ListSnapshotPage`.
    SnapshotPage {
        /// Snapshots in id order.
        snapshots: Vec<SnapshotRecord>,
        /// Where the next page starts (`after`), `None` when this page is the last.
        next: Option<SnapshotId>,
    },
    /// Answer to `GetTrust`.
    Trust {
        /// Every trusted CA certificate (PEM, concatenated).
        ca_pem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::frame::{FrameKind, decode, encode};
    use proptest::prelude::*;

    fn arb_request() -> impl Strategy<Value = Request> {
        let id = any::<[u8; 32]>().prop_map(ChunkId);
        prop_oneof![
            Just(Request::Ping),
            any::<u64>().prop_map(|e| Request::GetClusterMap { known_epoch: Epoch(e) }),
            proptest::collection::vec(id.clone(), 0..50).prop_map(|ids| Request::HasBlobs { ids }),
            id.clone().prop_map(|id| Request::PutBlob { id }),
            (".{0,40}", any::<u64>()).prop_map(|(label, t)| Request::CreateToken {
                tenant: Some(TenantId(t)),
                roles: RoleSet::of(&[Role::Backup]),
                ttl_secs: Some(t),
                label
            }),
            (id, any::<u32>(), any::<u64>(), any::<u8>(), any::<u64>(), any::<Option<[u8; 32]>>()).prop_map(
                |(chunk, p, t, i, len, digest)| Request::PutShards {
                    shards: vec![ShardPut {
                        key: ShardKey { partition: PartitionId(p), tenant: TenantId(t), chunk, index: i },
                        header: ShardHeader { profile: EcProfile::DEFAULT, blob_len: len, blob_digest: digest, checksum: [7; 32] },
                        len: p,
                        replaces: digest.map(|d| StripeTag::of(Some(&d))),
                    }],
                    epoch: Epoch(len),
                    mode: if i % 2 == 0 { WriteMode::Create } else { WriteMode::Repair },
                }
            ),
            ("[a-z0-9-]{0,20}", any::<bool>()).prop_map(|(name, force)| Request::Generation(GenerationOp::Drop { name, force })),
            (any::<u32>(), any::<u64>()).prop_map(|(p, e)| Request::ScanShards {
                partition: PartitionId(p),
                after: None,
                limit: p,
                min_epoch: Epoch(e)
            }),
            (any::<Option<[u8; 16]>>(), any::<u32>())
                .prop_map(|(after, limit)| Request::ListSnapshotPage { after: after.map(SnapshotId), limit }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in arb_request(), body_len in any::<u64>(), token in proptest::option::of("[a-z0-9_]{1,70}")) {
            let env = RequestEnvelope { auth: token.map(Secret), body_len, request: req };
            let bytes = encode(FrameKind::Request, &env);
            let (back, used): (RequestEnvelope, usize) = decode(&bytes, FrameKind::Request, 1 << 20).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, env);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<RequestEnvelope>(&bytes, FrameKind::Request, 1 << 20);
            let _ = decode::<ResponseEnvelope>(&bytes, FrameKind::Response, 1 << 20);
        }

        #[test]
        fn valid_header_with_random_payload_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = crate::frame::encode_header(FrameKind::Request, payload.len() as u32).to_vec();
            bytes.extend_from_slice(&payload);
            let _ = decode::<RequestEnvelope>(&bytes, FrameKind::Request, 1 << 20);
        }
    }

    #[test]
    fn responses_round_trip() {
        let cases = vec![
            ResponseEnvelope { body_len: 0, result: Ok(Response::HasBlobs { present: vec![true, false] }) },
            ResponseEnvelope { body_len: 9, result: Ok(Response::Blob { digest: Some([3; 32]) }) },
            ResponseEnvelope { body_len: 0, result: Err(WireError::new(crate::ErrorCode::NoSpace, "disk full on node-3")) },
        ];
        for env in cases {
            let bytes = encode(FrameKind::Response, &env);
            let (back, _): (ResponseEnvelope, usize) = decode(&bytes, FrameKind::Response, 1 << 20).unwrap();
            assert_eq!(back, env);
        }
    }

    #[test]
    fn internal_requests_are_flagged() {
        assert!(Request::Meta.is_internal());
        assert!(!Request::HasBlobs { ids: vec![] }.is_internal());
        assert!(Request::PutBlob { id: ChunkId([0; 32]) }.has_body());
    }

    #[test]
    fn a_shard_verifies_only_with_its_own_stripe_slot_and_bytes() {
        let blob = b"the whole blob";
        let digest = ShardHeader::digest_of_blob(blob);
        let h = ShardHeader::for_shard(EcProfile::DEFAULT, 14, 2, Some(digest), b"piece");
        assert!(h.verifies(2, b"piece"));
        assert!(!h.verifies(3, b"piece"), "wrong slot");
        assert!(!h.verifies(2, b"other"), "wrong bytes");
        let other_stripe = ShardHeader { blob_digest: Some(ShardHeader::digest_of_blob(b"other blob")), ..h };
        assert!(!other_stripe.verifies(2, b"piece"), "a header cannot be moved to another stripe");
        let legacy = ShardHeader::for_shard(EcProfile::DEFAULT, 14, 2, None, b"piece");
        assert!(legacy.verifies(2, b"piece"));
        assert_ne!(legacy.checksum, h.checksum, "format 1 and 2 checksums are domain-separated");
    }

    #[test]
    fn stripe_tags_never_collide_with_the_reserved_values() {
        for seed in 0..1000u32 {
            let t = StripeTag::of(Some(&ShardHeader::digest_of_blob(&seed.to_le_bytes())));
            assert_ne!(t, StripeTag::LEGACY);
            assert_ne!(t, StripeTag::MIXED);
        }
        assert_eq!(StripeTag::of(Some(&[0; 32])).0 & 1, 1);
        assert_eq!(StripeTag::of(None), StripeTag::LEGACY);
    }
}
