//! The migration engine: moving partitions between node sets and generations while backups and restores run.
//!
//! The Raft leader decides *what* moves (`plan::next_moves`, proposed as `StartMoves` by `meta::leader_tasks`):
//! a partition gets a target set whenever the placement planner wants it elsewhere, because a generation was
//! added, drained or cancelled or nodes joined. Each node then runs the moves whose target it leads
//! (`plan::is_mover`): `mover` copies, re-encodes and verifies, then proposes `CompleteMove`. `retire` deletes
//! shards a completed move left behind. The engine must never complete a move before the target holds every
//! chunk the source held, and never delete a shard its node's map still assigns to it.

pub mod mover;
pub mod plan;
pub mod progress;
pub mod retire;
pub mod throttle;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use strata_proto::PartitionId;
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::mover::{MoveError, MoveJob, move_partition};
use self::throttle::Throttle;
use crate::context::NodeContext;
use crate::erasure::Codecs;

/// How often the engine looks for moves to run.
const TICK: Duration = Duration::from_secs(1);

/// Runs this node's partition moves until `shutdown` turns true.
pub async fn run(ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) {
    let throttle = Arc::new(Throttle::default());
    let codecs = Codecs::default();
    let mut running: BTreeSet<PartitionId> = BTreeSet::new();
    let mut tasks: JoinSet<(PartitionId, Result<mover::MoveReport, MoveError>)> = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = tasks.join_next() => {
                if let Ok((partition, result)) = done {
                    running.remove(&partition);
                    record(&ctx, partition, result);
                }
                ctx.metrics.moves_in_progress.set(running.len() as i64);
                continue;
            }
            _ = shutdown.changed() => {
                tasks.abort_all();
                return;
            }
        }
        ctx.health.record_moved(ctx.id, ctx.metrics.moved_bytes.get());
        update_generation_gauges(&ctx);
        for job in jobs_to_start(&ctx, &running) {
            running.insert(job.partition);
            let (ctx, throttle, codecs) = (ctx.clone(), throttle.clone(), codecs.clone());
            tasks.spawn(async move { (job.partition, move_partition(&ctx, &throttle, &codecs, &job).await) });
        }
        ctx.metrics.moves_in_progress.set(running.len() as i64);
    }
}

/// Moves this node should start now, within its parallelism.
fn jobs_to_start(ctx: &NodeContext, running: &BTreeSet<PartitionId>) -> Vec<MoveJob> {
    let map = ctx.meta.reader.map();
    let paused = ctx.meta.reader.read(|s| s.migration.paused.clone());
    let room = ctx.config.migration.parallel_partitions.saturating_sub(running.len());
    map.partitions
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.target.as_ref().map(|t| MoveJob { partition: PartitionId(i as u32), current: p.current.clone(), target: t.clone() })
        })
        .filter(|j| !running.contains(&j.partition))
        .filter(|j| !plan::is_paused(&j.current, &j.target, &paused))
        .filter(|j| plan::is_mover(&j.target, ctx.id, |n| ctx.health.is_down(n)))
        .take(room)
        .collect()
}

fn record(ctx: &NodeContext, partition: PartitionId, result: Result<mover::MoveReport, MoveError>) {
    match result {
        Ok(r) => {
            ctx.metrics.moves_completed.inc();
            tracing::info!(%partition, chunks = r.chunks, copied = r.copied, bytes = r.bytes, "partition move completed");
        }
        Err(MoveError::Superseded | MoveError::Paused) => {}
        Err(e) => {
            ctx.metrics.move_errors.inc();
            tracing::warn!(%partition, error = %e, "partition move not finished; will retry");
        }
    }
}

/// Sets the `strata_generation_*` gauges from this node's map and the usage its peers last reported.
fn update_generation_gauges(ctx: &NodeContext) {
    let status = generation_status(ctx);
    let m = &ctx.metrics;
    m.repair_queue.set(plan::repair_queue(&ctx.meta.reader.map()) as i64);
    for g in status {
        let name = g.generation.name.as_str();
        for (state, n) in [("placed", g.partitions.placed), ("moving_out", g.partitions.moving_out), ("moving_in", g.partitions.moving_in)]
        {
            m.generation_partitions.with_label_values(&[name, state]).set(i64::from(n));
        }
        m.generation_stored_bytes.with_label_values(&[name]).set(g.stored_bytes as i64);
        m.generation_stored_chunks.with_label_values(&[name]).set(g.stored_chunks as i64);
        m.generation_last_verified.with_label_values(&[name]).set(g.last_verified_ms.map_or(0, |t| t / 1000) as i64);
        m.generation_bytes_to_move.with_label_values(&[name]).set(g.bytes_to_move as i64);
        m.generation_chunks_to_move.with_label_values(&[name]).set(g.chunks_to_move as i64);
    }
}

/// Progress of every generation as this node sees it.
pub fn generation_status(ctx: &NodeContext) -> Vec<strata_proto::status::GenerationProgress> {
    let map = ctx.meta.reader.map();
    let own = ctx.store.usage();
    let reports: BTreeMap<_, _> = map
        .nodes
        .keys()
        .filter_map(|&n| {
            if n == ctx.id {
                let scrubbed_at_ms = ctx.scrubbed_at_ms.load(std::sync::atomic::Ordering::Relaxed);
                return Some((n, progress::NodeReport { shards: own.shards, bytes: own.bytes, scrubbed_at_ms }));
            }
            let h = ctx.health.get(n);
            h.usage.map(|(shards, bytes)| (n, progress::NodeReport { shards, bytes, scrubbed_at_ms: h.scrubbed_at_ms }))
        })
        .collect();
    let paused = ctx.meta.reader.read(|s| s.migration.paused.clone());
    progress::generation_progress(&map, &reports, &paused, ctx.health.total_moved_bytes_per_sec())
}
