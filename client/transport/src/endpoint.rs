//! QUIC transport settings shared by clients and nodes.
//!
//! Flow-control windows are sized for multi-megabyte blobs on fast local links (the defaults throttle a single
//! stream well below what loopback carries); idle connections are kept alive so a pool reuses them. What a
//! node grants to callers it does not know yet is smaller: every byte of credit is memory an anonymous caller
//! can fill.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{TransportConfig, VarInt};

/// Receive window of a connection between nodes (raised from the server's smaller default once the peer has
/// shown a node certificate).
pub const NODE_RECEIVE_WINDOW_BYTES: u32 = 64 << 20;
/// Concurrent requests on a connection between nodes.
pub const NODE_STREAMS_PER_CONNECTION: u32 = 512;

fn base() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.send_window(64 << 20);
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // A peer killed without closing its connections is noticed within the idle timeout (quinn ignores ICMP
    // "port unreachable"), so keep it short and keep live connections busy with frequent keep-alives.
    t.keep_alive_interval(Some(Duration::from_secs(1)));
    t.max_idle_timeout(Some(VarInt::from_u32(5_000).into()));
    t
}

/// Transport parameters of the connections a process opens (clients, and nodes calling their peers).
pub fn transport_config() -> Arc<TransportConfig> {
    let mut t = base();
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(NODE_RECEIVE_WINDOW_BYTES));
    t.max_concurrent_bidi_streams(VarInt::from_u32(NODE_STREAMS_PER_CONNECTION));
    Arc::new(t)
}

/// Transport parameters a node offers to whoever connects to it. Flow-control credit once granted cannot be
/// taken back, so a node starts every connection with the window and stream count it grants an anonymous
/// caller (`receive_window_bytes`, `streams`) and raises them for peers that show a node certificate.
pub fn server_transport_config(receive_window_bytes: u32, streams: u32) -> Arc<TransportConfig> {
    let mut t = base();
    t.stream_receive_window(VarInt::from_u32(receive_window_bytes));
    t.receive_window(VarInt::from_u32(receive_window_bytes));
    t.max_concurrent_bidi_streams(VarInt::from_u32(streams));
    Arc::new(t)
}

/// A client-only endpoint bound to an ephemeral port of the right address family for `peer`.
pub fn client_endpoint(peer_family: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let bind: SocketAddr = if peer_family.is_ipv6() { "[::]:0".parse().expect("literal") } else { "0.0.0.0:0".parse().expect("literal") };
    quinn::Endpoint::client(bind)
}
