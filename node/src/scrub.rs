//! Scrub: a throttled background pass that reads every shard this node holds and checks its checksum, rebuilds
//! the ones that fail, and fills shards missing from the partitions it leads.
//!
//! Each pass has two halves. First, every shard on this node is read back through the store, which verifies
//! it against its checksum; a corrupt shard in a slot the node holds for writing is rebuilt in place from the
//! other shards of its stripe (the store replaces rotted bytes), and one in a partition that is moving away is
//! left to the move. Second, for each settled partition whose set this node leads, an in-place fill (the
//! migration engine's copy pass with the set as its own target) rebuilds shards missing anywhere in the set,
//! such as those of a holder that was down during a put. A scrub never deletes a readable shard and never
//! writes outside the node's write slots (`custody`). The time of the last complete pass is reported per node
//! and, as the oldest of its nodes, per generation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_proto::cluster_map::SlotRole;
use strata_proto::{ErrorCode, PartitionId, ShardHeader, ShardKey, WriteMode};
use tokio::sync::watch;

use crate::context::NodeContext;
use crate::coordinator::OutgoingShard;
use crate::erasure::Codecs;
use crate::migrate::mover::{MoveJob, fill_partition};
use crate::migrate::plan::is_mover;
use crate::migrate::throttle::Throttle;
use crate::store::StoreError;

/// Keys verified per store call.
const PAGE: usize = 256;

/// What one pass found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Shards read and verified.
    pub verified: u64,
    /// Bytes of shard data read.
    pub bytes: u64,
    /// Shards that failed their checksum.
    pub corrupt: u64,
    /// Corrupt shards rebuilt in place.
    pub rebuilt: u64,
    /// Missing shards written by the fill half.
    pub filled: u64,
    /// Work that could not be finished this pass (retried on the next).
    pub unfinished: u64,
}

impl ScrubReport {
    /// A complete pass that found nothing to fix: every shard on this node verified, and no stripe of the
    /// partitions it fills missing a shard. Redundancy was full for those stripes when the pass began (unless
    /// something failed since).
    pub fn is_clean(&self) -> bool {
        self.corrupt == 0 && self.filled == 0 && self.unfinished == 0
    }
}

/// Runs a pass every `scrub.interval_ms` until `shutdown` turns true.
pub async fn run(ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) {
    let throttle = Throttle::default();
    let codecs = Codecs::default();
    let interval = Duration::from_millis(ctx.config.scrub.interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let started_s = crate::server::now_ms() as i64 / 1000;
        let r = pass(&ctx, &throttle, &codecs).await;
        if r.unfinished == 0 {
            ctx.metrics.scrub_last_complete.set(crate::server::now_ms() as i64 / 1000);
            ctx.scrubbed_at_ms.store(crate::server::now_ms(), std::sync::atomic::Ordering::Relaxed);
        }
        if r.is_clean() {
            ctx.metrics.scrub_clean_pass_started.set(started_s);
        }
        let log = if r.corrupt > 0 || r.filled > 0 || r.unfinished > 0 { tracing::Level::WARN } else { tracing::Level::DEBUG };
        if log == tracing::Level::WARN {
            tracing::warn!(
                verified = r.verified,
                bytes = r.bytes,
                corrupt = r.corrupt,
                rebuilt = r.rebuilt,
                filled = r.filled,
                unfinished = r.unfinished,
                "scrub pass done"
            );
        } else {
            tracing::debug!(verified = r.verified, bytes = r.bytes, "scrub pass done, nothing to fix");
        }
    }
}

/// One full pass over every partition.
pub async fn pass(ctx: &NodeContext, throttle: &Throttle, codecs: &Codecs) -> ScrubReport {
    let mut report = ScrubReport::default();
    let map = ctx.meta.reader.map();
    if !map.is_placed() {
        report.unfinished += 1;
        return report;
    }
    let total = map.partitions.len().max(1);
    for i in 0..map.partitions.len() {
        let partition = PartitionId(i as u32);
        verify_partition(ctx, throttle, codecs, partition, &mut report).await;
        ctx.metrics.scrub_progress.set((i + 1) as f64 / total as f64 / 2.0);
    }
    for (i, p) in map.partitions.iter().enumerate() {
        if p.target.is_none() && is_mover(&p.current, ctx.id, |n| ctx.health.is_down(n)) {
            let job = MoveJob::in_place(PartitionId(i as u32), p.current.clone());
            match fill_partition(ctx, throttle, codecs, &job).await {
                Ok(r) => report.filled += r.copied,
                Err(e) => {
                    tracing::info!(partition = %job.partition, error = %e, "scrub fill unfinished");
                    report.unfinished += 1;
                }
            }
        }
        ctx.metrics.scrub_progress.set(0.5 + (i + 1) as f64 / total as f64 / 2.0);
    }
    ctx.metrics.scrub_filled.inc_by(report.filled);
    report
}

/// Reads back every shard of `partition` on this node; rebuilds the corrupt ones it may write.
async fn verify_partition(ctx: &NodeContext, throttle: &Throttle, codecs: &Codecs, partition: PartitionId, report: &mut ScrubReport) {
    let rate = ctx.config.scrub.rate_bytes_per_sec;
    let mut after: Option<ShardKey> = None;
    loop {
        let store = ctx.store.clone();
        let page = tokio::task::spawn_blocking(move || -> Result<(Vec<ShardKey>, u64, u64, Option<ShardKey>), StoreError> {
            let keys = store.scan_partition(partition, after.as_ref(), PAGE)?;
            let (mut bytes, mut verified, mut corrupt) = (0u64, 0u64, Vec::new());
            for (key, _) in &keys {
                match store.get(key) {
                    Ok(Some(s)) => {
                        bytes += s.data.len() as u64;
                        verified += 1;
                    }
                    Ok(None) => {}
                    Err(StoreError::Corrupt { .. }) => corrupt.push(*key),
                    Err(e) => return Err(e),
                }
            }
            let last = (keys.len() == PAGE).then(|| keys.last().map(|(k, _)| *k)).flatten();
            Ok((corrupt, bytes, verified, last))
        })
        .await;
        let (corrupt, bytes, verified, last) = match page {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(%partition, error = %e, "scrub could not read the store");
                report.unfinished += 1;
                return;
            }
            Err(e) => {
                tracing::warn!(%partition, error = %e, "scrub task failed");
                report.unfinished += 1;
                return;
            }
        };
        report.verified += verified;
        report.bytes += bytes;
        ctx.metrics.scrub_verified.inc_by(verified);
        ctx.metrics.scrub_bytes.inc_by(bytes);
        throttle.take(bytes, rate).await;
        for key in corrupt {
            report.corrupt += 1;
            ctx.metrics.scrub_corrupt.inc();
            tracing::warn!(shard = %crate::store::display_key(&key), "scrub found a corrupt shard");
            match rebuild(ctx, codecs, key).await {
                Ok(()) => {
                    report.rebuilt += 1;
                    ctx.metrics.scrub_rebuilt.inc();
                }
                Err(why) => {
                    report.unfinished += 1;
                    tracing::warn!(shard = %crate::store::display_key(&key), reason = %why, "corrupt shard not rebuilt yet");
                }
            }
        }
        match last {
            Some(k) => after = Some(k),
            None => return,
        }
    }
}

/// Rebuilds one corrupt shard in place from the rest of its stripe.
async fn rebuild(ctx: &NodeContext, codecs: &Codecs, key: ShardKey) -> Result<(), String> {
    let map = ctx.meta.reader.map();
    if map.slot_role(key.partition, ctx.id, key.index) != SlotRole::Write {
        return Err("the partition is moving; the move rewrites it".into());
    }
    let set = &map.partitions[key.partition.0 as usize].current;
    let profile = map.generations.get(&set.generation).map(|g| g.profile).ok_or("unknown generation")?;
    let blob = match ctx.coordinator.get(key.tenant, key.chunk).await {
        Ok(b) => b,
        Err(e) if e.code == ErrorCode::NotFound => return Err("its blob is gone (collected)".into()),
        Err(e) => return Err(e.to_string()),
    };
    let shards = codecs.encode(profile, &blob.bytes).map_err(|e| e.to_string())?;
    let data = shards.into_iter().nth(usize::from(key.index)).ok_or("index beyond the profile")?;
    let header = ShardHeader::for_shard(profile, blob.bytes.len() as u64, key.index, blob.digest, &data);
    let me = map.nodes.get(&ctx.id).cloned().ok_or("this node is not in the map")?;
    // A repair: the damaged record is replaced by bytes of the stripe just decoded.
    let shard = OutgoingShard { key, header, data: Bytes::from(data), replaces: None };
    let results = ctx.coordinator.peers().put_many(&me, map.epoch, WriteMode::Repair, vec![shard]).await.map_err(|e| e.to_string())?;
    results
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(crate::coordinator::ShardOpError::Failed { node: ctx.id, reason: "no result".into() }))
        .map_err(|e| e.to_string())
}
