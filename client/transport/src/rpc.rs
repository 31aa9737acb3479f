//! Request/response over QUIC with a connection pool: one bidirectional stream per request.
//!
//! Connections are cached per address and reused. A cached connection can be dead without us knowing (the
//! peer restarted); when a request on a reused connection fails at the connection level, the pool reconnects
//! and tries once more, so callers see a peer restart only as a little latency. Every call has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::frame::FrameKind;
use strata_proto::{ErrorCode, Request, RequestEnvelope, Response, ResponseEnvelope, Secret, WireError};

use crate::tls::SERVER_NAME;
use crate::wire::{self, WireIoError};

/// Limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct RpcLimits {
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// Deadline for a whole request, connection included.
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_frame_bytes: u32,
    /// Largest response body accepted.
    pub max_body_bytes: u64,
}

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: strata_proto::MAX_FRAME_BYTES_DEFAULT,
            max_body_bytes: 64 << 20,
        }
    }
}

/// A successful reply.
#[derive(Debug)]
pub struct Reply {
    /// The response message.
    pub response: Response,
    /// The raw body that followed it.
    pub body: Vec<u8>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The address could not be resolved or parsed.
    #[error("cannot resolve node address {addr:?}: {reason}")]
    Resolve {
        /// Address as configured.
        addr: String,
        /// Resolver's explanation.
        reason: String,
    },
    /// No connection could be established (peer down, or TLS refused).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The deadline passed.
    #[error("{op} request to {addr} timed out after {ms} ms")]
    Timeout {
        /// Peer.
        addr: String,
        /// Request name.
        op: &'static str,
        /// Deadline.
        ms: u128,
    },
    /// The connection or stream failed mid-request, or the peer sent bytes that are not a valid reply.
    #[error("{op} request to {addr} failed: {reason}")]
    Transport {
        /// Peer.
        addr: String,
        /// Request name.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// The peer answered with an error.
    #[error("{addr}: {error}")]
    Remote {
        /// Peer.
        addr: String,
        /// Its answer.
        error: WireError,
    },
}

impl RpcError {
    /// The remote error code, if the peer answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RpcError::Remote { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Whether the peer could not be reached at all (try another node).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RpcError::Resolve { .. } | RpcError::Connect { .. } | RpcError::Timeout { .. } | RpcError::Transport { .. })
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.is_unreachable() || self.code().is_some_and(ErrorCode::is_retryable)
    }
}

/// Failure inside one exchange, before it is attributed to an address.
enum ExchangeError {
    /// The connection is unusable (the request may not have reached the peer).
    Connection(String),
    /// The stream carried something invalid.
    Protocol(String),
}

/// A pool of QUIC connections to Strata nodes.
pub struct RpcPool {
    endpoint: quinn::Endpoint,
    /// Replaced when a node renews its certificate; connections opened before keep theirs.
    config: std::sync::RwLock<quinn::ClientConfig>,
    limits: RpcLimits,
    /// Pooled connections by (address, name the peer's certificate must carry).
    conns: Mutex<HashMap<(String, String), quinn::Connection>>,
    /// Addresses whose last connection attempt failed, with when: callers fail fast for a moment instead of
    /// each waiting for its own connect timeout.
    refused: Mutex<HashMap<String, Instant>>,
}

/// How long a failed connection attempt is remembered.
const REFUSED_FOR: Duration = Duration::from_millis(1000);

impl RpcPool {
    /// A pool that connects from `endpoint` with `config`.
    pub fn new(endpoint: quinn::Endpoint, config: quinn::ClientConfig, limits: RpcLimits) -> Self {
        RpcPool {
            endpoint,
            config: std::sync::RwLock::new(config),
            limits,
            conns: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Uses `config` for connections opened from now on (a renewed certificate).
    pub fn set_config(&self, config: quinn::ClientConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The limits in force.
    pub fn limits(&self) -> RpcLimits {
        self.limits
    }

    /// Sends `request` (with `body`) to `addr` and waits for the reply.
    pub async fn call(&self, addr: &str, auth: Option<&Secret>, request: Request, body: Bytes) -> Result<Reply, RpcError> {
        self.call_within(addr, auth, request, body, self.limits.request_timeout).await
    }

    /// Like [`RpcPool::call`], to the node whose certificate must carry `server_name` (a node calling a peer it
    /// knows by id asks for `node-<id>.strata`, so it cannot reach another node by mistake or by redirection).
    pub async fn call_named(
        &self,
        addr: &str,
        server_name: &str,
        auth: Option<&Secret>,
        request: Request,
        body: Bytes,
    ) -> Result<Reply, RpcError> {
        self.call_at(addr, server_name, auth, request, body, self.limits.request_timeout).await
    }

    /// Like [`RpcPool::call`] with a deadline of the caller's choice (for long operations).
    pub async fn call_within(
        &self,
        addr: &str,
        auth: Option<&Secret>,
        request: Request,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Reply, RpcError> {
        self.call_at(addr, SERVER_NAME, auth, request, body, deadline).await
    }

    async fn call_at(
        &self,
        addr: &str,
        server_name: &str,
        auth: Option<&Secret>,
        request: Request,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Reply, RpcError> {
        let op = request.op_name();
        let env = RequestEnvelope { auth: auth.cloned(), body_len: body.len() as u64, request };
        let key = (addr.to_owned(), server_name.to_owned());
        match tokio::time::timeout(deadline, self.call_inner(&key, op, &env, body)).await {
            Ok(r) => r,
            Err(_) => {
                // The connection may be dead without knowing it yet (peer killed or frozen): start afresh.
                self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                Err(RpcError::Timeout { addr: addr.into(), op, ms: deadline.as_millis() })
            }
        }
    }

    async fn call_inner(&self, key: &(String, String), op: &'static str, env: &RequestEnvelope, body: Bytes) -> Result<Reply, RpcError> {
        let addr = key.0.as_str();
        let mut reused = true;
        loop {
            let (conn, fresh) = self.connection(key).await?;
            reused &= !fresh;
            match self.exchange(&conn, env, body.clone()).await {
                Ok(envelope_and_body) => return self.finish(addr, envelope_and_body),
                Err(ExchangeError::Connection(reason)) => {
                    self.evict(key, &conn);
                    if reused {
                        // A pooled connection may be stale because the peer restarted: reconnect once.
                        reused = false;
                        continue;
                    }
                    return Err(RpcError::Transport { addr: addr.into(), op, reason });
                }
                Err(ExchangeError::Protocol(reason)) => {
                    return Err(RpcError::Transport { addr: addr.into(), op, reason });
                }
            }
        }
    }

    fn finish(&self, addr: &str, (env, body): (ResponseEnvelope, Vec<u8>)) -> Result<Reply, RpcError> {
        match env.result {
            Ok(response) => Ok(Reply { response, body }),
            Err(error) => Err(RpcError::Remote { addr: addr.into(), error }),
        }
    }

    async fn exchange(
        &self,
        conn: &quinn::Connection,
        env: &RequestEnvelope,
        body: Bytes,
    ) -> Result<(ResponseEnvelope, Vec<u8>), ExchangeError> {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| ExchangeError::Connection(wire::describe_connection_error(&e)))?;
        let classify = |e: WireIoError| match e {
            WireIoError::Stream(s) => ExchangeError::Connection(s),
            other => ExchangeError::Protocol(other.to_string()),
        };
        wire::send(&mut send, FrameKind::Request, env, body).await.map_err(classify)?;
        let reply: ResponseEnvelope =
            wire::read_frame(&mut recv, FrameKind::Response, self.limits.max_frame_bytes).await.map_err(classify)?;
        let body = wire::read_body(&mut recv, reply.body_len, self.limits.max_body_bytes).await.map_err(classify)?;
        Ok((reply, body))
    }

    async fn connection(&self, key: &(String, String)) -> Result<(quinn::Connection, bool), RpcError> {
        let (addr, server_name) = (key.0.as_str(), key.1.as_str());
        if let Some(c) = self.conns.lock().unwrap_or_else(|e| e.into_inner()).get(key)
            && c.close_reason().is_none()
        {
            return Ok((c.clone(), false));
        }
        let connect_err = |reason: String| RpcError::Connect { addr: addr.into(), reason };
        if let Some(at) = self.refused.lock().unwrap_or_else(|e| e.into_inner()).get(addr)
            && at.elapsed() < REFUSED_FOR
        {
            return Err(connect_err(format!("a connection attempt failed {} ms ago", at.elapsed().as_millis())));
        }
        let sock = resolve(addr).await?;
        let config = self.config.read().unwrap_or_else(|e| e.into_inner()).clone();
        let connecting = self.endpoint.connect_with(config, sock, server_name).map_err(|e| connect_err(e.to_string()))?;
        let conn = match tokio::time::timeout(self.limits.connect_timeout, connecting).await {
            Ok(Ok(c)) => c,
            outcome => {
                self.refused.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.to_owned(), Instant::now());
                return Err(connect_err(match outcome {
                    Ok(Err(e)) => explain_connect_error(&e),
                    _ => format!("no answer within {} ms (node down or address wrong?)", self.limits.connect_timeout.as_millis()),
                }));
            }
        };
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).remove(addr);
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), conn.clone());
        Ok((conn, true))
    }

    fn evict(&self, key: &(String, String), conn: &quinn::Connection) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.get(key).is_some_and(|c| c.stable_id() == conn.stable_id()) {
            conns.remove(key);
        }
    }

    /// Closes the pooled connections whose peer's certificate `refused` rejects (a node removed from the
    /// cluster): the next call to that address has to pass the TLS handshake, and its verifier, again.
    pub fn close_refused(&self, refused: impl Fn(&rustls_pki_types::CertificateDer<'static>) -> bool) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, c| {
            let certs = c.peer_identity().and_then(|id| id.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>().ok());
            let keep = !certs.is_some_and(|certs| certs.first().is_some_and(&refused));
            if !keep {
                c.close(0u32.into(), b"peer certificate revoked");
            }
            keep
        });
    }

    /// Drops every pooled connection (used at shutdown).
    pub fn close_all(&self) {
        for (_, c) in self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            c.close(0u32.into(), b"closing");
        }
    }
}

fn explain_connect_error(e: &quinn::ConnectionError) -> String {
    let text = e.to_string();
    if text.contains("certificate") || text.contains("crypto") || text.contains("handshake") {
        format!("TLS handshake failed ({text}); the node's certificate is not signed by the configured cluster CA, or ours is not accepted")
    } else {
        text
    }
}

/// Resolves `host:port` to a socket address.
pub async fn resolve(addr: &str) -> Result<SocketAddr, RpcError> {
    if let Ok(sock) = addr.parse() {
        return Ok(sock);
    }
    let err = |reason: String| RpcError::Resolve { addr: addr.into(), reason };
    tokio::net::lookup_host(addr).await.map_err(|e| err(e.to_string()))?.next().ok_or_else(|| err("no addresses".into()))
}
