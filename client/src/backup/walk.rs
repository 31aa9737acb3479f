//! The reading stage of a backup: walk the file system, reuse what the parent snapshot already has, read
//! and chunk the rest, and build the trees bottom-up.
//!
//! It runs on one blocking thread and hands every chunk it has not seen before to the upload stage; it never
//! waits on the network except when the upload budget is full. A file that cannot be read is reported and left
//! out; a file that changes while it is read is reported and kept as read. The backed-up paths are stored under
//! their absolute names (`/home/ann/docs` becomes `home` → `ann` → `docs` in the root tree), so several paths
//! never collide and a restore recreates them below its target.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_proto::ChunkId;
use tokio::runtime::Handle;

use super::filter::Patterns;
use super::parent_trees::ParentTrees;
use super::progress::Progress;
use super::upload::Uploader;

use crate::repo::summary::BackupStats;
use crate::repo::{RepoError, Repository, TREE_READS_IN_FLIGHT};
use crate::tree::{ChunkRef, Node, NodeKind, Tree};

/// Builds a node from file metadata (content and subtree filled in by the caller).
pub fn node_from_meta(name: &[u8], meta: &Metadata, kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
        dev: meta.dev(),
        inode: meta.ino(),
        nlink: meta.nlink(),
        size: if kind == NodeKind::File { meta.len() } else { 0 },
        content: Vec::new(),
        subtree: Vec::new(),
        link_target: Vec::new(),
    }
}

/// What the walk produced.
pub struct WalkResult {
    /// Chunks of the root tree.
    pub root: Vec<ChunkId>,
    /// Every chunk the snapshot references.
    pub refs: HashSet<ChunkId>,
    /// Counts.
    pub stats: BackupStats,
    /// Problems met (unreadable files, files that changed while read, skipped special files).
    pub warnings: Vec<String>,
}

/// The walker's state.
pub struct Walker {
    repo: Arc<Repository>,
    parents: ParentTrees,
    rt: Handle,
    uploader: Arc<Uploader>,
    excludes: Patterns,
    one_file_system: bool,
    progress: Arc<Progress>,
    sent: HashSet<ChunkId>,
    refs: HashSet<ChunkId>,
    stats: BackupStats,
    warnings: Vec<String>,
}

/// Parent trees held or awaited ahead of the walker at most (a few KiB each).
const PARENT_TREES_AHEAD: usize = 1024;

/// Backup targets arranged as a tree of path components.
#[derive(Default)]
struct Trie {
    target: bool,
    children: BTreeMap<Vec<u8>, Trie>,
}

impl Walker {
    /// A walker feeding `uploader`; call from a blocking thread.
    pub fn new(
        repo: Arc<Repository>,
        rt: Handle,
        uploader: Arc<Uploader>,
        excludes: Patterns,
        one_file_system: bool,
        progress: Arc<Progress>,
    ) -> Walker {
        Walker {
            parents: ParentTrees::new(repo.clone(), rt.clone(), TREE_READS_IN_FLIGHT, PARENT_TREES_AHEAD),
            repo,
            rt,
            uploader,
            excludes,
            one_file_system,
            progress,
            sent: HashSet::new(),
            refs: HashSet::new(),
            stats: BackupStats::default(),
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, path: &Path, what: impl std::fmt::Display) {
        let message = format!("{}: {what}", path.display());
        tracing::warn!("{message}");
        Progress::add(&self.progress.errors, 1);
        self.warnings.push(message);
    }

    /// Walks every target (absolute paths) and stores the root tree; `parent_root` is the parent snapshot's.
    pub fn run(mut self, targets: &[PathBuf], parent_root: Option<Tree>) -> Result<WalkResult, RepoError> {
        let mut trie = Trie::default();
        for t in targets {
            let mut node = &mut trie;
            for c in t.components().filter(|c| matches!(c, std::path::Component::Normal(_))) {
                node = node.children.entry(c.as_os_str().as_bytes().to_vec()).or_default();
            }
            node.target = true;
        }
        if let Some(root) = &parent_root {
            self.parents.start(root);
        }
        let root_tree = self.assemble(Path::new("/"), &trie, parent_root.as_ref())?;
        let root = self.store_tree(root_tree)?;
        Ok(WalkResult { root, refs: self.refs, stats: self.stats, warnings: self.warnings })
    }

    /// Builds the tree of one level of the target trie: targets are walked, intermediate directories recorded.
    fn assemble(&mut self, prefix: &Path, trie: &Trie, parent: Option<&Tree>) -> Result<Tree, RepoError> {
        let mut tree = Tree::default();
        for (name, child) in &trie.children {
            let path = prefix.join(OsString::from_vec(name.clone()));
            let parent_node = parent.and_then(|t| t.get(name));
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(&path, format!("cannot read: {e}"));
                    self.stats.files_failed += 1;
                    continue;
                }
            };
            let node = if child.target {
                self.entry(&path, name, &meta, parent_node, meta.dev())?
            } else {
                let sub_parent = self.parent_tree(parent_node);
                let sub = self.assemble(&path, child, sub_parent.as_deref())?;
                let mut node = node_from_meta(name, &meta, NodeKind::Dir);
                node.subtree = self.store_tree(sub)?;
                Some(node)
            };
            tree.nodes.extend(node);
        }
        tree.sort();
        Ok(tree)
    }

    /// The parent snapshot's subtree for a directory node, if it has one and it can be read.
    fn parent_tree(&mut self, parent: Option<&Node>) -> Option<Arc<Tree>> {
        let p = parent.filter(|p| p.kind == NodeKind::Dir)?;
        self.parents.take(&p.subtree)
    }

    /// One directory entry of any kind; `None` when it is skipped.
    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<Node>, RepoError> {
        let ft = meta.file_type();
        if ft.is_dir() {
            return self.dir(path, name, meta, parent, root_dev).map(Some);
        }
        if ft.is_file() {
            return self.file(path, name, meta, parent);
        }
        if ft.is_symlink() {
            let mut node = node_from_meta(name, meta, NodeKind::Symlink);
            match std::fs::read_link(path) {
                Ok(target) => node.link_target = target.into_os_string().into_vec(),
                Err(e) => {
                    self.warn(path, format!("cannot read link: {e}"));
                    self.stats.files_failed += 1;
                    return Ok(None);
                }
            }
            return Ok(Some(node));
        }
        if ft.is_fifo() {
            return Ok(Some(node_from_meta(name, meta, NodeKind::Fifo)));
        }
        self.warn(path, "skipped: sockets and device files are not backed up");
        Ok(None)
    }

    fn dir(&mut self, path: &Path, name: &[u8], meta: &Metadata, parent: Option<&Node>, root_dev: u64) -> Result<Node, RepoError> {
        self.stats.dirs += 1;
        let mut node = node_from_meta(name, meta, NodeKind::Dir);
        let mut tree = Tree::default();
        if self.one_file_system && meta.dev() != root_dev {
            // A mount point: record it, do not descend.
            node.subtree = self.store_tree(tree)?;
            return Ok(node);
        }
        let parent_tree = self.parent_tree(parent);
        let mut names: Vec<OsString> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
            Err(e) => {
                self.warn(path, format!("cannot list directory: {e}"));
                self.stats.files_failed += 1;
                Vec::new()
            }
        };
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for child_name in names {
            let child = path.join(&child_name);
            if self.excludes.matches(&child) {
                continue;
            }
            let child_meta = match std::fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(&child, format!("cannot read: {e}"));
                    self.stats.files_failed += 1;
                    continue;
                }
            };
            let bytes = child_name.as_bytes();
            let parent_node = parent_tree.as_ref().and_then(|t| t.get(bytes));
            if let Some(n) = self.entry(&child, bytes, &child_meta, parent_node, root_dev)? {
                tree.nodes.push(n);
            }
        }
        if let Some(p) = &parent_tree {
            self.parents.release_children(p);
        }
        node.subtree = self.store_tree(tree)?;
        Ok(node)
    }

    fn file(&mut self, path: &Path, name: &[u8], meta: &Metadata, parent: Option<&Node>) -> Result<Option<Node>, RepoError> {
        let mut node = node_from_meta(name, meta, NodeKind::File);
        self.progress.set_current(&path.display().to_string());
        if let Some(p) = parent
            && node.unchanged_since(p)
        {
            node.content = p.content.clone();
            self.refs.extend(node.content.iter().map(|c| c.id));
            self.stats.files_unmodified += 1;
            self.stats.bytes_total += node.size;
            Progress::add(&self.progress.files_done, 1);
            Progress::add(&self.progress.bytes_done, node.size);
            return Ok(Some(node));
        }
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.warn(path, format!("cannot open: {e}"));
                self.stats.files_failed += 1;
                return Ok(None);
            }
        };
        let mut size = 0u64;
        for chunk in self.repo.chunker().chunks_expecting(file, meta.len()) {
            let data = match chunk {
                Ok(d) => d,
                Err(e) => {
                    self.warn(path, format!("read error: {e}"));
                    self.stats.files_failed += 1;
                    return Ok(None);
                }
            };
            let id = self.repo.ids().id(&data);
            let len = data.len();
            size += len as u64;
            node.content.push(ChunkRef { id, len: len as u32 });
            self.refs.insert(id);
            Progress::add(&self.progress.bytes_done, len as u64);
            if self.sent.insert(id) {
                self.rt.block_on(self.uploader.send(id, data, false))?;
            }
        }
        if let Ok(after) = std::fs::symlink_metadata(path)
            && (after.len() != meta.len() || after.mtime() != meta.mtime() || after.mtime_nsec() != meta.mtime_nsec() || size != meta.len())
        {
            self.warn(path, "changed while it was read; the snapshot holds the bytes as read");
            self.stats.files_changed_during_read += 1;
        }
        node.size = size;
        self.stats.bytes_read += size;
        self.stats.bytes_total += size;
        if parent.is_some() {
            self.stats.files_changed += 1;
        } else {
            self.stats.files_new += 1;
        }
        Progress::add(&self.progress.files_done, 1);
        Ok(Some(node))
    }

    /// Encodes a tree, hands its new chunks to the uploader and returns its chunk ids.
    fn store_tree(&mut self, tree: Tree) -> Result<Vec<ChunkId>, RepoError> {
        let bytes = tree.encode();
        let mut ids = Vec::new();
        for piece in self.repo.chunker().chunks(&bytes[..]) {
            let piece = piece.map_err(|e| RepoError::Io(e.to_string()))?;
            let id = self.repo.ids().id(&piece);
            ids.push(id);
            self.refs.insert(id);
            if self.sent.insert(id) {
                self.rt.block_on(self.uploader.send(id, piece, false))?;
            }
        }
        Ok(ids)
    }
}
