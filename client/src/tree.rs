//! Directory trees: what a snapshot records about each file, directory and link.
//!
//! A [`Tree`] lists one directory's entries, sorted by name bytes. Names and link targets are raw bytes, so
//! names that are not UTF-8 survive. A tree is encoded (format version first), cut into chunks like any file
//! and stored as encrypted blobs; an unchanged directory encodes to the same bytes and so costs nothing on the
//! next backup. Change detection compares size, mtime, ctime, inode and device with the parent snapshot's
//! entry. Hard links are recorded by (device, inode) so a restore can link instead of copying.

use serde::{Deserialize, Serialize};
use strata_proto::ChunkId;

/// Format version of encoded trees.
pub const TREE_FORMAT_VERSION: u8 = 1;

/// What kind of entry a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory (its entries are in `subtree`).
    Dir,
    /// A symbolic link (its target is in `link_target`).
    Symlink,
    /// A named pipe.
    Fifo,
}

/// A piece of a file: the chunk and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Chunk id.
    pub id: ChunkId,
    /// Bytes in the chunk.
    pub len: u32,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes.
    pub name: Vec<u8>,
    /// Entry kind.
    pub kind: NodeKind,
    /// Permission bits (and setuid/setgid/sticky), without the file-type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time (for change detection only; it cannot be restored).
    pub ctime_ns: i64,
    /// Device of the file system it was read from.
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
    /// Hard link count when read.
    pub nlink: u64,
    /// Size in bytes (files).
    pub size: u64,
    /// Contents, in order (files).
    pub content: Vec<ChunkRef>,
    /// Chunks of the encoded subtree (directories).
    pub subtree: Vec<ChunkId>,
    /// Link target, raw bytes (symlinks).
    pub link_target: Vec<u8>,
}

impl Node {
    /// Whether a file can be taken from the parent snapshot without reading it again.
    pub fn unchanged_since(&self, parent: &Node) -> bool {
        self.kind == NodeKind::File
            && parent.kind == NodeKind::File
            && self.size == parent.size
            && self.mtime_ns == parent.mtime_ns
            && self.ctime_ns == parent.ctime_ns
            && self.inode == parent.inode
            && self.dev == parent.dev
            && self.content.is_empty()
            && (parent.size == 0 || !parent.content.is_empty())
    }
}

/// One directory's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries sorted by name.
    pub nodes: Vec<Node>,
}

/// Why encoded tree bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Unknown version or undecodable bytes.
    #[error("invalid tree: {0}")]
    Invalid(String),
}

impl Tree {
    /// Sorts entries by name (trees are stored sorted so equal directories encode equally).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Encodes the tree: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![TREE_FORMAT_VERSION];
        out.extend(postcard::to_stdvec(self).expect("trees encode"));
        out
    }

    /// Decodes and checks a tree.
    pub fn decode(bytes: &[u8]) -> Result<Tree, TreeError> {
        let (&version, rest) = bytes.split_first().ok_or_else(|| TreeError::Invalid("empty".into()))?;
        if version != TREE_FORMAT_VERSION {
            return Err(TreeError::Invalid(format!("format version {version} is not supported (this build reads {TREE_FORMAT_VERSION})")));
        }
        let tree: Tree = postcard::from_bytes(rest).map_err(|e| TreeError::Invalid(e.to_string()))?;
        for pair in tree.nodes.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(TreeError::Invalid("entries are not sorted by name, or a name repeats".into()));
            }
        }
        if let Some(bad) = tree.nodes.iter().find(|n| n.name.is_empty() || n.name.contains(&b'/') || n.name == b"." || n.name == b"..") {
            return Err(TreeError::Invalid(format!("unsafe entry name {:?}", String::from_utf8_lossy(&bad.name))));
        }
        Ok(tree)
    }

    /// Looks an entry up by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn file(name: &[u8], size: u64) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1_700_000_000_000_000_000,
            ctime_ns: 1_700_000_000_000_000_000,
            dev: 1,
            inode: 42,
            nlink: 1,
            size,
            content: vec![],
            subtree: vec![],
            link_target: vec![],
        }
    }

    #[test]
    fn round_trip_with_non_utf8_names() {
        let mut t = Tree { nodes: vec![file(b"z", 1), file(&[0xff, 0xfe, b'x'], 2), file("caf\u{e9}".as_bytes(), 3)] };
        t.sort();
        let back = Tree::decode(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.get(&[0xff, 0xfe, b'x']).unwrap().size, 2);
        assert!(back.get(b"missing").is_none());
    }

    #[test]
    fn hostile_trees_are_rejected() {
        for bad in [
            vec![file(b"../etc", 1)],
            vec![file(b"a/b", 1)],
            vec![file(b"..", 1)],
            vec![file(b"", 1)],
            vec![file(b"b", 1), file(b"a", 1)],
            vec![file(b"a", 1), file(b"a", 2)],
        ] {
            let t = Tree { nodes: bad };
            assert!(Tree::decode(&t.encode()).is_err(), "{t:?}");
        }
        assert!(Tree::decode(&[]).is_err());
        assert!(Tree::decode(&[9, 1, 2]).is_err());
        assert!(Tree::decode(&[TREE_FORMAT_VERSION, 0xff, 0xff]).is_err());
    }

    #[test]
    fn change_detection() {
        let mut parent = file(b"f", 10);
        parent.content = vec![ChunkRef { id: ChunkId([1; 32]), len: 10 }];
        let now = file(b"f", 10);
        assert!(now.unchanged_since(&parent));
        let mut touched = now.clone();
        touched.mtime_ns += 1;
        assert!(!touched.unchanged_since(&parent));
        let mut replaced = now.clone();
        replaced.inode = 43;
        assert!(!replaced.unchanged_since(&parent));
        let mut chmod = now;
        chmod.ctime_ns += 1;
        assert!(!chmod.unchanged_since(&parent));
    }
}
