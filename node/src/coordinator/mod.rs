//! The blob coordinator: has / put / get / delete of a tenant's blobs, on whichever node a client called.
//!
//! Put: erasure-code the blob with the partition's generation profile and write shard `i` to node `i` of the
//! partition's write set, all in parallel, as creates: a holder never replaces a shard it already holds with
//! another stripe, and a put that meets one is answered `Conflict` (the stored bytes stay); acknowledge by the
//! durability rule in `plan.rs`. Get: fetch the data shards, fall back to parity when any is missing or
//! corrupt, rebuild from any k shards of one stripe, and report corrupt shards. Has: one batched query per
//! holder, a blob counts as present when enough shards of one stripe are durable. The coordinator owns no
//! state: everything it needs comes from the cluster map and the shard holders.

mod plan;
mod shard_peers;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use strata_proto::cluster_map::{Location, ResolvedPlacement};
use strata_proto::{
    BlobDigest, ChunkId, EcProfile, ErrorCode, Holding, NodeId, PartitionId, ShardHeader, ShardIndex, ShardKey, StripeTag, TenantId,
    WireError, WriteMode,
};

pub use self::plan::{PutVerdict, ShardFailure, StripeFilter, ack_threshold, put_verdict};
pub use self::shard_peers::{OutgoingShard, ShardOpError, ShardPeers};
use crate::erasure::Codecs;
use crate::meta::state_machine::MetaReader;
use crate::metrics::Metrics;

/// Ids per dedup query when verifying a snapshot.
const HAS_BATCH: usize = 2048;

/// Most stripes of one chunk id tried when looking for the one whose contents match a known digest.
const MAX_STRIPES_TRIED: usize = 4;

/// Blobs above this size are encoded and decoded on the blocking pool.
const INLINE_CODING_BYTES: usize = 256 << 10;

/// Coordinates blob requests.
pub struct Coordinator {
    peers: ShardPeers,
    meta: MetaReader,
    codecs: Codecs,
    metrics: Arc<Metrics>,
    extra_ack: u8,
}

/// A blob read back, with the stripe it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBlob {
    /// The blob.
    pub bytes: Vec<u8>,
    /// Its stripe identity (`None` for a stripe written before identities existed).
    pub digest: Option<BlobDigest>,
}

/// Result of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutResult {
    /// Shards durably stored.
    pub stored: u8,
    /// k + m.
    pub total: u8,
}

fn err(code: ErrorCode, msg: impl Into<String>) -> WireError {
    WireError::new(code, msg)
}

impl Coordinator {
    /// A coordinator that reaches shards through `peers`.
    pub fn new(peers: ShardPeers, meta: MetaReader, metrics: Arc<Metrics>, extra_ack: u8) -> Self {
        Coordinator { peers, meta, codecs: Codecs::default(), metrics, extra_ack }
    }

    /// Direct access to shard operations (for node-internal handlers).
    pub fn peers(&self) -> &ShardPeers {
        &self.peers
    }

    fn locate<'a>(&self, map: &'a strata_proto::ClusterMap, id: &ChunkId) -> Result<Location<'a>, WireError> {
        map.locate(id).map_err(|e| match e {
            strata_proto::cluster_map::MapError::NoPlacement => err(
                ErrorCode::NotReady,
                "the cluster has no partition placement yet (waiting for enough nodes to join the first generation)",
            ),
            other => err(ErrorCode::Internal, format!("cluster map: {other}")),
        })
    }

    /// Stores a blob for `tenant`.
    pub async fn put(&self, tenant: TenantId, id: ChunkId, blob: Bytes) -> Result<PutResult, WireError> {
        self.put_many(tenant, vec![(id, blob)]).await.pop().unwrap_or_else(|| Err(err(ErrorCode::Internal, "no result for the blob")))
    }

    /// Stores several blobs, each acknowledged or refused on its own by the same rule as [`Coordinator::put`].
    /// Shards bound for one holder travel in one request and are stored with one durable write.
    pub async fn put_many(&self, tenant: TenantId, blobs: Vec<(ChunkId, Bytes)>) -> Vec<Result<PutResult, WireError>> {
        let map = self.meta.map();
        let mut results: Vec<Option<Result<PutResult, WireError>>> = vec![None; blobs.len()];
        // Locate every blob; the ones that cannot be placed fail alone. A partition that is moving also has
        // sets it is leaving, which may hold the chunk already: a put must not shadow what they hold.
        let mut planned = Vec::new();
        let mut leaving: BTreeMap<usize, Vec<Vec<NodeId>>> = BTreeMap::new();
        for (i, (id, blob)) in blobs.into_iter().enumerate() {
            match self.locate(&map, &id) {
                Ok(loc) => {
                    let write: Vec<NodeId> = loc.write.nodes.iter().map(|n| n.id).collect();
                    let others: Vec<Vec<NodeId>> = loc
                        .read
                        .iter()
                        .map(|set| set.nodes.iter().map(|n| n.id).collect::<Vec<_>>())
                        .filter(|nodes| *nodes != write)
                        .collect();
                    if !others.is_empty() {
                        leaving.insert(i, others);
                    }
                    planned.push((i, id, loc.partition, loc.write.generation.profile, write, blob));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let codecs = self.codecs.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            planned
                .into_iter()
                .map(|(i, id, p, profile, nodes, blob)| {
                    let digest = ShardHeader::digest_of_blob(&blob);
                    (i, id, p, profile, nodes, (blob.len() as u64, digest), codecs.encode(profile, &blob))
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut encoded = match encoded {
            Ok(e) => e,
            Err(e) => return results.into_iter().map(|r| r.unwrap_or_else(|| Err(err(ErrorCode::Internal, e.to_string())))).collect(),
        };
        if !leaving.is_empty() {
            let checks: Vec<(usize, PartitionId, ChunkId, StripeTag)> = encoded
                .iter()
                .filter(|e| leaving.contains_key(&e.0))
                .map(|(i, id, p, _, _, (_, digest), _)| (*i, *p, *id, StripeTag::of(Some(digest))))
                .collect();
            let shadowed = self.held_elsewhere(&map, tenant, &checks, &leaving).await;
            encoded.retain(|e| !shadowed.contains(&e.0));
            for i in shadowed {
                results[i] = Some(Err(err(
                    ErrorCode::Conflict,
                    "the blob is already stored, with other contents, in the set its partition is moving from; the stored copy was kept",
                )));
            }
        }
        // Shard writes grouped by holder; per blob, one slot per shard for its outcome.
        let mut per_node: BTreeMap<NodeId, Vec<ShardWrite>> = BTreeMap::new();
        let mut outcomes: BTreeMap<usize, BlobOutcome> = BTreeMap::new();
        for (i, id, partition, profile, nodes, (blob_len, digest), shards) in encoded {
            let shards = match shards {
                Ok(s) => s,
                Err(e) => {
                    results[i] = Some(Err(err(ErrorCode::Internal, e.to_string())));
                    continue;
                }
            };
            outcomes.insert(
                i,
                BlobOutcome { profile, id, blob_len, shards: vec![Err(ShardFailure::Other("not attempted".into())); shards.len()] },
            );
            for (index, (node, data)) in nodes.into_iter().zip(shards).enumerate() {
                let header = ShardHeader::for_shard(profile, blob_len, index as ShardIndex, Some(digest), &data);
                let key = ShardKey { partition, tenant, chunk: id, index: index as ShardIndex };
                let shard = OutgoingShard { key, header, data: Bytes::from(data), replaces: None };
                per_node.entry(node).or_default().push(ShardWrite { blob: i, index, shard });
            }
        }
        let epoch = map.epoch;
        let sends = per_node.into_iter().map(|(node, items)| {
            let desc = map.nodes.get(&node).expect("located nodes are in the map").clone();
            async move {
                let slots: Vec<(usize, usize)> = items.iter().map(|w| (w.blob, w.index)).collect();
                let sent = self.peers.put_many(&desc, epoch, WriteMode::Create, items.into_iter().map(|w| w.shard).collect()).await;
                (slots, sent)
            }
        });
        for (slots, sent) in join_all(sends).await {
            let per_shard: Vec<Result<(), ShardOpError>> = match sent {
                Ok(r) => r,
                Err(e) => vec![Err(e); slots.len()],
            };
            for ((i, index), r) in slots.into_iter().zip(per_shard) {
                if let Some(o) = outcomes.get_mut(&i) {
                    o.shards[index] = r.map_err(|e| match e {
                        ShardOpError::NoSpace { reason, .. } => ShardFailure::NoSpace(reason),
                        conflict @ ShardOpError::Conflict { .. } => ShardFailure::Conflict(conflict.to_string()),
                        other => ShardFailure::Other(other.to_string()),
                    });
                }
            }
        }
        for (i, o) in outcomes {
            results[i] = Some(self.verdict(o.id, o.profile, o.blob_len, &o.shards));
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(err(ErrorCode::Internal, "blob was not processed")))).collect()
    }

    /// Which of `checks` (blob index, partition, chunk, stripe of the incoming put) the sets a partition is
    /// leaving hold a shard of another stripe of: those puts would shadow stored data on the target. Nodes that
    /// do not answer count as holding nothing (the move's own checks still stand).
    async fn held_elsewhere(
        &self,
        map: &strata_proto::ClusterMap,
        tenant: TenantId,
        checks: &[(usize, PartitionId, ChunkId, StripeTag)],
        leaving: &BTreeMap<usize, Vec<Vec<NodeId>>>,
    ) -> std::collections::BTreeSet<usize> {
        // Per node: the chunks to ask about, and for each the blob index and stripe of the incoming put.
        type Ask = (Vec<(PartitionId, ChunkId)>, Vec<(usize, StripeTag)>);
        let mut asks: BTreeMap<NodeId, Ask> = BTreeMap::new();
        for (i, p, id, tag) in checks {
            for node in leaving.get(i).into_iter().flatten().flatten() {
                let ask = asks.entry(*node).or_default();
                ask.0.push((*p, *id));
                ask.1.push((*i, *tag));
            }
        }
        let queries = asks.into_iter().filter_map(|(node, (chunks, slots))| {
            let desc = map.nodes.get(&node)?.clone();
            Some(async move { (self.peers.held(&desc, tenant, chunks, true).await, slots) })
        });
        let mut shadowed = std::collections::BTreeSet::new();
        for (answer, slots) in join_all(queries).await {
            let Ok(holdings) = answer else { continue };
            for (holding, (i, tag)) in holdings.into_iter().zip(slots) {
                if holding.mask != 0 && holding.stripe != tag {
                    shadowed.insert(i);
                }
            }
        }
        shadowed
    }

    /// Applies the durability rule to one blob's shard outcomes.
    fn verdict(
        &self,
        id: ChunkId,
        profile: EcProfile,
        blob_len: u64,
        results: &[Result<(), ShardFailure>],
    ) -> Result<PutResult, WireError> {
        let failures = || results.iter().filter_map(|r| r.as_ref().err()).map(|f| format!("{f:?}")).collect::<Vec<_>>().join("; ");
        match put_verdict(profile, self.extra_ack, results) {
            PutVerdict::Acknowledged { stored, degraded } => {
                if degraded {
                    self.metrics.puts_degraded.inc();
                    tracing::warn!(blob = %id, stored, total = profile.total_shards(), failures = %failures(), "put acknowledged with reduced redundancy");
                }
                self.metrics.blob_bytes.observe(blob_len as f64);
                Ok(PutResult { stored: stored as u8, total: profile.total_shards() as u8 })
            }
            PutVerdict::Conflict { conflicts } => {
                tracing::info!(blob = %id, conflicts, failures = %failures(), "put met a stored stripe under the same id; kept it");
                Err(err(
                    ErrorCode::Conflict,
                    format!(
                        "blob {id} is already stored with other contents ({conflicts} of {} holders kept theirs); the stored copy was kept",
                        profile.total_shards()
                    ),
                ))
            }
            PutVerdict::Refused { stored, need, no_space } => {
                let code = if no_space { ErrorCode::NoSpace } else { ErrorCode::Unavailable };
                Err(err(
                    code,
                    format!("blob {id}: only {stored} of {} shards stored, {need} needed; {}", profile.total_shards(), failures()),
                ))
            }
        }
    }

    /// Reads a blob of `tenant`.
    pub async fn get(&self, tenant: TenantId, id: ChunkId) -> Result<FetchedBlob, WireError> {
        self.get_excluding(tenant, id, &[]).await
    }

    /// Reads a blob of `tenant` from a stripe other than those in `exclude` (the caller could not use them).
    pub async fn get_excluding(&self, tenant: TenantId, id: ChunkId, exclude: &[BlobDigest]) -> Result<FetchedBlob, WireError> {
        self.get_filtered(tenant, id, StripeFilter::Exclude(exclude)).await
    }

    /// Reads a blob of `tenant` from one of the stripes `filter` admits.
    pub async fn get_filtered(&self, tenant: TenantId, id: ChunkId, filter: StripeFilter<'_>) -> Result<FetchedBlob, WireError> {
        let map = self.meta.map();
        let loc = self.locate(&map, &id)?;
        let mut problems = Vec::new();
        let mut all_absent = true;
        for set in &loc.read {
            match self.read_from(set, loc.partition, tenant, id, filter).await {
                ReadOutcome::Blob(b) => return Ok(b),
                ReadOutcome::Absent => {}
                ReadOutcome::Unreadable(why) => {
                    all_absent = false;
                    problems.push(why);
                }
            }
        }
        if all_absent {
            Err(err(ErrorCode::NotFound, format!("blob {id} not found")))
        } else {
            Err(err(ErrorCode::Unavailable, format!("blob {id} cannot be read now: {}", problems.join("; "))))
        }
    }

    async fn read_from(
        &self,
        set: &ResolvedPlacement<'_>,
        partition: PartitionId,
        tenant: TenantId,
        id: ChunkId,
        filter: StripeFilter<'_>,
    ) -> ReadOutcome {
        let profile = set.generation.profile;
        let k = usize::from(profile.data_shards);
        let mut got: BTreeMap<ShardIndex, (ShardHeader, Vec<u8>)> = BTreeMap::new();
        let mut absent = 0usize;
        let mut failures = Vec::new();
        for round in [plan::first_read(profile), plan::second_read(profile)] {
            let headers: Vec<(ShardIndex, ShardHeader)> = got.iter().map(|(i, (h, _))| (*i, *h)).collect();
            if plan::choose_stripe(&headers, filter).is_some_and(|((p, _, _), n)| n >= usize::from(p.data_shards)) {
                break;
            }
            let fetches = round.iter().map(|&index| {
                let key = ShardKey { partition, tenant, chunk: id, index };
                let node = set.nodes[usize::from(index)];
                async move { (index, self.peers.get(node, key).await) }
            });
            for (index, result) in join_all(fetches).await {
                match result {
                    Ok(Some(shard)) => {
                        got.insert(index, (shard.header, shard.data));
                    }
                    Ok(None) => absent += 1,
                    Err(e) => {
                        if matches!(e, ShardOpError::Corrupt { .. }) {
                            self.metrics.corrupt_shards.inc();
                            tracing::warn!(blob = %id, shard = index, error = %e, "corrupt shard; needs repair");
                        }
                        failures.push(e.to_string());
                    }
                }
            }
        }
        let headers: Vec<(ShardIndex, ShardHeader)> = got.iter().map(|(i, (h, _))| (*i, *h)).collect();
        // Shards of stripes the caller does not want are, for this read, as good as absent.
        let excluded = headers.iter().filter(|(_, h)| !filter.admits(h.blob_digest)).count();
        if let Some((stripe, count)) = plan::choose_stripe(&headers, filter)
            && count >= usize::from(stripe.0.data_shards)
        {
            let (stripe_profile, blob_len, digest) = stripe;
            let shards: Vec<Option<Vec<u8>>> = (0..stripe_profile.total_shards() as u8)
                .map(|i| {
                    got.remove(&i)
                        .filter(|(h, _)| h.profile == stripe_profile && h.blob_len == blob_len && h.blob_digest == digest)
                        .map(|(_, d)| d)
                })
                .collect();
            let codecs = self.codecs.clone();
            let decoded = if blob_len as usize > INLINE_CODING_BYTES {
                tokio::task::spawn_blocking(move || codecs.decode(stripe_profile, blob_len, shards))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            } else {
                codecs.decode(stripe_profile, blob_len, shards).map_err(|e| e.to_string())
            };
            return match decoded {
                Ok(bytes) => ReadOutcome::Blob(FetchedBlob { bytes, digest }),
                Err(e) => ReadOutcome::Unreadable(format!("decoding failed: {e}")),
            };
        }
        if plan::certainly_absent(profile, absent + excluded) {
            ReadOutcome::Absent
        } else {
            ReadOutcome::Unreadable(format!("{} shards readable, {k} of one stripe needed ({})", headers.len(), failures.join("; ")))
        }
    }

    /// For each id, whether the tenant stores it durably (at least the acknowledgement threshold of shards),
    /// not counting shards condemned by garbage collection: dedup must never rely on those.
    pub async fn has(&self, tenant: TenantId, ids: &[ChunkId]) -> Result<Vec<bool>, WireError> {
        self.has_counting(tenant, ids, false).await
    }

    async fn has_counting(&self, tenant: TenantId, ids: &[ChunkId], include_condemned: bool) -> Result<Vec<bool>, WireError> {
        let map = self.meta.map();
        let mut asks: BTreeMap<NodeId, HolderQuery> = BTreeMap::new();
        let mut locations = Vec::with_capacity(ids.len());
        for (pos, id) in ids.iter().enumerate() {
            let loc = self.locate(&map, id)?;
            for (r, set) in loc.read.iter().enumerate() {
                for (i, node) in set.nodes.iter().enumerate() {
                    let entry = asks.entry(node.id).or_default();
                    entry.chunks.push((loc.partition, *id));
                    entry.slots.push(ShardSlot { pos, set: r, index: i as ShardIndex });
                }
            }
            locations.push(loc);
        }
        let queries = asks.into_iter().map(|(node, q)| {
            let desc = map.nodes.get(&node).expect("located nodes are in the map");
            async move { (self.peers.held(desc, tenant, q.chunks, include_condemned).await, q.slots) }
        });
        // answers[pos][read set] = (slot, what its node holds) for each node that answered.
        let mut answers: Vec<Vec<Vec<(ShardIndex, Holding)>>> = locations.iter().map(|l| vec![Vec::new(); l.read.len()]).collect();
        for (result, slots) in join_all(queries).await {
            let holdings = match result {
                Ok(h) => h,
                Err(e) => {
                    // Shards on an unreachable holder count as absent: at worst the client uploads again.
                    tracing::debug!(error = %e, "shard query failed during a dedup query");
                    continue;
                }
            };
            for (holding, slot) in holdings.into_iter().zip(slots) {
                answers[slot.pos][slot.set].push((slot.index, holding));
            }
        }
        Ok(locations
            .iter()
            .zip(answers)
            .map(|(loc, a)| {
                loc.read
                    .iter()
                    .zip(a)
                    .any(|(set, slots)| plan::durable_in_set(&slots, ack_threshold(set.generation.profile, self.extra_ack)))
            })
            .collect())
    }

    /// Reads the reference list `id` whose contents must have `digest` (recorded in the snapshot). A stripe
    /// whose contents do not match is passed over for another one; none matching is an error naming the list.
    pub async fn get_reference_list(&self, tenant: TenantId, id: ChunkId, digest: &[u8; 32]) -> Result<Vec<ChunkId>, WireError> {
        let mut excluded = Vec::new();
        loop {
            let blob = match self.get_excluding(tenant, id, &excluded).await {
                Ok(b) => b,
                Err(e) if e.code == ErrorCode::NotFound && !excluded.is_empty() => {
                    return Err(err(
                        ErrorCode::Corrupt,
                        format!("reference list {id} does not match the digest the snapshot recorded (no stored copy does)"),
                    ));
                }
                Err(e) => return Err(err(e.code, format!("reference list {id}: {}", e.message))),
            };
            if strata_proto::reflist::digest(&blob.bytes) == *digest {
                return strata_proto::reflist::decode(&blob.bytes)
                    .map_err(|e| err(ErrorCode::Corrupt, format!("reference list {id}: {e}")));
            }
            tracing::warn!(list = %id, "a stored reference list does not match its snapshot's digest; trying another stripe");
            match blob.digest {
                Some(d) if excluded.len() < MAX_STRIPES_TRIED => excluded.push(d),
                _ => {
                    return Err(err(ErrorCode::Corrupt, format!("reference list {id} does not match the digest the snapshot recorded")));
                }
            }
        }
    }

    /// Checks that every chunk named by the reference-list blobs `refs` (whose contents have `digests`) is
    /// stored durably for `tenant`.
    pub async fn verify_complete(&self, tenant: TenantId, refs: &[ChunkId], digests: &[[u8; 32]]) -> Result<(), WireError> {
        if digests.len() != refs.len() {
            return Err(err(
                ErrorCode::BadRequest,
                format!("the snapshot names {} reference lists but {} digests; give one digest per list", refs.len(), digests.len()),
            ));
        }
        let mut missing = 0usize;
        let mut example = None;
        for (r, digest) in refs.iter().zip(digests) {
            let ids = self.get_reference_list(tenant, *r, digest).await.map_err(|e| {
                let code = if e.code == ErrorCode::Corrupt { ErrorCode::BadRequest } else { e.code };
                err(code, e.message)
            })?;
            // Four dedup queries in flight at a time.
            for group in ids.chunks(HAS_BATCH * 4) {
                let batches: Vec<&[ChunkId]> = group.chunks(HAS_BATCH).collect();
                // Condemned shards count here: they are stored, and a committed snapshot keeps them (RFC 0001).
                let answers = join_all(batches.iter().map(|b| self.has_counting(tenant, b, true))).await;
                for (answer, batch) in answers.into_iter().zip(batches) {
                    for (present, id) in answer?.into_iter().zip(batch) {
                        if !present {
                            missing += 1;
                            example.get_or_insert(*id);
                        }
                    }
                }
            }
        }
        match example {
            None => Ok(()),
            Some(id) => Err(err(
                ErrorCode::BadRequest,
                format!(
                    "the snapshot references {missing} chunks the cluster does not hold (for example {id}); upload them and commit again"
                ),
            )),
        }
    }

    /// Deletes every shard of a blob; fails if some holder could not be reached (retry to finish).
    pub async fn delete(&self, tenant: TenantId, id: ChunkId) -> Result<bool, WireError> {
        let map = self.meta.map();
        let loc = self.locate(&map, &id)?;
        let deletes = loc.read.iter().flat_map(|set| {
            set.nodes.iter().enumerate().map(move |(i, node)| {
                let key = ShardKey { partition: loc.partition, tenant, chunk: id, index: i as ShardIndex };
                self.peers.delete(node, key)
            })
        });
        let results = join_all(deletes).await;
        let failures: Vec<String> = results.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect();
        if !failures.is_empty() {
            return Err(err(ErrorCode::Unavailable, format!("blob {id}: some shards were not deleted ({}); retry", failures.join("; "))));
        }
        Ok(results.into_iter().any(|r| r == Ok(true)))
    }
}

/// A shard on its way to its holder, and which blob and slot its outcome belongs to.
struct ShardWrite {
    blob: usize,
    index: usize,
    shard: OutgoingShard,
}

/// The shard outcomes of one blob of a batch.
struct BlobOutcome {
    profile: EcProfile,
    id: ChunkId,
    blob_len: u64,
    shards: Vec<Result<(), ShardFailure>>,
}

/// What one holder is asked during a dedup query.
#[derive(Default)]
struct HolderQuery {
    /// Chunks to check, with their partitions.
    chunks: Vec<(PartitionId, ChunkId)>,
    /// For each chunk: where its answer counts.
    slots: Vec<ShardSlot>,
}

/// Where one holder's answer about one chunk counts.
struct ShardSlot {
    /// Position of the id in the query.
    pos: usize,
    /// Which read set of the chunk's location.
    set: usize,
    /// The shard index this holder should have.
    index: ShardIndex,
}

enum ReadOutcome {
    Blob(FetchedBlob),
    Absent,
    Unreadable(String),
}
