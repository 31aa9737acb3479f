//! Handlers for the backup client's metadata requests: upload sessions, the snapshot catalog, key files.
//!
//! Listing runs in pages of at most `meta::catalog::PAGE_BYTES` (years of snapshots do not fit in one reply)
//! and each page runs a read barrier first, so a snapshot committed (or forgotten) through any node is reflected by
//! every later list. A commit is accepted only once every chunk its reference lists name is stored durably:
//! a snapshot that is visible is complete.

use bytes::Bytes;
use strata_proto::{ErrorCode, Request, Response, RoleSet, WireError};

use super::auth::{Caller, now_ms};
use crate::context::NodeContext;
use crate::meta::catalog::{PAGE_BYTES, PAGE_LIMIT};
use crate::meta::command::{MetaCommand, MetaResponse};

/// Sessions expire this long after their last renewal; clients renew every quarter of it.
pub const SESSION_LEASE_MS: u64 = 60_000;

type Reply = Result<(Response, Bytes), WireError>;

fn ok(r: Response) -> Reply {
    Ok((r, Bytes::new()))
}

/// Serves one catalog request.
pub async fn dispatch(ctx: &NodeContext, caller: Caller, request: Request) -> Reply {
    let writes =
        !matches!(request, Request::ListSnapshots | Request::ListSnapshotPage { .. } | Request::GetKeyFile | Request::CollectGarbage);
    if let (true, Caller::Tenant { tenant, .. }) = (writes, &caller)
        && !ctx.catalog_rate.try_take(*tenant)
    {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "{tenant} made {} catalog changes through this node in the last minute, the limit; retry shortly",
                ctx.config.limits.catalog_writes_per_minute_per_tenant
            ),
        ));
    }
    match request {
        Request::OpenSession => open(ctx, caller).await,
        Request::RenewSession { session } => match caller.tenant_with("renew sessions", RoleSet::can_append) {
            Ok(tenant) => write(ctx, &caller, MetaCommand::RenewSession { tenant, session, now_ms: now_ms() }).await,
            Err(e) => Err(e),
        },
        Request::AbortSession { session } => match caller.tenant_with("close sessions", RoleSet::can_append) {
            Ok(tenant) => write(ctx, &caller, MetaCommand::CloseSession { tenant, session }).await,
            Err(e) => Err(e),
        },
        Request::CommitSnapshot { session, snapshot } => commit(ctx, caller, session, snapshot).await,
        Request::ListSnapshots => list(ctx, caller).await,
        Request::ListSnapshotPage { after, limit } => list_page(ctx, caller, after, limit).await,
        Request::ForgetSnapshots { ids } => match caller.tenant_with("forget snapshots", RoleSet::can_delete) {
            Ok(tenant) => match ctx.meta.write_as(caller.origin(), MetaCommand::ForgetSnapshots { tenant, ids }).await {
                Ok(MetaResponse::Count(count)) => ok(Response::Forgotten { count }),
                Ok(other) => Err(WireError::new(ErrorCode::Internal, format!("unexpected result {other:?}"))),
                Err(e) => Err(e.to_wire()),
            },
            Err(e) => Err(e),
        },
        Request::GetKeyFile => get_key_file(ctx, caller).await,
        Request::CollectGarbage => match caller.tenant_with("collect garbage", RoleSet::can_delete) {
            Ok(tenant) => crate::gc::collect(ctx, tenant).await.map(|report| (Response::GarbageCollected(report), Bytes::new())),
            Err(e) => Err(e),
        },
        // The key file is what makes the data readable: only a tenant admin stores or replaces it (a device's
        // backup token must not be able to lock its tenant out), and the replaced one is kept.
        Request::PutKeyFile { text, check, proof } => {
            match caller.tenant_with("store key files (a tenant admin token is needed)", RoleSet::can_delete) {
                Ok(tenant) => write(ctx, &caller, MetaCommand::StoreKeyFile { tenant, text, check, proof, now_ms: now_ms() }).await,
                Err(e) => Err(e),
            }
        }
        other => Err(WireError::new(ErrorCode::Internal, format!("{} is not a catalog request", other.op_name()))),
    }
}

async fn write(ctx: &NodeContext, caller: &Caller, cmd: MetaCommand) -> Reply {
    ctx.meta.write_as(caller.origin(), cmd).await.map_err(|e| e.to_wire())?;
    ok(Response::Ok)
}

async fn open(ctx: &NodeContext, caller: Caller) -> Reply {
    let tenant = caller.tenant_with("open upload sessions", RoleSet::can_append)?;
    // A random id: nobody can name another tenant's session, or guess the next one.
    let session = strata_proto::SessionId(rand::random());
    match ctx
        .meta
        .write_as(caller.origin(), MetaCommand::OpenSession { tenant, session, now_ms: now_ms(), lease_ms: SESSION_LEASE_MS })
        .await
        .map_err(|e| e.to_wire())?
    {
        MetaResponse::Session(session) => ok(Response::SessionOpened { session, lease_ms: SESSION_LEASE_MS }),
        other => Err(WireError::new(ErrorCode::Internal, format!("unexpected result {other:?}"))),
    }
}

async fn commit(ctx: &NodeContext, caller: Caller, session: strata_proto::SessionId, snapshot: strata_proto::SnapshotRecord) -> Reply {
    let tenant = caller.tenant_with("commit snapshots", RoleSet::can_append)?;
    ctx.coordinator.verify_complete(tenant, &snapshot.refs, &snapshot.ref_digests).await?;
    write(ctx, &caller, MetaCommand::CommitSnapshot { tenant, session, record: snapshot, now_ms: now_ms() }).await
}

/// The whole catalog in one reply, for clients that do not list in pages; refused with a clear error once
/// it no longer fits in a response frame (instead of a frame the client cannot read).
async fn list(ctx: &NodeContext, caller: Caller) -> Reply {
    let tenant = caller.tenant_with("list snapshots", RoleSet::can_read)?;
    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    let (snapshots, next) = ctx.meta.reader.read(|s| s.snapshot_page(tenant, None, PAGE_LIMIT, PAGE_BYTES * 3));
    if next.is_some() {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            "this tenant's snapshot catalog no longer fits in one reply; upgrade the client, which lists it in pages",
        ));
    }
    ok(Response::Snapshots(snapshots))
}

/// One page of the catalog (`MetaState::snapshot_page`), after a read barrier like the whole list.
async fn list_page(ctx: &NodeContext, caller: Caller, after: Option<strata_proto::SnapshotId>, limit: u32) -> Reply {
    let tenant = caller.tenant_with("list snapshots", RoleSet::can_read)?;
    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    let (snapshots, next) = ctx.meta.reader.read(|s| s.snapshot_page(tenant, after, limit, PAGE_BYTES));
    ok(Response::SnapshotPage { snapshots, next })
}

async fn get_key_file(ctx: &NodeContext, caller: Caller) -> Reply {
    let tenant = caller.tenant_with("read key files", |r| r.can_read() || r.can_append())?;
    ctx.meta.read_barrier().await.map_err(|e| e.to_wire())?;
    ok(Response::KeyFile(ctx.meta.reader.read(|s| s.key_files.get(&tenant).map(|k| k.text.clone()))))
}
