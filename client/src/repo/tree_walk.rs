//! Reading a snapshot's whole directory tree with several tree blobs in flight.
//!
//! Every directory of a snapshot is its own tree blob in the cluster. Read one after another, a home
//! directory with thousands of folders spends nearly all its time waiting for round trips (about 3 ms each on
//! a local cluster), so restore planning and listings read breadth first with a bounded number of requests
//! outstanding. Only the order of arrival changes; callers that need an order sort the result.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use strata_proto::ChunkId;

use super::{RepoError, Repository};
use crate::tree::{NodeKind, Tree};

/// Tree blobs requested at once while walking a snapshot.
pub const TREE_READS_IN_FLIGHT: usize = 16;

impl Repository {
    /// Every directory tree below `root` (the root included, at `base`) with its path. `descend` is asked
    /// about each subdirectory's path; those it refuses are neither read nor returned.
    pub async fn read_trees(
        &self,
        root: &[ChunkId],
        base: PathBuf,
        descend: impl Fn(&Path) -> bool,
    ) -> Result<Vec<(PathBuf, Tree)>, RepoError> {
        let mut out = Vec::new();
        let mut queue: VecDeque<(PathBuf, Vec<ChunkId>)> = VecDeque::from([(base, root.to_vec())]);
        let mut pending = FuturesUnordered::new();
        loop {
            while pending.len() < TREE_READS_IN_FLIGHT
                && let Some((path, ids)) = queue.pop_front()
            {
                pending.push(async move {
                    let tree = self.read_tree(&ids).await;
                    (path, tree)
                });
            }
            let Some((path, tree)) = pending.next().await else { break };
            let tree = tree?;
            for node in tree.nodes.iter().filter(|n| n.kind == NodeKind::Dir) {
                let child = path.join(OsStr::from_bytes(&node.name));
                if descend(&child) {
                    queue.push_back((child, node.subtree.clone()));
                }
            }
            out.push((path, tree));
        }
        Ok(out)
    }
}
