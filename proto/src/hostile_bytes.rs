//! Every decoder of wire bytes, fed garbage and damaged encodings: each must answer an error, never panic.
//! Damaged inputs are valid frames with bytes flipped or truncated, which reach deeper than noise alone.
//!
//! Covered: frame headers, request and response frames (every message type postcard can reach from a
//! damaged valid one), cluster maps, reference lists.

use proptest::prelude::*;

use crate::frame::{FrameKind, decode, decode_header, encode};
use crate::{ChunkId, Epoch, Request, RequestEnvelope, Response, ResponseEnvelope, Secret, SnapshotId, SnapshotRecord};

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

fn frames() -> Vec<(FrameKind, Vec<u8>)> {
    let record = SnapshotRecord {
        id: SnapshotId([4; 16]),
        time_ms: 5,
        committed_ms: 6,
        summary: vec![1, 2, 3],
        refs: vec![ChunkId([7; 32])],
        ref_digests: vec![[8; 32]],
    };
    let requests = [
        Request::HasBlobs { ids: vec![ChunkId([1; 32]); 3] },
        Request::GetClusterMap { known_epoch: Epoch(3) },
        Request::ListSnapshotPage { after: Some(SnapshotId([2; 16])), limit: 10 },
        Request::ForgetSnapshots { ids: vec![SnapshotId([3; 16])] },
    ];
    let mut out: Vec<(FrameKind, Vec<u8>)> = requests
        .into_iter()
        .map(|request| {
            (FrameKind::Request, encode(FrameKind::Request, &RequestEnvelope { auth: Some(Secret("stk1_x".into())), body_len: 9, request }))
        })
        .collect();
    for result in [
        Ok(Response::Snapshots(vec![record.clone()])),
        Ok(Response::SnapshotPage { snapshots: vec![record], next: Some(SnapshotId([9; 16])) }),
        Err(crate::WireError::new(crate::ErrorCode::Conflict, "kept")),
        Ok(Response::ClusterMap(Some(Box::new(crate::ClusterMap::new(4).unwrap())))),
    ] {
        out.push((FrameKind::Response, encode(FrameKind::Response, &ResponseEnvelope { body_len: 0, result })));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_frames_are_errors_not_panics(edits in edits(), pick in any::<usize>()) {
        let all = frames();
        let (kind, valid) = &all[pick % all.len()];
        let bytes = damage(valid, &edits);
        let _ = decode_header(&bytes, 1 << 20);
        match kind {
            FrameKind::Request => { let _ = decode::<RequestEnvelope>(&bytes, FrameKind::Request, 1 << 20); }
            _ => {
                // Whatever map decodes can be asked where a chunk lives, valid or not.
                if let Ok((ResponseEnvelope { result: Ok(Response::ClusterMap(Some(map))), .. }, _)) =
                    decode::<ResponseEnvelope>(&bytes, FrameKind::Response, 1 << 20)
                {
                    let _ = map.validate();
                    for b in [0u8, 0x7f, 0xff] {
                        let _ = map.locate(&ChunkId([b; 32]));
                    }
                }
            }
        }
    }

    #[test]
    fn random_frames_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_header(&bytes, 1 << 20);
        let _ = decode::<RequestEnvelope>(&bytes, FrameKind::Request, 1 << 20);
        let _ = decode::<ResponseEnvelope>(&bytes, FrameKind::Response, 1 << 20);
    }

    #[test]
    fn reference_lists_are_errors_not_panics(edits in edits(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let valid = crate::reflist::encode(&[ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])]);
        let _ = crate::reflist::decode(&damage(&valid, &edits));
        let _ = crate::reflist::decode(&bytes);
    }
}
