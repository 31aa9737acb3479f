//! The QUIC server: accepts connections, identifies node peers by certificate, and serves one request per
//! bidirectional stream.
//!
//! Before any handler runs, the stream's frame is decoded with the configured size limit, the declared body is
//! checked against the limit for its request type and admitted against the node's memory budget, and the caller
//! is authenticated. Bad frames get an error reply naming what was wrong; nothing malformed reaches a handler.
//! Every request ends with one response frame and a deadline bounds the whole exchange.

mod auth;
mod catalog;
mod generation;
mod handlers;
mod join;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use strata_client::wire::{self, WireIoError};
use strata_proto::frame::{FrameError, FrameKind};
use strata_proto::{ErrorCode, NodeId, Request, RequestEnvelope, Response, ResponseEnvelope, WireError};
use tokio::sync::watch;

pub use self::auth::{Caller, now_ms};
pub use self::join::{JoinToken, new_secret};
use crate::context::NodeContext;
use crate::pki;

/// Accepts connections until `shutdown` turns true.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        tokio::spawn(connection(incoming, ctx.clone()));
    }
}

async fn connection(incoming: quinn::Incoming, ctx: Arc<NodeContext>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "connection refused during handshake");
            return;
        }
    };
    let peer = peer_node(&conn);
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(stream(ctx.clone(), peer, send, recv));
    }
}

/// The node id in the peer's certificate, if it presented one (the TLS layer already verified it).
fn peer_node(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    pki::node_id_of(certs.first()?)
}

fn frame_error_code(e: &WireIoError) -> ErrorCode {
    match e {
        WireIoError::Frame(FrameError::UnsupportedVersion { .. }) => ErrorCode::UnsupportedVersion,
        WireIoError::Frame(FrameError::TooLarge { .. }) | WireIoError::BodyTooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    }
}

/// Largest body a request of this kind may carry.
fn body_limit(ctx: &NodeContext, request: &Request) -> u64 {
    let l = &ctx.config.limits;
    match request {
        Request::PutBlob { .. } | Request::PutBlobs { .. } | Request::PutShards { .. } => l.max_blob_bytes,
        Request::Raft { .. } | Request::Meta => l.max_internal_body_bytes,
        _ => 0,
    }
}

async fn stream(ctx: Arc<NodeContext>, peer: Option<NodeId>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let started = Instant::now();
    let env: RequestEnvelope = match wire::read_frame(&mut recv, FrameKind::Request, ctx.config.limits.max_frame_bytes).await {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(?peer, error = %e, "bad request frame");
            ctx.metrics.observe("invalid", &format!("{}", frame_error_code(&e)), started.elapsed().as_secs_f64());
            reply(&mut send, Err(WireError::new(frame_error_code(&e), e.to_string())), Bytes::new()).await;
            return;
        }
    };
    let op = env.request.op_name();
    // Garbage collection waits for open upload sessions by design; it gets a deadline of its own.
    let deadline = if matches!(env.request, Request::CollectGarbage) {
        Duration::from_secs(2 * 3600)
    } else {
        Duration::from_millis(ctx.config.limits.request_timeout_ms)
    };
    let outcome = match tokio::time::timeout(deadline, serve_request(&ctx, peer, env, &mut recv)).await {
        Ok(r) => r,
        Err(_) => Err(WireError::new(ErrorCode::Timeout, format!("{op} did not finish within {} ms", deadline.as_millis()))),
    };
    let result = match &outcome {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code.to_string(),
    };
    ctx.metrics.observe(op, &result, started.elapsed().as_secs_f64());
    match outcome {
        Ok((response, body)) => reply(&mut send, Ok(response), body).await,
        Err(e) => {
            if !matches!(e.code, ErrorCode::NotFound) {
                tracing::debug!(op, ?peer, error = %e, "request failed");
            }
            reply(&mut send, Err(e), Bytes::new()).await
        }
    }
}

async fn serve_request(
    ctx: &NodeContext,
    peer: Option<NodeId>,
    env: RequestEnvelope,
    recv: &mut quinn::RecvStream,
) -> Result<(Response, Bytes), WireError> {
    let limit = body_limit(ctx, &env.request);
    if env.body_len > limit {
        let _ = recv.stop(0u32.into());
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("{} body of {} bytes exceeds the limit of {limit} bytes", env.request.op_name(), env.body_len),
        ));
    }
    let caller = auth::authenticate(ctx, peer, env.auth.as_ref(), &env.request).await?;
    let permits = u32::try_from(env.body_len.div_ceil(1024)).unwrap_or(u32::MAX);
    let _budget = ctx.inflight.acquire_many(permits).await.map_err(|_| WireError::new(ErrorCode::Unavailable, "node is shutting down"))?;
    let body = wire::read_body(recv, env.body_len, limit)
        .await
        .map_err(|e| WireError::new(frame_error_code(&e), format!("reading the request body: {e}")))?;
    handlers::dispatch(ctx, caller, env.request, body).await
}

async fn reply(send: &mut quinn::SendStream, result: Result<Response, WireError>, body: Bytes) {
    let env = ResponseEnvelope { body_len: body.len() as u64, result };
    if let Err(e) = wire::send(send, FrameKind::Response, &env, body).await {
        tracing::debug!(error = %e, "could not send the response");
    }
}
