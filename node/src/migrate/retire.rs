//! Retirement: each node deletes the shards a completed move took away from it.
//!
//! After a map change the node runs a read barrier (so its map is not older than any completed move), then
//! asks `Custody` to delete, partition by partition, the shards in slots its map no longer assigns to it.
//! Only partitions whose placement changed since the last pass are scanned; the first pass after start-up
//! scans them all, which also cleans up after a crash between a completion and its retirement.

use std::sync::Arc;
use std::time::Duration;

use strata_proto::{ClusterMap, PartitionId};
use tokio::sync::watch;

use crate::context::NodeContext;

/// Longest time between passes, even without map changes.
const IDLE_PASS: Duration = Duration::from_secs(60);

/// Partitions whose placement differs between two maps (all of them when the table was empty before).
pub fn changed_partitions(old: &ClusterMap, new: &ClusterMap) -> Vec<PartitionId> {
    (0..new.partitions.len()).filter(|&i| old.partitions.get(i) != new.partitions.get(i)).map(|i| PartitionId(i as u32)).collect()
}

/// Runs until `shutdown` turns true.
pub async fn run(ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) {
    let mut maps = ctx.meta.reader.subscribe_map();
    let mut last: Option<Arc<ClusterMap>> = None;
    loop {
        tokio::select! {
            _ = maps.changed() => {}
            _ = tokio::time::sleep(IDLE_PASS) => {}
            _ = shutdown.changed() => return,
        }
        let map = ctx.meta.reader.map();
        if !map.is_placed() {
            continue;
        }
        let todo = match &last {
            Some(old) => changed_partitions(old, &map),
            None => (0..map.partitions.len()).map(|i| PartitionId(i as u32)).collect(),
        };
        if todo.is_empty() {
            continue;
        }
        if let Err(e) = ctx.meta.read_barrier().await {
            tracing::debug!(error = %e, "no read barrier; retirement waits");
            continue;
        }
        let custody = ctx.coordinator.peers().custody().clone();
        let mut failed = false;
        for partition in todo {
            let c = custody.clone();
            match tokio::task::spawn_blocking(move || c.retire_partition(partition)).await {
                Ok(Ok(r)) if r.shards > 0 => {
                    ctx.metrics.retired_shards.inc_by(r.shards);
                    ctx.metrics.retired_bytes.inc_by(r.bytes);
                    tracing::info!(%partition, shards = r.shards, bytes = r.bytes, "retired shards of a moved partition");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    failed = true;
                    tracing::warn!(%partition, error = %e, "retiring shards failed; will retry");
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(%partition, error = %e, "retirement task failed; will retry");
                }
            }
        }
        if !failed {
            last = Some(map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::{GenerationId, NodeId, NodeSet, PartitionPlacement};

    #[test]
    fn only_changed_partitions_are_rescanned() {
        let set = |n: u64| NodeSet { generation: GenerationId(1), nodes: vec![NodeId(n)] };
        let mut a = ClusterMap::new(1).unwrap();
        a.partitions = vec![PartitionPlacement { current: set(1), target: None }, PartitionPlacement { current: set(2), target: None }];
        let mut b = a.clone();
        assert!(changed_partitions(&a, &b).is_empty());
        b.partitions[1].target = Some(set(3));
        assert_eq!(changed_partitions(&a, &b), vec![PartitionId(1)]);
        assert_eq!(changed_partitions(&ClusterMap::new(1).unwrap(), &b).len(), 2);
    }
}
