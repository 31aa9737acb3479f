//! Builds the operator's status view from Raft metrics, the cluster map and peer health.

use strata_proto::NodeId;
use strata_proto::status::{ClusterStatus, MigrationStatus, NodeStatus};

use crate::context::NodeContext;

/// The cluster as this node sees it.
pub fn cluster_status(ctx: &NodeContext) -> ClusterStatus {
    let metrics = ctx.meta.raft.metrics();
    let (leader, term, applied, voters) = {
        let m = metrics.borrow();
        (
            m.current_leader.map(NodeId),
            m.current_term,
            m.last_applied.map(|l| l.index).unwrap_or(0),
            m.membership_config.membership().voter_ids().map(NodeId).collect(),
        )
    };
    let map = ctx.meta.reader.map();
    let own = ctx.store.usage();
    let nodes = map
        .nodes
        .values()
        .map(|d| {
            let h = ctx.health.get(d.id);
            let me = d.id == ctx.id;
            NodeStatus {
                descriptor: d.clone(),
                reachable: me || (h.last_ok.is_some() && !h.is_down()),
                last_seen_ms_ago: if me { Some(0) } else { h.last_ok.map(|t| t.elapsed().as_millis() as u64) },
                partitions: map.partitions_on(d.id) as u32,
                shards: if me { Some(own.shards) } else { h.usage.map(|u| u.0) },
                bytes: if me { Some(own.bytes) } else { h.usage.map(|u| u.1) },
            }
        })
        .collect();
    ClusterStatus {
        reporter: ctx.id,
        leader,
        term,
        commit_index: applied,
        epoch: map.epoch,
        partitions: map.partition_count(),
        placed: map.is_placed(),
        voters,
        nodes,
        generations: map.generations.values().cloned().collect(),
        migration: MigrationStatus {
            rate_limit_bytes_per_sec: ctx
                .meta
                .reader
                .read(|s| s.migration.rate_bytes_per_sec)
                .unwrap_or(ctx.config.migration.rate_bytes_per_sec),
            moved_bytes_per_sec: ctx.health.total_moved_bytes_per_sec(),
            generations: crate::migrate::generation_status(ctx),
            partitions_awaiting_repair: crate::migrate::plan::repair_queue(&map) as u32,
        },
        ca_holders: ctx.meta.reader.read(|s| s.ca_holders.iter().copied().collect()),
        trusted_cas: strata_transport::tls::certs_from_pem(&ctx.trusted_pem(), "trusted CAs")
            .map(|certs| certs.iter().map(|c| hex::encode(strata_transport::tls::fingerprint(c))).collect())
            .unwrap_or_default(),
        ca_rotation_pending: ctx.meta.reader.read(|s| s.ca_rotation_pending()),
    }
}
