//! Shard custody: which shard slots this node may write, keep or retire, decided from its own copy of the map.
//!
//! This is the node-side half of the migration safety argument. A holder accepts a shard write only for a slot
//! it holds in its partition's *write* set under its own map, so a coordinator still using an older map
//! cannot add data to a set a move is leaving. Before a mover lists a source holder's keys, the holder waits
//! until it has applied the mover's epoch and then passes a fence that every write admitted under an older
//! map has finished; so the listing misses nothing. A shard is retired (deleted) only when the node's map no
//! longer names it as a holder of that slot in either set, which happens only after a move completed, and
//! that check and the deletion happen under the same gate as the write check. It never deletes anything while
//! the map has no placement.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_proto::cluster_map::SlotRole;
use strata_proto::{Epoch, NodeId, PartitionId, ShardHeader, ShardKey};

use crate::meta::state_machine::MetaReader;
use crate::store::{ShardStore, ShardWrite, StoreError, WriteMode, display_key};

/// Why a shard write was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    /// This node does not hold the slot in the partition's write set under its map.
    #[error("this node does not take writes for shard {key} at map {epoch} (the partition moved); refresh the map and retry")]
    NotHolder {
        /// The shard.
        key: String,
        /// The epoch of the map that decided.
        epoch: Epoch,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Guards writes and deletions of shards against the node's map.
pub struct Custody {
    me: NodeId,
    meta: MetaReader,
    store: Arc<dyn ShardStore>,
    /// Writes hold it shared from their map check until their bytes are stored; fences and retirement take it
    /// exclusively.
    gate: RwLock<()>,
}

/// What one retirement pass over a partition deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired {
    /// Shards deleted.
    pub shards: u64,
    /// Shard data bytes freed.
    pub bytes: u64,
}

impl Custody {
    /// Custody of `store` on node `me`.
    pub fn new(me: NodeId, meta: MetaReader, store: Arc<dyn ShardStore>) -> Self {
        Custody { me, meta, store, gate: RwLock::new(()) }
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The store (for reads, which need no custody check).
    pub fn store(&self) -> &Arc<dyn ShardStore> {
        &self.store
    }

    /// Waits until this node has applied a map of at least `epoch`; false if that takes longer than `timeout`.
    pub async fn wait_for_epoch(&self, epoch: Epoch, timeout: Duration) -> bool {
        let mut rx = self.meta.subscribe_map();
        let reached = async {
            loop {
                if rx.borrow_and_update().epoch >= epoch {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, reached).await.unwrap_or(false)
    }

    /// Stores the shards this node holds in the write set and refuses the others; one result per shard.
    /// Blocking: call it on the blocking pool.
    pub fn put_many(&self, items: &[ShardWrite<'_>], mode: WriteMode) -> Vec<Result<(), CustodyError>> {
        let _writing = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let map = self.meta.map();
        let allowed: Vec<bool> = items.iter().map(|w| map.slot_role(w.key.partition, self.me, w.key.index) == SlotRole::Write).collect();
        let to_store: Vec<ShardWrite<'_>> = items.iter().zip(&allowed).filter(|(_, ok)| **ok).map(|(w, _)| *w).collect();
        let mut stored = self.store.put_many(&to_store, mode).into_iter();
        items
            .iter()
            .zip(allowed)
            .map(|(w, ok)| {
                if ok {
                    stored.next().unwrap_or_else(|| Err(StoreError::Io("store returned too few results".into()))).map_err(Into::into)
                } else {
                    Err(CustodyError::NotHolder { key: display_key(&w.key), epoch: map.epoch })
                }
            })
            .collect()
    }

    /// Returns once every write admitted under an older map has finished. Blocking.
    pub fn fence(&self) {
        drop(self.gate.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Deletes this node's shards of `partition` in slots its map no longer assigns to it. The caller must
    /// have run a read barrier first, so the map is not older than the last completed move. Blocking.
    pub fn retire_partition(&self, partition: PartitionId) -> Result<Retired, StoreError> {
        let mut out = Retired::default();
        let mut after: Option<ShardKey> = None;
        loop {
            let page = self.store.scan_partition(partition, after.as_ref(), 512)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            let _retiring = self.gate.write().unwrap_or_else(|e| e.into_inner());
            let map = self.meta.map();
            if !map.is_placed() {
                return Ok(out);
            }
            for (key, header) in &page {
                if map.slot_role(partition, self.me, key.index) == SlotRole::NotHeld && self.store.delete(key)? {
                    out.shards += 1;
                    out.bytes += shard_len(header);
                }
            }
            if page.len() < 512 {
                break;
            }
        }
        Ok(out)
    }
}

/// Bytes of one shard of a stripe described by `header` (the blob split into k equal, padded parts).
fn shard_len(header: &ShardHeader) -> u64 {
    header.blob_len.div_ceil(u64::from(header.profile.data_shards.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::state::MetaState;
    use crate::store::MemoryShardStore;
    use strata_proto::cluster_map::{Generation, GenerationState};
    use strata_proto::{ChunkId, ClusterMap, EcProfile, GenerationId, NodeSet, PartitionPlacement, TenantId};

    const P: EcProfile = EcProfile { data_shards: 1, parity_shards: 1 };

    fn map(current: [u64; 2], target: Option<[u64; 2]>, epoch: u64) -> ClusterMap {
        let set = |n: [u64; 2]| NodeSet { generation: GenerationId(1), nodes: n.iter().map(|&i| NodeId(i)).collect() };
        let mut m = ClusterMap::new(0).unwrap();
        m.generations
            .insert(GenerationId(1), Generation { id: GenerationId(1), name: "g".into(), profile: P, state: GenerationState::Active });
        m.partitions = vec![PartitionPlacement { current: set(current), target: target.map(set) }];
        m.epoch = Epoch(epoch);
        m
    }

    fn shard(index: u8, byte: u8) -> (ShardKey, ShardHeader, Vec<u8>) {
        let data = vec![byte; 10];
        let key = ShardKey { partition: PartitionId(0), tenant: TenantId(1), chunk: ChunkId([byte; 32]), index };
        (key, ShardHeader::for_shard(P, 10, index, Some([byte; 32]), &data), data)
    }

    fn put(custody: &Custody, items: &[(ShardKey, ShardHeader, &[u8])]) -> Vec<Result<(), CustodyError>> {
        let writes: Vec<ShardWrite<'_>> = items.iter().map(|(k, h, d)| ShardWrite::new(*k, *h, d)).collect();
        custody.put_many(&writes, WriteMode::Create)
    }

    #[tokio::test]
    async fn writes_follow_the_write_set_and_retirement_follows_completed_moves() {
        // Node 1 holds slot 0 of the only partition.
        let state = MetaState { map: map([1, 2], None, 1), ..MetaState::default() };
        let reader = MetaReader::for_test(state);
        let store: Arc<dyn ShardStore> = Arc::new(MemoryShardStore::new(1 << 20));
        let custody = Custody::new(NodeId(1), reader.clone(), store.clone());
        let (k0, h0, d0) = shard(0, 7);
        let (k1, h1, d1) = shard(1, 7);
        let r = put(&custody, &[(k0, h0, &d0), (k1, h1, &d1)]);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(CustodyError::NotHolder { .. })), "slot 1 is node 2's");

        // A move to nodes 3 and 4 starts: node 1 keeps slot 0 but takes no more writes, and retires nothing.
        reader.set_map_for_test(map([1, 2], Some([3, 4]), 2));
        let (k2, h2, d2) = shard(0, 8);
        assert!(matches!(put(&custody, &[(k2, h2, &d2)])[0], Err(CustodyError::NotHolder { .. })));
        assert_eq!(custody.retire_partition(PartitionId(0)).unwrap(), Retired::default());
        assert!(store.get(&k0).unwrap().is_some());

        // Turned around (cancel): node 1 is in the write set again.
        reader.set_map_for_test(map([3, 4], Some([1, 2]), 3));
        assert!(put(&custody, &[(k2, h2, &d2)])[0].is_ok());

        // The move away completes: node 1 retires its shards.
        reader.set_map_for_test(map([3, 4], None, 4));
        let retired = custody.retire_partition(PartitionId(0)).unwrap();
        assert_eq!(retired, Retired { shards: 2, bytes: 20 });
        assert!(store.get(&k0).unwrap().is_none());

        // Without a placement nothing is ever deleted.
        let empty = ClusterMap::new(0).unwrap();
        reader.set_map_for_test(map([1, 2], None, 5));
        put(&custody, &[(k0, h0, &d0)]);
        reader.set_map_for_test(empty);
        assert_eq!(custody.retire_partition(PartitionId(0)).unwrap(), Retired::default());
        assert!(store.get(&k0).unwrap().is_some());
    }

    #[tokio::test]
    async fn waiting_for_an_epoch_ends_when_it_arrives_or_times_out() {
        let reader = MetaReader::for_test(MetaState { map: map([1, 2], None, 1), ..MetaState::default() });
        let custody = Custody::new(NodeId(1), reader.clone(), Arc::new(MemoryShardStore::new(1 << 20)));
        assert!(custody.wait_for_epoch(Epoch(1), Duration::from_millis(10)).await);
        assert!(!custody.wait_for_epoch(Epoch(2), Duration::from_millis(10)).await);
        let later = reader.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.set_map_for_test(map([1, 2], None, 2));
        });
        assert!(custody.wait_for_epoch(Epoch(2), Duration::from_secs(5)).await);
    }
}
