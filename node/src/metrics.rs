//! Prometheus metrics of one node, in a registry of its own (several nodes can share a process in tests).
//!
//! Names start with `strata_` and carry their unit. Request metrics are updated on every request; gauges that
//! mirror state (storage usage, Raft, map) are refreshed on a timer by the node (`node::refresh_metrics`).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics of a node.
pub struct Metrics {
    registry: Registry,
    /// Requests served, by operation and result (`ok` or an error code).
    pub requests: IntCounterVec,
    /// Request latency by operation.
    pub request_seconds: HistogramVec,
    /// Shards stored on this node.
    pub shards_stored: IntGauge,
    /// Bytes of shard data stored on this node.
    pub shard_bytes: IntGauge,
    /// Configured capacity.
    pub capacity_bytes: IntGauge,
    /// Partitions in which this node holds a shard.
    pub partitions: IntGauge,
    /// Cluster map epoch as applied here.
    pub map_epoch: IntGauge,
    /// Current Raft term.
    pub raft_term: IntGauge,
    /// Current Raft leader id (0 when unknown).
    pub raft_leader: IntGauge,
    /// Whether this node is the leader.
    pub raft_is_leader: IntGauge,
    /// Index of the last log entry applied to the state machine.
    pub raft_applied_index: IntGauge,
    /// Index of the last log entry in this node's log.
    pub raft_last_log_index: IntGauge,
    /// Puts acknowledged with fewer than k+m shards.
    pub puts_degraded: IntCounter,
    /// Shards found corrupt on read.
    pub corrupt_shards: IntCounter,
    /// Shard operations to peers that failed, by operation.
    pub shard_rpc_failures: IntCounterVec,
    /// Whether each peer answered its last probe (1) or not (0).
    pub peer_reachable: IntGaugeVec,
    /// Bytes requests and replies hold in memory now, by traffic class.
    pub inflight_bytes: IntGaugeVec,
    /// Connections open now.
    pub connections: IntGauge,
    /// When this node's certificate expires, Unix seconds (it renews itself when a third of its lifetime is left).
    pub cert_expiry: IntGauge,
    /// Connections, requests and frames refused by admission control, by what was refused.
    pub admission_refused: IntCounterVec,
    /// Blob sizes accepted by puts.
    pub blob_bytes: Histogram,
    /// Shard bytes this node wrote while moving partitions.
    pub moved_bytes: IntCounter,
    /// Chunks this node copied while moving partitions.
    pub moved_chunks: IntCounter,
    /// Partition moves this node completed.
    pub moves_completed: IntCounter,
    /// Partition move attempts that failed (retried later).
    pub move_errors: IntCounter,
    /// Partition moves this node is running now.
    pub moves_in_progress: IntGauge,
    /// Shards deleted because a completed move took their slot away.
    pub retired_shards: IntCounter,
    /// Bytes freed by retiring shards.
    pub retired_bytes: IntCounter,
    /// Partitions per generation and movement state (`placed`, `moving_out`, `moving_in`).
    pub generation_partitions: IntGaugeVec,
    /// Shard bytes stored on each generation's nodes.
    pub generation_stored_bytes: IntGaugeVec,
    /// Chunks stored on each generation (its shards divided by its stripe width).
    pub generation_stored_chunks: IntGaugeVec,
    /// Estimated shard bytes still to move off each generation.
    pub generation_bytes_to_move: IntGaugeVec,
    /// Estimated chunks still to move off each generation.
    pub generation_chunks_to_move: IntGaugeVec,
    /// Partitions with shards on nodes declared Down (the repair queue).
    pub repair_queue: IntGauge,
    /// When every Active node of each generation had last finished a scrub pass, Unix seconds (0: not yet).
    pub generation_last_verified: IntGaugeVec,
    /// Shards the scrub read and verified.
    pub scrub_verified: IntCounter,
    /// Shard bytes the scrub read.
    pub scrub_bytes: IntCounter,
    /// Shards the scrub found corrupt.
    pub scrub_corrupt: IntCounter,
    /// Corrupt shards the scrub rebuilt.
    pub scrub_rebuilt: IntCounter,
    /// Missing shards the scrub wrote.
    pub scrub_filled: IntCounter,
    /// Fraction of the current scrub pass done.
    pub scrub_progress: Gauge,
    /// When the last complete scrub pass ended, Unix seconds (0: never).
    pub scrub_last_complete: IntGauge,
    /// When the last scrub pass that found nothing to fix began.
    pub scrub_clean_pass_started: IntGauge,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    /// Creates and registers every metric; `node` becomes a constant label.
    pub fn new(node: u64) -> Self {
        let registry = Registry::new_custom(None, Some([("node".to_string(), node.to_string())].into())).expect("valid registry");
        let r = &registry;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("strata_request_duration_seconds", "Time to serve a request, by operation")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["op"],
        )
        .expect("valid metric");
        r.register(Box::new(request_seconds.clone())).expect("unique metric");
        let blob_bytes = Histogram::with_opts(
            HistogramOpts::new("strata_put_blob_size_bytes", "Sizes of blobs stored")
                .buckets(prometheus::exponential_buckets(1024.0, 4.0, 8).expect("valid buckets")),
        )
        .expect("valid metric");
        r.register(Box::new(blob_bytes.clone())).expect("unique metric");
        let peer_reachable =
            IntGaugeVec::new(Opts::new("strata_peer_reachable", "1 if the peer answered its last probe"), &["peer"]).expect("valid metric");
        r.register(Box::new(peer_reachable.clone())).expect("unique metric");
        Metrics {
            requests: counter_vec(r, "strata_requests_total", "Requests served, by operation and result", &["op", "result"]),
            request_seconds,
            shards_stored: gauge(r, "strata_shards_stored", "Shards stored on this node"),
            shard_bytes: gauge(r, "strata_shard_data_bytes", "Bytes of shard data stored on this node"),
            capacity_bytes: gauge(r, "strata_capacity_bytes", "Configured shard capacity of this node"),
            partitions: gauge(r, "strata_partitions_held", "Partitions in which this node holds a shard"),
            map_epoch: gauge(r, "strata_cluster_map_epoch", "Epoch of the cluster map applied on this node"),
            raft_term: gauge(r, "strata_raft_term", "Current Raft term"),
            raft_leader: gauge(r, "strata_raft_leader_id", "Current Raft leader node id (0 when unknown)"),
            raft_is_leader: gauge(r, "strata_raft_is_leader", "1 if this node is the Raft leader"),
            raft_applied_index: gauge(r, "strata_raft_applied_index", "Last Raft log index applied to the state machine"),
            raft_last_log_index: gauge(r, "strata_raft_last_log_index", "Last Raft log index stored on this node"),
            puts_degraded: counter(r, "strata_puts_degraded_total", "Puts acknowledged with fewer than k+m shards"),
            corrupt_shards: counter(r, "strata_corrupt_shards_total", "Shards that failed their checksum on read"),
            shard_rpc_failures: counter_vec(r, "strata_shard_rpc_failures_total", "Shard operations to peers that failed", &["op"]),
            peer_reachable,
            inflight_bytes: gauge_vec(
                r,
                "strata_inflight_bytes",
                "Bytes requests and replies hold in memory, by traffic class",
                &["class"],
            ),
            connections: gauge(r, "strata_connections", "Connections open to this node"),
            cert_expiry: gauge(r, "strata_tls_cert_expiry_timestamp_seconds", "When this node's certificate expires, Unix seconds"),
            admission_refused: counter_vec(
                r,
                "strata_admission_refused_total",
                "Connections, requests and frames refused by admission control",
                &["what"],
            ),
            blob_bytes,
            moved_bytes: counter(r, "strata_migration_moved_bytes_total", "Shard bytes written by this node while moving partitions"),
            moved_chunks: counter(r, "strata_migration_moved_chunks_total", "Chunks copied by this node while moving partitions"),
            moves_completed: counter(r, "strata_migration_partitions_completed_total", "Partition moves completed by this node"),
            move_errors: counter(r, "strata_migration_errors_total", "Partition move attempts that failed and will be retried"),
            moves_in_progress: gauge(r, "strata_migration_partitions_in_progress", "Partition moves this node is running"),
            retired_shards: counter(r, "strata_retired_shards_total", "Shards deleted after a completed move took their slot away"),
            retired_bytes: counter(r, "strata_retired_shard_bytes_total", "Shard bytes freed after completed moves"),
            generation_partitions: gauge_vec(
                r,
                "strata_generation_partitions",
                "Partitions per generation by movement state (placed, moving_out, moving_in)",
                &["generation", "state"],
            ),
            generation_stored_bytes: gauge_vec(
                r,
                "strata_generation_stored_bytes",
                "Shard bytes stored on the generation's nodes",
                &["generation"],
            ),
            generation_stored_chunks: gauge_vec(r, "strata_generation_stored_chunks", "Chunks stored on the generation", &["generation"]),
            generation_bytes_to_move: gauge_vec(
                r,
                "strata_generation_bytes_to_move",
                "Estimated shard bytes still to move off the generation",
                &["generation"],
            ),
            generation_chunks_to_move: gauge_vec(
                r,
                "strata_generation_chunks_to_move",
                "Estimated chunks still to move off the generation",
                &["generation"],
            ),
            repair_queue: gauge(r, "strata_repair_queue_partitions", "Partitions with shards on nodes declared Down, waiting for repair"),
            generation_last_verified: gauge_vec(
                r,
                "strata_generation_last_verified_timestamp_seconds",
                "When all Active nodes of the generation had last finished a scrub pass (0: not yet)",
                &["generation"],
            ),
            scrub_verified: counter(r, "strata_scrub_verified_shards_total", "Shards read back and verified by the scrub"),
            scrub_bytes: counter(r, "strata_scrub_verified_bytes_total", "Shard bytes read back by the scrub"),
            scrub_corrupt: counter(r, "strata_scrub_corrupt_shards_total", "Shards the scrub found failing their checksum"),
            scrub_rebuilt: counter(r, "strata_scrub_rebuilt_shards_total", "Corrupt shards the scrub rebuilt from their stripe"),
            scrub_filled: counter(r, "strata_scrub_filled_chunks_total", "Chunks whose missing shards the scrub wrote"),
            scrub_progress: {
                let g = Gauge::new("strata_scrub_pass_progress_ratio", "Fraction of the current scrub pass done").expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            scrub_last_complete: gauge(r, "strata_scrub_last_complete_timestamp_seconds", "End of the last complete scrub pass (0: never)"),
            scrub_clean_pass_started: gauge(
                r,
                "strata_scrub_clean_pass_started_timestamp_seconds",
                "Start of the last scrub pass that found every shard here intact and no shard missing from any stripe of \
                 the partitions this node fills: from then on those stripes had full redundancy (0: never)",
            ),
            registry,
        }
    }

    /// Records one served request.
    pub fn observe(&self, op: &str, result: &str, seconds: f64) {
        self.requests.with_label_values(&[op, result]).inc();
        self.request_seconds.with_label_values(&[op]).observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding to a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_node_label_and_units() {
        let m = Metrics::new(3);
        m.observe("put_blob", "ok", 0.01);
        m.shard_bytes.set(42);
        let text = m.render();
        let line = text.lines().find(|l| l.starts_with("strata_requests_total{")).expect("request counter rendered");
        for label in ["node=\"3\"", "op=\"put_blob\"", "result=\"ok\""] {
            assert!(line.contains(label), "{line} lacks {label}");
        }
        assert!(line.ends_with(" 1"), "{line}");
        assert!(text.contains("strata_shard_data_bytes{node=\"3\"} 42"));
        assert!(text.contains("strata_request_duration_seconds_bucket"));
    }
}
