//! Moving one partition from its current node set to its target: list what the source holds, copy each chunk
//! the target lacks (re-encoding it with the target generation's profile), check the target holds every
//! chunk, and only then complete the move through Raft. Old shards are deleted later, by each old holder's
//! retirement pass, once the completed map no longer names it (see `custody`).
//!
//! Every step is idempotent: a pass that finds everything in place copies nothing, so a move resumes after
//! any restart from the map alone. Reads and writes go on meanwhile (writes to the target, reads from the
//! target then the source), and blobs written during the move are already on the target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use strata_proto::cluster_map::NodeDescriptor;
use strata_proto::{BlobDigest, ChunkId, ErrorCode, Holding, NodeSet, PartitionId, ShardHeader, ShardKey, StripeTag, TenantId, WriteMode};

use super::plan::{is_paused, needs_writes, settled, slot_writes};
use super::throttle::Throttle;
use crate::context::NodeContext;
use crate::coordinator::{OutgoingShard, StripeFilter, ack_threshold};
use crate::erasure::Codecs;
use crate::meta::MetaError;
use crate::meta::command::{MetaCommand, MetaResponse};

/// Passes over a partition before giving up for now (the move is retried later).
const MAX_PASSES: usize = 4;
/// Keys per source listing page.
const SCAN_PAGE: u32 = 4096;

/// One partition move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveJob {
    /// The partition.
    pub partition: PartitionId,
    /// Where its data is.
    pub current: NodeSet,
    /// Where it goes; equal to `current` for an in-place fill (scrub), which writes missing slots of a
    /// partition that is not moving.
    pub target: NodeSet,
}

impl MoveJob {
    /// A fill of the partition's missing shards in its own set.
    pub fn in_place(partition: PartitionId, set: NodeSet) -> Self {
        MoveJob { partition, current: set.clone(), target: set }
    }

    fn is_in_place(&self) -> bool {
        self.current == self.target
    }
}

/// Why a move stopped before completing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// The map changed under the move (completed elsewhere, or turned around by a cancel); nothing to do.
    #[error("the partition's move changed; dropping this attempt")]
    Superseded,
    /// An operator paused moves of its generation.
    #[error("moves of this generation are paused")]
    Paused,
    /// Too many source holders could not be listed to be sure every blob is seen.
    #[error("cannot list the source: {0}")]
    Source(String),
    /// Some chunks are still not settled on the target (retried later).
    #[error("{0} chunks are not settled on the target yet (a source blob unreadable or a target node unreachable)")]
    Unsettled(u64),
    /// Completing through Raft failed.
    #[error("completing the move: {0}")]
    Meta(String),
}

/// What a completed move did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveReport {
    /// Distinct chunks found on the source.
    pub chunks: u64,
    /// Chunks copied (some slots written).
    pub copied: u64,
    /// Shard bytes written.
    pub bytes: u64,
}

/// Runs a move to completion or to an error.
pub async fn move_partition(ctx: &NodeContext, throttle: &Throttle, codecs: &Codecs, job: &MoveJob) -> Result<MoveReport, MoveError> {
    let mut report = MoveReport::default();
    for _ in 0..MAX_PASSES {
        still_moving(ctx, job)?;
        let epoch = ctx.meta.reader.map().epoch;
        let chunks = list_source(ctx, job, epoch).await?;
        report.chunks = chunks.len() as u64;
        let pass = copy_pass(ctx, throttle, codecs, job, &chunks).await?;
        report.copied += pass.copied;
        report.bytes += pass.bytes;
        if pass.copied == 0 && pass.unsettled == 0 {
            return complete(ctx, job).await.map(|()| report);
        }
        if pass.copied == 0 {
            // Nothing could be fixed this time (a source blob unreadable, a target node refusing): wait a bit.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Err(MoveError::Unsettled(report.chunks))
}

/// One pass of an in-place fill: every chunk any holder of the partition has gets its missing slots rebuilt
/// (from any k shards) on holders that answer. Returns what it copied; `Unsettled` if some chunk could not be
/// completed (unreadable, or a holder refused).
pub async fn fill_partition(ctx: &NodeContext, throttle: &Throttle, codecs: &Codecs, job: &MoveJob) -> Result<MoveReport, MoveError> {
    debug_assert!(job.is_in_place());
    still_moving(ctx, job)?;
    let epoch = ctx.meta.reader.map().epoch;
    let chunks = list_source(ctx, job, epoch).await?;
    let pass = copy_pass(ctx, throttle, codecs, job, &chunks).await?;
    if pass.unsettled > 0 {
        return Err(MoveError::Unsettled(pass.unsettled));
    }
    Ok(MoveReport { chunks: chunks.len() as u64, copied: pass.copied, bytes: pass.bytes })
}

/// Whether the map still holds the partition where `job` found it (and, for a move, unpaused).
fn still_moving(ctx: &NodeContext, job: &MoveJob) -> Result<(), MoveError> {
    let (map, paused) = (ctx.meta.reader.map(), ctx.meta.reader.read(|s| s.migration.paused.clone()));
    match map.partitions.get(job.partition.0 as usize) {
        Some(p) if job.is_in_place() && p.current == job.current && p.target.is_none() => return Ok(()),
        Some(p) if p.current == job.current && p.target.as_ref() == Some(&job.target) => {}
        _ => return Err(MoveError::Superseded),
    }
    if is_paused(&job.current, &job.target, &paused) {
        return Err(MoveError::Paused);
    }
    Ok(())
}

fn descriptors(ctx: &NodeContext, set: &NodeSet) -> Vec<NodeDescriptor> {
    let map = ctx.meta.reader.map();
    set.nodes.iter().filter_map(|n| map.nodes.get(n).cloned()).collect()
}

/// What the source holds of one chunk.
#[derive(Debug, Clone, Default)]
struct SourceChunk {
    /// The blob's length.
    blob_len: u64,
    /// The stripes the source holds shards of (`None`: a stripe written before identities existed).
    stripes: BTreeSet<Option<BlobDigest>>,
}

/// What the source holds: each (tenant, chunk).
type SourceChunks = BTreeMap<(TenantId, ChunkId), SourceChunk>;

/// Every (tenant, chunk) the source holds a shard of, with its blob length. A blob has shards on at least k
/// holders, so with at most m holders unlisted every readable blob is still seen.
async fn list_source(ctx: &NodeContext, job: &MoveJob, epoch: strata_proto::Epoch) -> Result<SourceChunks, MoveError> {
    let holders = descriptors(ctx, &job.current);
    let parity = usize::from(ctx.meta.reader.map().generations.get(&job.current.generation).map_or(0, |g| g.profile.parity_shards));
    let listings = join_all(holders.iter().map(|node| async move {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = ctx.coordinator.peers().scan(node, job.partition, after, SCAN_PAGE, epoch).await?;
            let done = page.len() < SCAN_PAGE as usize;
            after = page.last().map(|(k, _)| *k);
            keys.extend(page.into_iter().map(|(k, h)| ((k.tenant, k.chunk), h.blob_len, h.blob_digest)));
            if done {
                return Ok::<_, crate::coordinator::ShardOpError>(keys);
            }
        }
    }))
    .await;
    let mut chunks = SourceChunks::new();
    let mut failures = Vec::new();
    for listing in listings {
        match listing {
            Ok(keys) => {
                for (chunk, blob_len, digest) in keys {
                    let entry = chunks.entry(chunk).or_default();
                    entry.blob_len = entry.blob_len.max(blob_len);
                    entry.stripes.insert(digest);
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if failures.len() > parity || holders.len() < job.current.nodes.len() {
        return Err(MoveError::Source(failures.join("; ")));
    }
    Ok(chunks)
}

#[derive(Default)]
struct PassOutcome {
    copied: u64,
    unsettled: u64,
    bytes: u64,
}

async fn copy_pass(
    ctx: &NodeContext,
    throttle: &Throttle,
    codecs: &Codecs,
    job: &MoveJob,
    chunks: &SourceChunks,
) -> Result<PassOutcome, MoveError> {
    let mut out = PassOutcome::default();
    let mut by_tenant: BTreeMap<TenantId, Vec<(ChunkId, u64)>> = BTreeMap::new();
    for ((t, c), source) in chunks {
        by_tenant.entry(*t).or_default().push((*c, source.blob_len));
    }
    for (tenant, ids) in by_tenant {
        for group in batches(&ids, ctx.config.migration.batch_chunks, batch_bytes(ctx)) {
            still_moving(ctx, job)?;
            // A move carries the stripes its source holds; an in-place fill has no other source than itself.
            let sources: Vec<Option<&BTreeSet<Option<BlobDigest>>>> =
                group.iter().map(|c| (!job.is_in_place()).then(|| chunks.get(&(tenant, *c)).map(|s| &s.stripes)).flatten()).collect();
            let b = copy_batch(ctx, throttle, codecs, job, tenant, &group, &sources).await;
            if !job.is_in_place() {
                // Counted as it happens, so the cluster's move rate and ETAs follow the work smoothly.
                ctx.metrics.moved_bytes.inc_by(b.bytes);
                ctx.metrics.moved_chunks.inc_by(b.copied);
            }
            out.copied += b.copied;
            out.unsettled += b.unsettled;
            out.bytes += b.bytes;
        }
    }
    Ok(out)
}

/// Most blob bytes per batch: about a second's worth at the move rate limit (at least 1 MiB), so a throttled
/// move writes in small steps instead of long bursts; 64 MiB when unlimited.
fn batch_bytes(ctx: &NodeContext) -> u64 {
    let rate = ctx.meta.reader.read(|s| s.migration.rate_bytes_per_sec).unwrap_or(ctx.config.migration.rate_bytes_per_sec);
    if rate == 0 { 64 << 20 } else { rate.clamp(1 << 20, 64 << 20) }
}

/// Splits chunks into batches of at most `max_chunks` and about `max_bytes` (a single larger chunk is a batch
/// of its own).
fn batches(chunks: &[(ChunkId, u64)], max_chunks: usize, max_bytes: u64) -> Vec<Vec<ChunkId>> {
    let mut out: Vec<Vec<ChunkId>> = Vec::new();
    let mut bytes = 0u64;
    for (id, len) in chunks {
        match out.last_mut() {
            Some(b) if b.len() < max_chunks && bytes + len <= max_bytes => {
                b.push(*id);
                bytes += len;
            }
            _ => {
                out.push(vec![*id]);
                bytes = *len;
            }
        }
    }
    out
}

/// Target holdings of each chunk: `held[chunk][slot]`, `None` for a target node that did not answer.
async fn target_holdings(
    ctx: &NodeContext,
    job: &MoveJob,
    targets: &[NodeDescriptor],
    tenant: TenantId,
    ids: &[ChunkId],
) -> Vec<Vec<Option<Holding>>> {
    let asks: Vec<(PartitionId, ChunkId)> = ids.iter().map(|c| (job.partition, *c)).collect();
    let answers = join_all(targets.iter().map(|node| ctx.coordinator.peers().held(node, tenant, asks.clone(), true))).await;
    (0..ids.len()).map(|c| answers.iter().map(|a| a.as_ref().ok().and_then(|masks| masks.get(c).copied())).collect()).collect()
}

async fn copy_batch(
    ctx: &NodeContext,
    throttle: &Throttle,
    codecs: &Codecs,
    job: &MoveJob,
    tenant: TenantId,
    ids: &[ChunkId],
    sources: &[Option<&BTreeSet<Option<BlobDigest>>>],
) -> PassOutcome {
    let mut out = PassOutcome::default();
    let map = ctx.meta.reader.map();
    let source_tags: Vec<Option<BTreeSet<StripeTag>>> =
        sources.iter().map(|s| s.map(|digests| digests.iter().map(|d| StripeTag::of(d.as_ref())).collect())).collect();
    let Some(profile) = map.generations.get(&job.target.generation).map(|g| g.profile) else {
        out.unsettled = ids.len() as u64;
        return out;
    };
    let targets = descriptors(ctx, &job.target);
    let held = target_holdings(ctx, job, &targets, tenant, ids).await;
    let need = ack_threshold(profile, ctx.config.durability.extra_shards_for_ack);
    let k = usize::from(profile.data_shards);
    // Chunks with a target slot that may still need a shard.
    let todo: Vec<(usize, ChunkId, &Vec<Option<Holding>>)> = ids
        .iter()
        .zip(&held)
        .enumerate()
        .filter_map(|(i, (id, h))| {
            let work = needs_writes(h, source_tags[i].as_ref());
            if !settled(h, need, source_tags[i].as_ref()) && !work {
                out.unsettled += 1;
            }
            work.then_some((i, *id, h))
        })
        .collect();
    if todo.is_empty() {
        return out;
    }
    // A move reads one of the stripes its source holds, never one written to the target alone.
    let reads = todo.iter().map(|(i, id, _)| {
        let only: Option<Vec<Option<BlobDigest>>> = sources[*i].map(|s| s.iter().copied().collect());
        async move {
            match &only {
                Some(only) => ctx.coordinator.get_filtered(tenant, *id, StripeFilter::Only(only)).await,
                None => ctx.coordinator.get(tenant, *id).await,
            }
        }
    });
    let blobs = join_all(reads).await;
    let mut per_node: BTreeMap<usize, Vec<OutgoingShard>> = BTreeMap::new();
    let mut slots_of: BTreeMap<usize, Vec<ChunkId>> = BTreeMap::new();
    for ((i, id, held), blob) in todo.into_iter().zip(blobs) {
        let blob = match blob {
            Ok(b) => b,
            // Collected by GC since the listing: nothing to move.
            Err(e) if e.code == ErrorCode::NotFound => continue,
            Err(e) => {
                tracing::warn!(partition = %job.partition, blob = %id, error = %e, "cannot read a blob to move; will retry");
                out.unsettled += 1;
                continue;
            }
        };
        // The shards written are of the stripe just read (legacy stripes stay legacy), so they join it.
        let writes = slot_writes(held, StripeTag::of(blob.digest.as_ref()), k, source_tags[i].as_ref());
        if writes.is_empty() {
            if !settled(held, need, source_tags[i].as_ref()) {
                out.unsettled += 1;
            }
            continue;
        }
        let shards = match codecs.encode(profile, &blob.bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(blob = %id, error = %e, "re-encoding failed");
                out.unsettled += 1;
                continue;
            }
        };
        out.copied += 1;
        for (i, replaces) in writes {
            let data = &shards[i];
            let header = ShardHeader::for_shard(profile, blob.bytes.len() as u64, i as u8, blob.digest, data);
            let key = ShardKey { partition: job.partition, tenant, chunk: id, index: i as u8 };
            out.bytes += data.len() as u64;
            per_node.entry(i).or_default().push(OutgoingShard { key, header, data: Bytes::from(data.clone()), replaces });
            slots_of.entry(i).or_default().push(id);
        }
    }
    let rate = ctx.meta.reader.read(|s| s.migration.rate_bytes_per_sec).unwrap_or(ctx.config.migration.rate_bytes_per_sec);
    throttle.take(out.bytes, rate).await;
    let epoch = ctx.meta.reader.map().epoch;
    let writes = per_node.into_iter().map(|(i, items)| {
        let node = targets[i].clone();
        async move { (i, ctx.coordinator.peers().put_many(&node, epoch, WriteMode::Repair, items).await) }
    });
    for (i, result) in join_all(writes).await {
        let failed = match result {
            Ok(rs) => rs.iter().filter(|r| r.is_err()).count(),
            Err(_) => slots_of.get(&i).map_or(0, Vec::len),
        };
        if failed > 0 {
            tracing::debug!(partition = %job.partition, slot = i, failed, "some moved shards were not stored; the next pass retries");
        }
    }
    out
}

async fn complete(ctx: &NodeContext, job: &MoveJob) -> Result<(), MoveError> {
    let cmd = MetaCommand::CompleteMove { partition: job.partition, target: job.target.clone() };
    match ctx.meta.write(cmd).await {
        Ok(MetaResponse::Epoch(_)) => Ok(()),
        Ok(other) => Err(MoveError::Meta(format!("unexpected result {other:?}"))),
        Err(MetaError::Rejected(e)) if e.code == ErrorCode::Conflict => Err(MoveError::Superseded),
        Err(e) => Err(MoveError::Meta(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_bytes() {
        let c = |i: u8, len: u64| (ChunkId([i; 32]), len);
        let chunks = vec![c(1, 4), c(2, 4), c(3, 4), c(4, 20), c(5, 1), c(6, 1), c(7, 1)];
        let sizes: Vec<usize> = batches(&chunks, 2, 10).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1, 2, 1], "two per batch, 10 bytes per batch, the big one alone");
        assert_eq!(batches(&chunks, 100, 1000).len(), 1);
        assert!(batches(&[], 2, 10).is_empty());
    }
}
