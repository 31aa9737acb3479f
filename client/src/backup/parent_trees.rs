//! The parent snapshot's directory trees, read ahead of the walker.
//!
//! An incremental backup compares each directory with the parent snapshot's tree for it, and each of those
//! trees is a blob in the cluster. Asked for one at a time, a home directory of thousands of folders spends
//! most of its time waiting on round trips. So when the walker receives a directory's parent tree, the trees
//! of its subdirectories are requested at once, and as each arrives its own subdirectories are requested in
//! turn, while at most `window` trees are held or awaited. This only changes when trees arrive, never what the
//! walker decides: a tree that cannot be read counts as absent and its files are read again.
//!
//! Trees requested for directories that no longer exist are dropped when the walker leaves their parent;
//! deeper ones requested below them stay until the backup ends and only narrow the window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use strata_proto::ChunkId;
use tokio::runtime::Handle;
use tokio::sync::{OnceCell, Semaphore};

use crate::repo::Repository;
use crate::tree::{NodeKind, Tree};

/// A tree being read or read: `None` once it failed to read.
type Slot = Arc<OnceCell<Option<Arc<Tree>>>>;

/// Recently used trees kept for directories with identical contents (empty directories above all).
const RECENT_TREES: usize = 256;

/// Parent trees requested ahead of the walker.
pub struct ParentTrees {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Arc<Repository>,
    rt: Handle,
    reads: Semaphore,
    window: usize,
    /// Trees requested and not yet taken by the walker, by subtree ids.
    slots: Mutex<HashMap<Vec<ChunkId>, Slot>>,
    recent: Mutex<HashMap<Vec<ChunkId>, Arc<Tree>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ParentTrees {
    /// Reads at most `in_flight` trees at once and holds at most `window` ahead of the walker.
    pub fn new(repo: Arc<Repository>, rt: Handle, in_flight: usize, window: usize) -> ParentTrees {
        let inner = Inner {
            repo,
            rt,
            reads: Semaphore::new(in_flight.max(1)),
            window,
            slots: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
        };
        ParentTrees { inner: Arc::new(inner) }
    }

    /// Requests the subdirectory trees of the parent snapshot's root tree.
    pub fn start(&self, root: &Tree) {
        self.inner.request_children(root, None);
    }

    /// The parent tree stored under `ids`, waiting for it if it has not arrived; call from a blocking thread.
    /// Requests the trees of its subdirectories.
    pub fn take(&self, ids: &[ChunkId]) -> Option<Arc<Tree>> {
        let inner = &self.inner;
        if let Some(tree) = lock(&inner.recent).get(ids) {
            return Some(tree.clone());
        }
        let slot = lock(&inner.slots).remove(ids).unwrap_or_default();
        let tree = inner.rt.block_on(inner.fill(&slot, ids))?;
        inner.request_children(&tree, None);
        let mut recent = lock(&inner.recent);
        if recent.len() >= RECENT_TREES {
            recent.clear();
        }
        recent.insert(ids.to_vec(), tree.clone());
        Some(tree)
    }

    /// Forgets trees requested for subdirectories of `tree` that the walker did not take (they were deleted
    /// or excluded since the parent snapshot).
    pub fn release_children(&self, tree: &Tree) {
        let mut slots = lock(&self.inner.slots);
        for node in tree.nodes.iter().filter(|n| n.kind == NodeKind::Dir) {
            slots.remove(&node.subtree);
        }
    }
}

impl Inner {
    async fn fill(&self, slot: &Slot, ids: &[ChunkId]) -> Option<Arc<Tree>> {
        slot.get_or_init(|| async {
            // The semaphore is never closed.
            let _permit = self.reads.acquire().await.ok()?;
            match self.repo.read_tree(ids).await {
                Ok(tree) => Some(Arc::new(tree)),
                Err(e) => {
                    tracing::warn!(error = %e, "parent tree unreadable; its files will be read again");
                    None
                }
            }
        })
        .await
        .clone()
    }

    /// Requests the subdirectory trees of `tree`. `parent` names the slot `tree` arrived in when it was read
    /// ahead: once the walker has taken that slot, the walker requests the children itself.
    fn request_children(self: &Arc<Self>, tree: &Tree, parent: Option<&[ChunkId]>) {
        let mut slots = lock(&self.slots);
        if parent.is_some_and(|p| !slots.contains_key(p)) {
            return;
        }
        for node in tree.nodes.iter().filter(|n| n.kind == NodeKind::Dir) {
            if slots.len() >= self.window {
                break;
            }
            if slots.contains_key(&node.subtree) || lock(&self.recent).contains_key(&node.subtree) {
                continue;
            }
            let slot = Slot::default();
            slots.insert(node.subtree.clone(), slot.clone());
            let (inner, ids) = (self.clone(), node.subtree.clone());
            self.rt.spawn(async move {
                if let Some(tree) = inner.fill(&slot, &ids).await {
                    inner.request_children(&tree, Some(&ids));
                }
            });
        }
    }
}
