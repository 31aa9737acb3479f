//! Garbage collection of one tenant's unreferenced blobs: mark, condemn, fence, sweep (docs/rfcs/0001).
//!
//! The run reads the snapshot catalog and every reference list (the live set), lists what the holders store,
//! condemns the difference (dedup queries stop counting it, so new backups upload it again instead of relying
//! on it), waits until every upload session open at that moment has closed, re-reads the catalog, and deletes
//! only shards that are still condemned and still unreferenced. Backups and restores run throughout. Any
//! holder unreachable while condemning aborts the run (nothing is deleted); one unreachable while sweeping
//! keeps its shards for the next run.

mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use strata_proto::{
    ChunkId, ErrorCode, GcAction, GcReport, NodeId, PartitionId, SessionId, SnapshotId, SnapshotRecord, TenantId, WireError,
};

use crate::context::NodeContext;

/// Entries per `ListChunks` page and per `GcShards` batch.
const PAGE: usize = 4096;
/// Longest wait for the fenced sessions (each is bounded by its lease, renewed while its client lives).
const FENCE_TIMEOUT: Duration = Duration::from_secs(3600);

fn err(code: ErrorCode, msg: impl Into<String>) -> WireError {
    WireError::new(code, msg)
}

/// Runs a collection for `tenant`, one at a time per node.
pub async fn collect(ctx: &NodeContext, tenant: TenantId) -> Result<GcReport, WireError> {
    let _one_at_a_time = ctx.gc_lock.lock().await;
    let started = Instant::now();
    let mut report = GcReport::default();

    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    let marked = catalog(ctx, tenant);
    report.snapshots = marked.len() as u64;
    let referenced = referenced_by(ctx, tenant, marked.values()).await?;
    report.referenced = referenced.len() as u64;
    let stored = stored_chunks(ctx, tenant).await?;
    report.stored = stored.len() as u64;
    let candidates = plan::candidates(&stored, &referenced);
    report.candidates = candidates.len() as u64;
    tracing::info!(%tenant, snapshots = report.snapshots, referenced = report.referenced, stored = report.stored, candidates = report.candidates, "gc: marked");
    if candidates.is_empty() {
        return Ok(report);
    }

    if let Err(e) = on_holders(ctx, tenant, GcAction::Condemn, &candidates, true).await {
        // Leave nothing half-condemned: chunks that stay condemned would only be uploaded again.
        let _ = on_holders(ctx, tenant, GcAction::Uncondemn, &candidates, false).await;
        return Err(e);
    }

    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    // Every session of the tenant in the replicated state, whatever this node's clock says (`plan::fence`).
    let fence: Vec<SessionId> = ctx.meta.reader.read(|s| plan::fence(&s.sessions, tenant));
    report.sessions_waited_for = fence.len() as u64;
    wait_for_sessions(ctx, &fence).await?;

    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    let now = catalog(ctx, tenant);
    let committed_since: Vec<&SnapshotRecord> = now.iter().filter(|(id, _)| !marked.contains_key(id)).map(|(_, r)| r).collect();
    let referenced_now = referenced_by(ctx, tenant, committed_since.into_iter()).await?;
    let (keep, sweep) = plan::split_for_sweep(&candidates, &referenced_now);
    report.kept = keep.len() as u64;
    on_holders(ctx, tenant, GcAction::Uncondemn, &keep, false).await?;
    let swept = on_holders(ctx, tenant, GcAction::Sweep, &sweep, false).await?;
    report.deleted_chunks = sweep.len() as u64;
    report.deleted_shards = swept.shards;
    report.freed_bytes = swept.bytes;
    report.unreachable_holders = swept.unreachable;
    tracing::info!(%tenant, ?report, seconds = started.elapsed().as_secs_f64(), "gc: done");
    Ok(report)
}

fn catalog(ctx: &NodeContext, tenant: TenantId) -> BTreeMap<SnapshotId, SnapshotRecord> {
    ctx.meta.reader.read(|s| s.snapshots.get(&tenant).cloned().unwrap_or_default())
}

/// Every chunk the snapshots reference, plus their reference-list blobs themselves. A list whose contents do
/// not match the digest its snapshot recorded stops the run: collecting by a swapped list could delete live
/// data, so nothing is condemned or deleted until the list is repaired.
async fn referenced_by(
    ctx: &NodeContext,
    tenant: TenantId,
    snapshots: impl Iterator<Item = &SnapshotRecord>,
) -> Result<BTreeSet<ChunkId>, WireError> {
    let mut out = BTreeSet::new();
    for record in snapshots {
        if !record.ref_digests.is_empty() && record.ref_digests.len() != record.refs.len() {
            return Err(err(
                ErrorCode::Corrupt,
                format!("gc: snapshot {} names {} reference lists but {} digests", record.id, record.refs.len(), record.ref_digests.len()),
            ));
        }
        for (i, r) in record.refs.iter().enumerate() {
            out.insert(*r);
            let context =
                |e: WireError| err(e.code, format!("gc refuses to run: reference list {r} of snapshot {}: {}", record.id, e.message));
            let ids = match record.ref_digests.get(i) {
                Some(digest) => ctx.coordinator.get_reference_list(tenant, *r, digest).await.map_err(context)?,
                // Snapshots committed before digests were recorded: the list as stored.
                None => {
                    let blob = ctx.coordinator.get(tenant, *r).await.map_err(context)?;
                    strata_proto::reflist::decode(&blob.bytes)
                        .map_err(|e| err(ErrorCode::Corrupt, format!("gc: reference list {r}: {e}")))?
                }
            };
            out.extend(ids);
        }
    }
    Ok(out)
}

/// Every (partition, chunk) the tenant has shards of, from every holder (all must answer).
async fn stored_chunks(ctx: &NodeContext, tenant: TenantId) -> Result<BTreeSet<(PartitionId, ChunkId)>, WireError> {
    let map = ctx.meta.reader.map();
    let mut by_node: BTreeMap<NodeId, Vec<PartitionId>> = BTreeMap::new();
    for p in 0..map.partition_count() {
        let loc = map.locate_partition(PartitionId(p)).map_err(|e| err(ErrorCode::NotReady, e.to_string()))?;
        for set in &loc.read {
            for n in &set.nodes {
                by_node.entry(n.id).or_default().push(PartitionId(p));
            }
        }
    }
    let listings = by_node.into_iter().map(|(node, mut partitions)| {
        partitions.dedup();
        let desc = map.nodes[&node].clone();
        async move {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = ctx.coordinator.peers().list_chunks(&desc, tenant, partitions.clone(), after, PAGE as u32).await?;
                let done = page.len() < PAGE;
                after = page.last().copied();
                out.extend(page);
                if done {
                    return Ok::<_, crate::coordinator::ShardOpError>(out);
                }
            }
        }
    });
    let mut out = BTreeSet::new();
    for listing in join_all(listings).await {
        out.extend(listing.map_err(|e| err(ErrorCode::Unavailable, format!("gc needs every holder to list its chunks: {e}")))?);
    }
    Ok(out)
}

/// Totals of one step over all holders.
#[derive(Default)]
struct StepTotals {
    shards: u64,
    bytes: u64,
    unreachable: u64,
}

/// Applies `action` to the chunks' shards on every holder; with `all_must_succeed`, any failure is an error.
async fn on_holders(
    ctx: &NodeContext,
    tenant: TenantId,
    action: GcAction,
    chunks: &[(PartitionId, ChunkId)],
    all_must_succeed: bool,
) -> Result<StepTotals, WireError> {
    let map = ctx.meta.reader.map();
    let mut by_node: BTreeMap<NodeId, Vec<(PartitionId, ChunkId)>> = BTreeMap::new();
    for &(p, c) in chunks {
        let loc = map.locate_partition(p).map_err(|e| err(ErrorCode::NotReady, e.to_string()))?;
        for set in &loc.read {
            for n in &set.nodes {
                by_node.entry(n.id).or_default().push((p, c));
            }
        }
    }
    let steps = by_node.into_iter().map(|(node, list)| {
        let desc = map.nodes[&node].clone();
        async move {
            let mut totals = (0, 0);
            for batch in list.chunks(PAGE) {
                let (s, b) = ctx.coordinator.peers().gc(&desc, tenant, action, batch.to_vec()).await?;
                totals.0 += s;
                totals.1 += b;
            }
            Ok::<_, crate::coordinator::ShardOpError>(totals)
        }
    });
    let mut totals = StepTotals::default();
    for result in join_all(steps).await {
        match result {
            Ok((s, b)) => {
                totals.shards += s;
                totals.bytes += b;
            }
            Err(e) if all_must_succeed => return Err(err(ErrorCode::Unavailable, format!("gc {action:?} needs every holder: {e}"))),
            Err(e) => {
                tracing::warn!(error = %e, ?action, "gc step failed on a holder; a later run finishes it");
                totals.unreachable += 1;
            }
        }
    }
    Ok(totals)
}

/// Waits until none of `sessions` is open any more (committed, aborted or expired).
async fn wait_for_sessions(ctx: &NodeContext, sessions: &[SessionId]) -> Result<(), WireError> {
    let deadline = Instant::now() + FENCE_TIMEOUT;
    loop {
        let open = ctx.meta.reader.read(|s| sessions.iter().filter(|id| s.sessions.contains_key(id)).count());
        if open == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(ErrorCode::Timeout, format!("gc: {open} upload sessions stayed open for an hour")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
