//! One function per request: check the caller's rights, call the coordinator, the store or Raft, shape the reply.

use bytes::Bytes;
use strata_proto::{ErrorCode, GcAction, Request, Response, RoleSet, WireError, WriteMode};

use super::auth::Caller;
use super::{join, status};
use crate::context::NodeContext;
use crate::custody::CustodyError;
use crate::meta::command::MetaCommand;
use crate::store::{ShardWrite, StoreError};

type Reply = Result<(Response, Bytes), WireError>;

/// Most blobs or shards in one batched request.
const MAX_BATCH: usize = 1024;

/// Splits a batched body into one range per item; the lengths must add up to the body exactly.
fn split_body(body: &[u8], lengths: impl Iterator<Item = u32>, max_item: u64) -> Result<Vec<std::ops::Range<usize>>, WireError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for len in lengths {
        if u64::from(len) > max_item {
            return Err(WireError::new(ErrorCode::TooLarge, format!("an item of {len} bytes exceeds the limit of {max_item} bytes")));
        }
        let end = at + len as usize;
        if end > body.len() {
            return Err(WireError::new(ErrorCode::BadRequest, "the item lengths add up to more than the body"));
        }
        out.push(at..end);
        at = end;
    }
    if at != body.len() {
        return Err(WireError::new(ErrorCode::BadRequest, format!("{} body bytes are not covered by the item lengths", body.len() - at)));
    }
    Ok(out)
}

/// Longest a holder waits to learn a map epoch a peer already uses.
const EPOCH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most keys one `ScanShards` returns.
const MAX_SCAN: usize = 4096;

/// Most stripes a client may ask a read to pass over.
const MAX_EXCLUDED_STRIPES: usize = 8;

/// Stores shards received from a peer through this node's custody check. A peer with a newer map than ours
/// gets an answer once we have caught up (or after `EPOCH_WAIT`, decided with what we know).
async fn put_shards(
    ctx: &NodeContext,
    epoch: strata_proto::Epoch,
    mode: WriteMode,
    items: Vec<(strata_proto::ShardPut, std::ops::Range<usize>)>,
    body: Vec<u8>,
) -> Result<Vec<Result<(), WireError>>, WireError> {
    let custody = ctx.coordinator.peers().custody().clone();
    if ctx.meta.reader.map().epoch < epoch {
        custody.wait_for_epoch(epoch, EPOCH_WAIT).await;
    }
    let results = tokio::task::spawn_blocking(move || {
        let writes: Vec<ShardWrite<'_>> = items
            .into_iter()
            .map(|(p, range)| ShardWrite { key: p.key, header: p.header, data: &body[range], replaces: p.replaces })
            .collect();
        custody.put_many(&writes, mode)
    })
    .await
    .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(results.into_iter().map(|r| r.map_err(custody_error)).collect())
}

fn custody_error(e: CustodyError) -> WireError {
    match e {
        CustodyError::Store(s) => store_error(s),
        not_holder @ CustodyError::NotHolder { .. } => WireError::new(ErrorCode::StaleEpoch, not_holder.to_string()),
    }
}

fn ok(r: Response) -> Reply {
    Ok((r, Bytes::new()))
}

fn store_error(e: StoreError) -> WireError {
    match e {
        StoreError::NoSpace(m) => WireError::new(ErrorCode::NoSpace, m),
        StoreError::Corrupt { .. } => WireError::new(ErrorCode::Corrupt, e.to_string()),
        StoreError::Conflict { .. } => WireError::new(ErrorCode::Conflict, e.to_string()),
        StoreError::ChecksumMismatch { .. } => WireError::new(ErrorCode::BadRequest, e.to_string()),
        StoreError::Io(m) => WireError::new(ErrorCode::Internal, m),
    }
}

async fn on_store<T: Send + 'static>(
    ctx: &NodeContext,
    f: impl FnOnce(&dyn crate::store::ShardStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, WireError> {
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(store_error)
}

fn meta_error(e: crate::meta::MetaError) -> WireError {
    e.to_wire()
}

/// Serves one authenticated request.
pub async fn dispatch(ctx: &NodeContext, caller: Caller, request: Request, body: Vec<u8>) -> Reply {
    match request {
        catalog @ (Request::OpenSession
        | Request::RenewSession { .. }
        | Request::AbortSession { .. }
        | Request::CommitSnapshot { .. }
        | Request::ListSnapshots
        | Request::ListSnapshotPage { .. }
        | Request::ForgetSnapshots { .. }
        | Request::GetKeyFile
        | Request::PutKeyFile { .. }
        | Request::CollectGarbage) => super::catalog::dispatch(ctx, caller, catalog).await,
        Request::Ping => {
            let usage = ctx.store.usage();
            ok(Response::Pong {
                node_id: ctx.id,
                protocol_version: strata_proto::PROTOCOL_VERSION,
                shards: usage.shards,
                bytes: usage.bytes,
                moved_bytes: ctx.metrics.moved_bytes.get(),
                scrubbed_at_ms: ctx.scrubbed_at_ms.load(std::sync::atomic::Ordering::Relaxed),
            })
        }
        Request::GetClusterMap { known_epoch } => {
            let map = ctx.meta.reader.map();
            ok(Response::ClusterMap((map.epoch > known_epoch).then(|| Box::new((*map).clone()))))
        }
        Request::HasBlobs { ids } => {
            let tenant = caller.tenant_with("query blobs", |r| r.can_read() || r.can_append())?;
            if ids.len() > ctx.config.limits.max_has_batch {
                return Err(WireError::new(
                    ErrorCode::TooLarge,
                    format!("{} ids in one query; the limit is {}", ids.len(), ctx.config.limits.max_has_batch),
                ));
            }
            ok(Response::HasBlobs { present: ctx.coordinator.has(tenant, &ids).await? })
        }
        Request::PutBlob { id } => {
            let tenant = caller.tenant_with("store blobs", RoleSet::can_append)?;
            let r = ctx.coordinator.put(tenant, id, Bytes::from(body)).await?;
            ok(Response::PutBlob { shards_stored: r.stored, shards_total: r.total })
        }
        Request::PutBlobs { blobs } => {
            let tenant = caller.tenant_with("store blobs", RoleSet::can_append)?;
            if blobs.len() > MAX_BATCH {
                return Err(WireError::new(ErrorCode::TooLarge, format!("{} blobs in one request; the limit is {MAX_BATCH}", blobs.len())));
            }
            let parts = split_body(&body, blobs.iter().map(|(_, len)| *len), ctx.config.limits.max_blob_bytes)?;
            let body = Bytes::from(body);
            let items = blobs.iter().zip(parts).map(|((id, _), range)| (*id, body.slice(range))).collect();
            let results = ctx.coordinator.put_many(tenant, items).await.into_iter().map(|r| r.map(|p| (p.stored, p.total))).collect();
            ok(Response::PutBlobs { results })
        }
        Request::GetBlob { id, exclude } => {
            let tenant = caller.tenant_with("read blobs", RoleSet::can_read)?;
            if exclude.len() > MAX_EXCLUDED_STRIPES {
                return Err(WireError::new(
                    ErrorCode::TooLarge,
                    format!("at most {MAX_EXCLUDED_STRIPES} stripes may be excluded from a read"),
                ));
            }
            let blob = ctx.coordinator.get_excluding(tenant, id, &exclude).await?;
            Ok((Response::Blob { digest: blob.digest }, Bytes::from(blob.bytes)))
        }
        Request::DeleteBlob { id } => {
            let tenant = caller.tenant_with("delete blobs", RoleSet::can_delete)?;
            ok(Response::Deleted { existed: ctx.coordinator.delete(tenant, id).await? })
        }
        Request::Status => {
            caller.operator("status")?;
            ok(Response::Status(Box::new(status::cluster_status(ctx))))
        }
        credentials @ (Request::CreateTenant { .. }
        | Request::CreateToken { .. }
        | Request::CreateJoinToken { .. }
        | Request::ListTokens { .. }
        | Request::RevokeToken { .. }
        | Request::ListAudit) => super::credentials::dispatch(ctx, caller, credentials).await,
        Request::Join { .. } => join::handle(ctx, request, caller).await,
        trust @ (Request::RenewCertificate { .. }
        | Request::FetchCaKey
        | Request::RevokeNode { .. }
        | Request::RotateCa
        | Request::FinishCaRotation { .. }
        | Request::GetTrust) => super::node_trust::dispatch(ctx, caller, trust).await,
        Request::RegisterNode { node } => {
            let from = caller.node()?;
            if from != node.id {
                return Err(WireError::new(ErrorCode::PermissionDenied, format!("{from} may not register {}", node.id)));
            }
            match ctx.meta.leader() {
                Some(l) if l == ctx.id.0 => {
                    ctx.meta.register_for(from, MetaCommand::RegisterNode(node)).await.map_err(meta_error)?;
                    ok(Response::Ok)
                }
                leader => ok(Response::RegisterWithLeader { addr: leader.and_then(|l| ctx.meta.leader_addr(l)) }),
            }
        }
        Request::PutShards { shards, epoch, mode } => {
            caller.node()?;
            if shards.len() > MAX_BATCH {
                return Err(WireError::new(
                    ErrorCode::TooLarge,
                    format!("{} shards in one request; the limit is {MAX_BATCH}", shards.len()),
                ));
            }
            let parts = split_body(&body, shards.iter().map(|p| p.len), ctx.config.limits.max_blob_bytes)?;
            let items = shards.into_iter().zip(parts).collect();
            ok(Response::PutShards { results: put_shards(ctx, epoch, mode, items, body).await? })
        }
        Request::ScanShards { partition, after, limit, min_epoch } => {
            caller.node()?;
            let custody = ctx.coordinator.peers().custody().clone();
            if !custody.wait_for_epoch(min_epoch, EPOCH_WAIT).await {
                return Err(WireError::new(ErrorCode::NotReady, format!("this node has not applied map {min_epoch} yet; retry")));
            }
            let limit = (limit as usize).clamp(1, MAX_SCAN);
            let entries = tokio::task::spawn_blocking(move || {
                custody.fence();
                custody.store().scan_partition(partition, after.as_ref(), limit)
            })
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(store_error)?;
            ok(Response::ShardKeys { entries })
        }
        Request::Generation(op) => {
            caller.operator("managing generations")?;
            ok(Response::Generation { message: super::generation::handle(ctx, caller.origin(), op).await? })
        }
        Request::GetShard { key } => {
            caller.node()?;
            match on_store(ctx, move |s| s.get(&key)).await? {
                Some(shard) => Ok((Response::Shard { header: shard.header }, Bytes::from(shard.data))),
                None => Err(WireError::new(ErrorCode::NotFound, "shard not held here")),
            }
        }
        Request::HasShards { tenant, chunks, include_condemned } => {
            caller.node()?;
            if chunks.len() > ctx.config.limits.max_has_batch * 2 {
                return Err(WireError::new(ErrorCode::TooLarge, "too many chunks in one shard query"));
            }
            let held = on_store(ctx, move |s| chunks.iter().map(|(p, c)| s.held(tenant, *p, c, include_condemned)).collect()).await?;
            ok(Response::HasShards { held })
        }
        Request::DeleteShard { key } => {
            caller.node()?;
            ok(Response::Deleted { existed: on_store(ctx, move |s| s.delete(&key)).await? })
        }
        Request::ListChunks { tenant, partitions, after, limit } => {
            caller.node()?;
            let limit = (limit as usize).clamp(1, 65_536);
            let entries = on_store(ctx, move |s| {
                let mut out = Vec::new();
                for p in partitions.into_iter().filter(|p| after.is_none_or(|(ap, _)| *p >= ap)) {
                    let from = after.filter(|(ap, _)| *ap == p).map(|(_, c)| c);
                    for c in s.list_chunks(tenant, p, from.as_ref(), limit - out.len())? {
                        out.push((p, c));
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
                Ok(out)
            })
            .await?;
            ok(Response::Chunks { entries })
        }
        Request::GcShards { tenant, action, chunks } => {
            caller.node()?;
            let (shards, bytes) = on_store(ctx, move |s| {
                let (mut shards, mut bytes) = (0, 0);
                for (p, c) in &chunks {
                    match action {
                        GcAction::Condemn => shards += s.condemn(tenant, *p, c)?,
                        GcAction::Uncondemn => shards += s.uncondemn(tenant, *p, c)?,
                        GcAction::Sweep => {
                            let (n, b) = s.delete_condemned(tenant, *p, c)?;
                            shards += n;
                            bytes += b;
                        }
                    }
                }
                Ok((shards, bytes))
            })
            .await?;
            ok(Response::GcShards { shards, bytes })
        }
        Request::Raft { rpc } => {
            let from = caller.node()?;
            Ok((Response::Raft, Bytes::from(ctx.meta.handle_raft(rpc, &body, from).await?)))
        }
        Request::Meta => {
            let from = caller.node()?;
            Ok((Response::Raft, Bytes::from(ctx.meta.handle_forward(&body, from).await?)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body_len: usize, lengths: &[u32]) -> Result<Vec<std::ops::Range<usize>>, WireError> {
        split_body(&vec![0u8; body_len], lengths.iter().copied(), 100)
    }

    #[test]
    fn a_body_splits_into_consecutive_ranges() {
        assert_eq!(split(12, &[5, 0, 7]).unwrap(), vec![0..5, 5..5, 5..12]);
        assert_eq!(split(0, &[]).unwrap(), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn lengths_that_disagree_with_the_body_are_refused() {
        let short = split(9, &[5, 5]).unwrap_err();
        assert_eq!(short.code, ErrorCode::BadRequest);
        assert!(short.message.contains("more than the body"), "{short:?}");
        let long = split(12, &[5, 5]).unwrap_err();
        assert_eq!(long.code, ErrorCode::BadRequest);
        assert!(long.message.contains("2 body bytes are not covered"), "{long:?}");
        assert_eq!(split(10, &[]).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn an_item_over_the_limit_is_refused_before_any_arithmetic() {
        let e = split(0, &[u32::MAX]).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert!(e.message.contains("4294967295 bytes"), "{e:?}");
    }
}
