//! QUIC transport settings shared by clients and nodes.
//!
//! Flow-control windows are sized for multi-megabyte blobs on fast local links (the defaults throttle a single
//! stream well below what loopback carries); idle connections are kept alive so a pool reuses them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{TransportConfig, VarInt};

/// Transport parameters for every Strata QUIC connection.
pub fn transport_config() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    t.max_concurrent_bidi_streams(VarInt::from_u32(512));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // A peer killed without closing its connections is noticed within the idle timeout (quinn ignores ICMP
    // "port unreachable"), so keep it short and keep live connections busy with frequent keep-alives.
    t.keep_alive_interval(Some(Duration::from_secs(1)));
    t.max_idle_timeout(Some(VarInt::from_u32(5_000).into()));
    Arc::new(t)
}

/// A client-only endpoint bound to an ephemeral port of the right address family for `peer`.
pub fn client_endpoint(peer_family: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let bind: SocketAddr = if peer_family.is_ipv6() { "[::]:0".parse().expect("literal") } else { "0.0.0.0:0".parse().expect("literal") };
    quinn::Endpoint::client(bind)
}
