//! Requests and responses.
//!
//! One QUIC bidirectional stream carries one request and its response. Each side sends a frame holding an
//! envelope, then `body_len` raw bytes (a blob, a shard, a Raft payload), then finishes its half of the stream.
//! Client requests authenticate with a bearer token in the envelope; node-to-node requests authenticate with
//! the node certificate of the mutual-TLS connection and carry no token. New variants go at the end of each
//! enum: postcard encodes variants by position.

use serde::{Deserialize, Serialize};

use crate::auth::{RoleSet, Secret};
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

/// What a shard holder must know to verify a shard and to rebuild its blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHeader {
    /// Profile the stripe was encoded with.
    pub profile: EcProfile,
    /// Length of the whole blob, to strip the padding after decoding.
    pub blob_len: u64,
    /// See [`ShardHeader::checksum_of`]; verified on receipt and on every read.
    pub checksum: [u8; 32],
}

impl ShardHeader {
    const CHECKSUM_CONTEXT: &'static str = "strata 2026-11 shard checksum v1";

    /// The checksum of shard `index` of a stripe: BLAKE3 over the profile, blob length, index and bytes, so a
    /// shard moved to the wrong slot or paired with the wrong header fails verification too.
    pub fn checksum_of(profile: EcProfile, blob_len: u64, index: ShardIndex, data: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(Self::CHECKSUM_CONTEXT);
        h.update(&[profile.data_shards, profile.parity_shards, index]);
        h.update(&blob_len.to_le_bytes());
        h.update(data);
        *h.finalize().as_bytes()
    }

    /// Builds the header of shard `index` holding `data`.
    pub fn for_shard(profile: EcProfile, blob_len: u64, index: ShardIndex, data: &[u8]) -> Self {
        ShardHeader { profile, blob_len, checksum: Self::checksum_of(profile, blob_len, index, data) }
    }

    /// Whether `data` is shard `index` as this header describes it.
    pub fn verifies(&self, index: ShardIndex, data: &[u8]) -> bool {
        Self::checksum_of(self.profile, self.blob_len, index, data) == self.checksum
    }
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
    /// Create a token for a tenant (operator, or admin of that tenant for non-admin roles).
    CreateToken {
        /// Tenant the token is scoped to.
        tenant: TenantId,
        /// Roles granted.
        roles: RoleSet,
        /// Lifetime; `None` for a token that does not expire.
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
    /// A node announces itself (or a changed address) to the cluster. Node certificate required, and its
    /// identity must match `node.id`.
    RegisterNode {
        /// The node as it describes itself.
        node: NodeAnnouncement,
    },
    /// Store one shard; the body is the shard. Node certificate required.
    PutShard {
        /// Where.
        key: ShardKey,
        /// Verification data.
        header: ShardHeader,
        /// Epoch of the map the sender placed the shard with; the holder refuses a write for a slot it no
        /// longer holds and waits to learn a newer epoch before deciding.
        epoch: Epoch,
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
        shards: Vec<(ShardKey, ShardHeader, u32)>,
        /// Epoch of the sender's map, as in `PutShard`.
        epoch: Epoch,
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
            Request::PutShard { .. } => "put_shard",
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
        }
    }

    /// Whether the request is node-to-node and so requires a node certificate.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Request::RegisterNode { .. }
                | Request::PutShard { .. }
                | Request::GetShard { .. }
                | Request::HasShards { .. }
                | Request::DeleteShard { .. }
                | Request::Raft { .. }
                | Request::Meta
                | Request::ListChunks { .. }
                | Request::GcShards { .. }
                | Request::PutShards { .. }
                | Request::ScanShards { .. }
        )
    }

    /// Whether the request carries a body.
    pub fn has_body(&self) -> bool {
        matches!(
            self,
            Request::PutBlob { .. }
                | Request::PutShard { .. }
                | Request::Raft { .. }
                | Request::Meta
                | Request::PutBlobs { .. }
                | Request::PutShards { .. }
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
    Blob,
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
    /// Answer to `HasShards`: for each chunk a bit mask of shard indices held.
    HasShards {
        /// Bit `i` of `held[j]` is set when shard `i` of `chunks[j]` is stored here.
        held: Vec<u64>,
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
                tenant: TenantId(t),
                roles: RoleSet::of(&[Role::Backup]),
                ttl_secs: Some(t),
                label
            }),
            (id, any::<u32>(), any::<u64>(), any::<u8>(), any::<u64>()).prop_map(|(chunk, p, t, i, len)| Request::PutShard {
                key: ShardKey { partition: PartitionId(p), tenant: TenantId(t), chunk, index: i },
                header: ShardHeader { profile: EcProfile::DEFAULT, blob_len: len, checksum: [7; 32] },
                epoch: Epoch(len),
            }),
            ("[a-z0-9-]{0,20}", any::<bool>()).prop_map(|(name, force)| Request::Generation(GenerationOp::Drop { name, force })),
            (any::<u32>(), any::<u64>()).prop_map(|(p, e)| Request::ScanShards {
                partition: PartitionId(p),
                after: None,
                limit: p,
                min_epoch: Epoch(e)
            }),
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
            ResponseEnvelope { body_len: 9, result: Ok(Response::Blob) },
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
}
