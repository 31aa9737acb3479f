//! Every decoder of bytes a node reads from the network or from its disk, fed garbage and damaged encodings:
//! each must answer an error (or a value), never panic. Inputs are random bytes and valid encodings with bytes
//! flipped, truncated or spliced, which reach much deeper into a decoder than noise alone.
//!
//! Covered: metadata snapshots in every format version (disk, and Raft InstallSnapshot), Raft log entries
//! (disk), Raft RPC bodies and forwarded metadata writes (network), shard records' keys and headers (disk),
//! join tokens (operator input).

use proptest::prelude::*;
use strata_proto::{ChunkId, EcProfile, NodeAnnouncement, NodeId, PartitionId, ShardHeader, ShardKey, TenantId};

use crate::meta::command::{InitCluster, MetaCommand};
use crate::meta::state::MetaState;
use crate::meta::types::{Entry, TypeConfig};
use crate::meta::{ForwardReply, ForwardRequest};

/// A state with something in every part a snapshot carries.
fn populated() -> MetaState {
    let mut s = MetaState::default();
    s.apply(&MetaCommand::Init(InitCluster {
        cluster_name: "c".into(),
        partition_bits: 2,
        generation_name: "gen-a".into(),
        profile: EcProfile { data_shards: 2, parity_shards: 1 },
        operator_token: [1; 32],
        now_ms: 5,
    }));
    for id in 1..=3 {
        s.apply(&MetaCommand::RegisterNode(NodeAnnouncement {
            id: NodeId(id),
            addr: format!("127.0.0.1:{id}"),
            zone: "z".into(),
            capacity_bytes: 1 << 30,
            generation: "gen-a".into(),
        }));
    }
    s.apply(&MetaCommand::CreateTenant { name: "t".into(), now_ms: 6 });
    s
}

/// `valid` damaged as `edits` say: each edit flips one byte (by position modulo the length) or, when its
/// value is zero, truncates there.
fn damage(valid: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut out = valid.to_vec();
    for &(at, x) in edits {
        if out.is_empty() {
            break;
        }
        let at = at % out.len();
        if x == 0 {
            out.truncate(at);
        } else {
            out[at] ^= x;
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
}

fn entry_bytes() -> Vec<u8> {
    let entry = Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42),
        payload: openraft::EntryPayload::Normal(MetaCommand::CreateTenant { name: "tenant".into(), now_ms: 7 }),
    };
    postcard::to_stdvec(&entry).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_metadata_snapshots_are_errors_not_panics(edits in edits(), version in 1u32..=5) {
        let mut valid = populated().encode();
        valid[..4].copy_from_slice(&version.to_le_bytes());
        if let Ok(state) = MetaState::decode(&damage(&valid, &edits)) {
            // Whatever decodes must encode again.
            let _ = state.encode();
        }
    }

    #[test]
    fn random_metadata_snapshots_are_errors_not_panics(version in 0u32..=6, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = version.to_le_bytes().to_vec();
        bytes.extend(body);
        let _ = MetaState::decode(&bytes);
    }

    #[test]
    fn damaged_raft_log_entries_are_errors_not_panics(edits in edits()) {
        let _ = postcard::from_bytes::<Entry>(&damage(&entry_bytes(), &edits));
    }

    #[test]
    fn raft_and_forwarded_bodies_are_errors_not_panics(body in proptest::collection::vec(any::<u8>(), 0..256), edits in edits()) {
        let _ = postcard::from_bytes::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&body);
        let _ = postcard::from_bytes::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(&body);
        let _ = postcard::from_bytes::<openraft::raft::VoteRequest<u64>>(&body);
        let _ = postcard::from_bytes::<ForwardRequest>(&body);
        let _ = postcard::from_bytes::<ForwardReply>(&body);
        let _ = postcard::from_bytes::<MetaCommand>(&body);
        let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(3, 1),
            prev_log_id: None,
            entries: vec![postcard::from_bytes(&entry_bytes()).unwrap()],
            leader_commit: None,
        };
        let valid = postcard::to_stdvec(&append).unwrap();
        let _ = postcard::from_bytes::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&damage(&valid, &edits));
    }

    #[test]
    fn shard_records_are_errors_not_panics(edits in edits(), body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let key = ShardKey { partition: PartitionId(3), tenant: TenantId(9), chunk: ChunkId([7; 32]), index: 2 };
        let header = ShardHeader { profile: EcProfile::DEFAULT, blob_len: 12345, blob_digest: Some([5; 32]), checksum: [6; 32] };
        let _ = crate::store::format::decode_key(&damage(&crate::store::format::encode_key(&key), &edits));
        let _ = crate::store::format::decode_header(&damage(&crate::store::format::encode_header(&header, 100), &edits));
        let _ = crate::store::format::decode_key(&body);
        let _ = crate::store::format::decode_header(&body);
    }

    #[test]
    fn join_tokens_are_errors_not_panics(text in "\\PC{0,200}", edits in edits()) {
        let _ = crate::server::JoinToken::parse(&text);
        let valid = format!("stj1_{}_{}", "ab".repeat(32), "cd".repeat(32));
        let _ = crate::server::JoinToken::parse(&String::from_utf8_lossy(&damage(valid.as_bytes(), &edits)));
    }
}
