//! Every decoder of bytes the client reads from the cluster (a node, or whoever holds a node's certificate,
//! may send anything), fed garbage and damaged encodings: each must answer an error, never panic. Damaged
//! inputs are valid encodings with bytes flipped or truncated.
//!
//! Covered: trees, sealed blobs, key files, node address caches.

use proptest::prelude::*;
use strata_proto::ChunkId;

use crate::blob::BlobCodec;
use crate::keys::{KdfParams, KeyFile, MasterKey};
use crate::tree::{Node, NodeKind, Tree};

/// `valid` damaged as `edits` say: each edit flips one byte (position modulo the length) or, when its value
/// is zero, truncates there.
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

fn tree() -> Tree {
    let node = |name: &[u8], kind: NodeKind| Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 1,
        gid: 1,
        mtime_ns: 1,
        ctime_ns: 1,
        dev: 1,
        inode: 2,
        nlink: 1,
        size: 10,
        content: vec![crate::tree::ChunkRef { id: ChunkId([3; 32]), len: 10 }],
        subtree: vec![],
        link_target: b"target".to_vec(),
    };
    Tree { nodes: vec![node(b"a", NodeKind::File), node(b"b", NodeKind::Symlink), node(b"c", NodeKind::Dir)] }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn trees_are_errors_not_panics(edits in edits(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Tree::decode(&damage(&tree().encode(), &edits));
        let _ = Tree::decode(&body);
    }

    #[test]
    fn sealed_blobs_are_errors_not_panics(edits in edits(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let codec = BlobCodec::new(&MasterKey::from_bytes([9; 32]), 3);
        let chunk = vec![7u8; 5000];
        let id = codec.ids().id(&chunk);
        let sealed = codec.seal(&id, &chunk);
        let damaged = damage(&sealed, &edits);
        let changed = damaged != sealed;
        let opened = codec.open(&id, damaged, 1 << 20);
        // A changed blob must never open as anything (the AEAD and the keyed id both stand in the way).
        prop_assert!(!changed || opened.is_err());
        prop_assert!(codec.open(&id, body, 1 << 20).is_err());
    }

    #[test]
    fn key_files_are_errors_not_panics(edits in edits(), text in "\\PC{0,300}") {
        let valid = KeyFile::wrap(&MasterKey::from_bytes([1; 32]), b"pw", KdfParams::FOR_TESTS).unwrap().to_text();
        let _ = KeyFile::from_text(&String::from_utf8_lossy(&damage(valid.as_bytes(), &edits)));
        let _ = KeyFile::from_text(&text);
    }

    #[test]
    fn node_caches_are_errors_not_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("profile.nodes");
        std::fs::write(&path, &body).unwrap();
        let _ = crate::cluster::NodeCache::new(path).load();
    }
}
