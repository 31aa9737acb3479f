//! The QUIC server: admits connections, identifies node peers by certificate, and serves one request per
//! bidirectional stream.
//!
//! Connections are admitted by `admission` (caps in total and per source address) before the handshake.
//! Before any handler runs, the stream's frame must arrive within `limits.header_timeout_ms` and its bytes
//! are taken from a budget before they are allocated; its declared body is checked against the limit for its
//! request type, the caller is authenticated, and only then is the body admitted against the budget of its
//! traffic class and read. Bad frames get an error reply naming what was wrong; nothing malformed reaches a
//! handler. Every request ends with one response frame; deadlines bound the request and the reply, and the
//! bytes of the reply stay charged to the budget until the peer has read them.

mod admission;
mod auth;
mod catalog;
mod credentials;
mod generation;
mod handlers;
mod join;
mod node_trust;
mod rate;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use strata_proto::frame::{FrameError, FrameKind, HEADER_LEN};
use strata_proto::{ErrorCode, NodeId, Request, RequestEnvelope, Response, ResponseEnvelope, WireError};
use strata_transport::wire::{self, WireIoError};
use tokio::sync::watch;

pub use self::admission::{Admission, Class, Held, Source};
pub use self::auth::{Caller, now_ms};
pub use self::join::{JoinToken, new_secret};
pub use self::node_trust::is_voter;
pub use self::rate::{KeyedRate, Rate};
use crate::context::NodeContext;
use crate::pki;

/// Frames from nodes up to this size are not charged to a budget, so a Raft heartbeat never waits for one.
const UNCHARGED_NODE_FRAME_BYTES: u32 = 16 << 10;

/// Accepts connections until `shutdown` turns true.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        let ip = incoming.remote_address().ip();
        match ctx.admission.admit(ip) {
            Ok(guard) => {
                tokio::spawn(connection(incoming, ctx.clone(), guard));
            }
            Err(refusal) => {
                ctx.metrics.admission_refused.with_label_values(&["connection"]).inc();
                tracing::debug!(%ip, %refusal, "connection refused");
                incoming.refuse();
            }
        }
    }
}

async fn connection(incoming: quinn::Incoming, ctx: Arc<NodeContext>, guard: admission::ConnectionGuard) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "connection refused during handshake");
            return;
        }
    };
    let peer = peer_node(&conn);
    // Per-address limits apply to everyone but the cluster's own nodes.
    let source = peer.is_none().then(|| guard.source().clone());
    let mut maps = ctx.meta.reader.subscribe_map();
    let mut trust = ctx.trust_changes.subscribe();
    // A member of this cluster gets the window and stream count nodes use between themselves; a certificate
    // for an id the cluster does not know (yet) keeps a client's until the node is registered.
    let mut raised = false;
    // Requests in flight on this connection, so that cutting off a removed node lets the ones it made before
    // (already authorized) answer: a metadata write a node forwarded just before the change that removed it
    // (dropping its own generation, say) must not lose its reply.
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        if !raised && peer.is_some_and(|p| maps.borrow().nodes.get(&p).is_some_and(|d| d.state != strata_proto::NodeState::Removed)) {
            conn.set_receive_window(quinn::VarInt::from_u32(strata_transport::endpoint::NODE_RECEIVE_WINDOW_BYTES));
            conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(strata_transport::endpoint::NODE_STREAMS_PER_CONNECTION));
            raised = true;
        }
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    in_flight.spawn(stream(ctx.clone(), peer, source.clone(), send, recv));
                }
                Err(_) => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            // A node removed from the cluster loses the connections it already has, not only new handshakes.
            changed = maps.changed() => {
                if changed.is_err() {
                    break;
                }
                if peer.is_some_and(|p| ctx.revocations.is_removed(p) || maps.borrow().nodes.get(&p).is_some_and(|d| d.state == strata_proto::NodeState::Removed)) {
                    tracing::info!(?peer, "closing the connection of a removed node");
                    finish_in_flight(&mut in_flight).await;
                    conn.close(0u32.into(), b"node removed from the cluster");
                    break;
                }
            }
            // After a CA rotation finished, a certificate from the old CA loses the connections it has too.
            changed = trust.changed() => {
                if changed.is_err() {
                    break;
                }
                if peer_leaf(&conn).is_some_and(|leaf| !ctx.issued_by_trusted(&leaf)) {
                    tracing::info!(?peer, "closing a connection whose certificate no trusted CA issued");
                    finish_in_flight(&mut in_flight).await;
                    conn.close(0u32.into(), b"certificate from a CA no longer trusted");
                    break;
                }
            }
        }
    }
    // Requests still running when the peer went away finish on their own, as they would have before.
    in_flight.detach_all();
    drop(guard);
}

/// How long a connection being cut off waits for the requests already in flight on it.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

/// Lets the requests in flight answer (no new one is accepted meanwhile), for at most [`IN_FLIGHT_GRACE`].
async fn finish_in_flight(in_flight: &mut tokio::task::JoinSet<()>) {
    let drained = tokio::time::timeout(IN_FLIGHT_GRACE, async { while in_flight.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        in_flight.abort_all();
    }
}

/// The node id in the peer's certificate, if it presented one (the TLS layer already verified it).
fn peer_node(conn: &quinn::Connection) -> Option<NodeId> {
    pki::node_id_of(&peer_leaf(conn)?)
}

/// The certificate the peer presented, if any.
fn peer_leaf(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let certs = conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().cloned()
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

/// Where a request's bytes are charged: its class, and the caller's address unless it is a node.
struct Charge<'a> {
    class: Class,
    source: Option<&'a Source>,
}

impl Charge<'_> {
    async fn reserve(&self, ctx: &NodeContext, bytes: u64, wait: Duration) -> Result<Held, WireError> {
        ctx.admission.reserve(self.class, self.source, bytes, wait).await
    }
}

/// Reads a request frame: the header, then (once its bytes are charged) the payload.
async fn read_request(
    ctx: &NodeContext,
    peer: Option<NodeId>,
    source: Option<&Source>,
    recv: &mut quinn::RecvStream,
    wait: Duration,
) -> Result<(RequestEnvelope, Held), (WireError, String)> {
    let fail = |e: WireIoError| (WireError::new(frame_error_code(&e), e.to_string()), e.to_string());
    let mut header = [0u8; HEADER_LEN];
    wire::read_exact(recv, &mut header).await.map_err(fail)?;
    let h = strata_proto::frame::decode_header(&header, ctx.config.limits.max_frame_bytes).map_err(|e| fail(e.into()))?;
    if h.kind != FrameKind::Request {
        return Err(fail(FrameError::WrongKind { expected: FrameKind::Request, got: h.kind }.into()));
    }
    let held = match (peer, source) {
        (Some(_), _) if h.payload_len <= UNCHARGED_NODE_FRAME_BYTES => Ok(Held::default()),
        (Some(_), _) => ctx.admission.reserve(Class::Shard, None, u64::from(h.payload_len), wait).await,
        (None, source) => ctx.admission.reserve(Class::Client, source, u64::from(h.payload_len), wait).await,
    }
    .map_err(|e| {
        ctx.metrics.admission_refused.with_label_values(&["frame"]).inc();
        let m = e.message.clone();
        (e, m)
    })?;
    let mut payload = vec![0u8; h.payload_len as usize];
    wire::read_exact(recv, &mut payload).await.map_err(fail)?;
    let env = strata_proto::frame::decode_payload(&payload).map_err(|e| fail(e.into()))?;
    Ok((env, held))
}

async fn stream(
    ctx: Arc<NodeContext>,
    peer: Option<NodeId>,
    source: Option<Arc<Source>>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let started = Instant::now();
    let limits = &ctx.config.limits;
    let reply_deadline = Duration::from_millis(limits.reply_timeout_ms);
    let _slot = match source.as_deref().map(|s| ctx.admission.request_slot(s)) {
        Some(Err(e)) => {
            ctx.metrics.admission_refused.with_label_values(&["request"]).inc();
            let _ = recv.stop(0u32.into());
            reply(&mut send, Err(e), Bytes::new(), reply_deadline).await;
            return;
        }
        Some(Ok(slot)) => Some(slot),
        None => None,
    };
    let header_deadline = Duration::from_millis(limits.header_timeout_ms);
    let frame = tokio::time::timeout(header_deadline, read_request(&ctx, peer, source.as_deref(), &mut recv, header_deadline)).await;
    let (env, frame_held) = match frame {
        Ok(Ok(f)) => f,
        Ok(Err((e, detail))) => {
            tracing::debug!(?peer, error = %detail, "bad request frame");
            ctx.metrics.observe("invalid", &format!("{}", e.code), started.elapsed().as_secs_f64());
            let _ = recv.stop(0u32.into());
            reply(&mut send, Err(e), Bytes::new(), reply_deadline).await;
            return;
        }
        Err(_) => {
            ctx.metrics.observe("invalid", "Timeout", started.elapsed().as_secs_f64());
            ctx.metrics.admission_refused.with_label_values(&["slow_frame"]).inc();
            let _ = recv.stop(0u32.into());
            let e =
                WireError::new(ErrorCode::Timeout, format!("the request frame did not arrive within {} ms", header_deadline.as_millis()));
            reply(&mut send, Err(e), Bytes::new(), reply_deadline).await;
            return;
        }
    };
    let op = env.request.op_name();
    // Garbage collection waits for open upload sessions by design; it gets a deadline of its own.
    let deadline = if matches!(env.request, Request::CollectGarbage) {
        Duration::from_secs(2 * 3600)
    } else {
        Duration::from_millis(limits.request_timeout_ms)
    };
    let charge = Charge { class: Class::of(&env.request, peer.is_some()), source: source.as_deref() };
    let outcome = match tokio::time::timeout(deadline, serve_request(&ctx, peer, &charge, env, &mut recv)).await {
        Ok(r) => r,
        Err(_) => Err(WireError::new(ErrorCode::Timeout, format!("{op} did not finish within {} ms", deadline.as_millis()))),
    };
    let result = match &outcome {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code.to_string(),
    };
    ctx.metrics.observe(op, &result, started.elapsed().as_secs_f64());
    match outcome {
        Ok((response, body, held)) => {
            // The frame's bytes may come from other budgets than the body's: both are held, separately, until
            // the reply is read.
            reply(&mut send, Ok(response), body, reply_deadline).await;
            drop((held, frame_held));
        }
        Err(e) => {
            if !matches!(e.code, ErrorCode::NotFound) {
                tracing::debug!(op, ?peer, error = %e, "request failed");
            }
            let _ = recv.stop(0u32.into());
            reply(&mut send, Err(e), Bytes::new(), reply_deadline).await
        }
    }
}

async fn serve_request(
    ctx: &NodeContext,
    peer: Option<NodeId>,
    charge: &Charge<'_>,
    env: RequestEnvelope,
    recv: &mut quinn::RecvStream,
) -> Result<(Response, Bytes, Held), WireError> {
    let limit = body_limit(ctx, &env.request);
    if env.body_len > limit {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("{} body of {} bytes exceeds the limit of {limit} bytes", env.request.op_name(), env.body_len),
        ));
    }
    let caller = auth::authenticate(ctx, peer, env.auth.as_ref(), &env.request).await?;
    let wait = Duration::from_millis(ctx.config.limits.header_timeout_ms);
    let mut held = charge.reserve(ctx, env.body_len, wait).await?;
    // A blob read's reply is reserved at its largest before it is produced, then shrunk to its size.
    let reply_reserve = if matches!(env.request, Request::GetBlob { .. }) { ctx.config.limits.max_blob_bytes } else { 0 };
    held.merge(charge.reserve(ctx, reply_reserve, wait).await?);
    let body = wire::read_body(recv, env.body_len, limit)
        .await
        .map_err(|e| WireError::new(frame_error_code(&e), format!("reading the request body: {e}")))?;
    let (response, reply_body) = handlers::dispatch(ctx, caller, env.request, body).await?;
    if reply_reserve > 0 {
        held.shrink_to(env.body_len + reply_body.len() as u64);
    } else if !reply_body.is_empty() {
        held.merge(charge.reserve(ctx, reply_body.len() as u64, Duration::from_millis(ctx.config.limits.reply_timeout_ms)).await?);
    }
    Ok((response, reply_body, held))
}

/// Sends the response and waits until the peer has it (the bytes stay charged until then), giving the peer
/// at most `deadline` to read it; a peer that does not is cut off.
async fn reply(send: &mut quinn::SendStream, result: Result<Response, WireError>, body: Bytes, deadline: Duration) {
    let env = ResponseEnvelope { body_len: body.len() as u64, result };
    let delivered = async {
        wire::send(send, FrameKind::Response, &env, body).await?;
        // Resolves once every byte is acknowledged (or the peer stopped reading).
        let _ = send.stopped().await;
        Ok::<(), WireIoError>(())
    };
    match tokio::time::timeout(deadline, delivered).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "could not send the response"),
        Err(_) => {
            tracing::debug!(ms = deadline.as_millis(), "the peer did not read its response in time; resetting the stream");
            let _ = send.reset(0u32.into());
        }
    }
}
