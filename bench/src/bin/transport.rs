//! QUIC transport over loopback: throughput and CPU per GiB of Strata's settings against quinn's defaults.
//!
//! `cargo run --release -p strata-bench --bin transport [-- --gib 1 --rounds 3]`
//!
//! Client and server run in this one process, so the CPU figure covers both ends. Each variant moves the same
//! bytes two ways: one long stream, and Strata's request pattern (1 MiB bodies, one stream per request, 8 in
//! flight). Variants alternate within each round and the table shows medians over rounds. The last two
//! variants let both endpoints accept datagrams beyond quinn's 1472 bytes (up to its limit of 65,527).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use quinn::TransportConfig;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use strata_bench::{measure, median};

const MIB: usize = 1 << 20;

struct Variant {
    name: &'static str,
    transport: fn() -> TransportConfig,
    /// Whether both endpoints accept datagrams as large as loopback carries (quinn's default is 1472 bytes,
    /// so without this a larger MTU is never used whatever the transport says).
    large_datagrams: bool,
}

fn endpoint_config(variant: &Variant) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    if variant.large_datagrams {
        config.max_udp_payload_size(65_527).unwrap_or_else(|_| unreachable!("within quinn's bounds"));
    }
    config
}

fn quinn_default() -> TransportConfig {
    TransportConfig::default()
}

fn strata() -> TransportConfig {
    Arc::try_unwrap(strata_transport::endpoint::transport_config()).unwrap_or_else(|_| unreachable!("fresh Arc"))
}

/// Strata's settings, starting at a jumbo frame's payload and letting MTU discovery go up to `upper_bound`.
fn strata_large_packets(upper_bound: u16) -> TransportConfig {
    let mut t = strata();
    t.initial_mtu(8952);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(upper_bound);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Loopback's MTU is 65536: start big and let discovery go as far as the path allows.
fn strata_jumbo() -> TransportConfig {
    strata_large_packets(65_000)
}

/// A jumbo-frame Ethernet LAN's packets (9000-byte MTU) on loopback.
fn strata_9000() -> TransportConfig {
    strata_large_packets(8952)
}

fn tls() -> anyhow::Result<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let leaf =
        CertificateParams::new(vec![strata_transport::tls::SERVER_NAME.to_owned()])?.signed_by(&leaf_key, &Issuer::new(ca, ca_key))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((ca_cert.pem(), vec![leaf.der().clone()], key))
}

async fn server(variant: &Variant) -> anyhow::Result<(quinn::Endpoint, SocketAddr, String)> {
    let (ca_pem, chain, key) = tls()?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(strata_transport::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    crypto.alpn_protocols = vec![strata_transport::tls::ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(crypto)?));
    config.transport_config(Arc::new((variant.transport)()));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let endpoint = quinn::Endpoint::new(endpoint_config(variant), Some(config), socket, Arc::new(quinn::TokioRuntime))?;
    let addr = endpoint.local_addr()?;
    let accept = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        // Read everything, answer with 8 bytes: like a put whose reply is small.
                        let mut total = 0u64;
                        while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                            total += chunk.bytes.len() as u64;
                        }
                        let _ = send.write_all(&total.to_le_bytes()).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    Ok((endpoint, addr, ca_pem))
}

async fn client(variant: &Variant, addr: SocketAddr, ca_pem: &str) -> anyhow::Result<quinn::Connection> {
    let mut config = strata_transport::tls::client_config(ca_pem, None)?;
    config.transport_config(Arc::new((variant.transport)()));
    let socket = std::net::UdpSocket::bind(if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })?;
    let endpoint = quinn::Endpoint::new(endpoint_config(variant), None, socket, Arc::new(quinn::TokioRuntime))?;
    Ok(endpoint.connect_with(config, addr, strata_transport::tls::SERVER_NAME)?.await?)
}

async fn one_stream(conn: &quinn::Connection, bytes: usize) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let chunk = Bytes::from(vec![0x5a; MIB]);
    for _ in 0..bytes / MIB {
        send.write_chunk(chunk.clone()).await?;
    }
    send.finish()?;
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await?;
    anyhow::ensure!(u64::from_le_bytes(ack) == bytes as u64, "server saw a different byte count");
    Ok(())
}

async fn requests(conn: &quinn::Connection, bytes: usize) -> anyhow::Result<()> {
    let body = Bytes::from(vec![0xa5; MIB]);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..bytes / MIB)
        .map(|_| {
            let body = body.clone();
            async move {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_chunk(body).await?;
                send.finish()?;
                let mut ack = [0u8; 8];
                recv.read_exact(&mut ack).await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

fn arg(name: &str, default: f64) -> f64 {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gib = arg("--gib", 1.0);
    let rounds = arg("--rounds", 3.0) as usize;
    let bytes = ((gib * 1024.0) as usize).max(1) * MIB;
    let variants = [
        Variant { name: "quinn defaults", transport: quinn_default, large_datagrams: false },
        Variant { name: "strata", transport: strata, large_datagrams: false },
        Variant { name: "strata + jumbo MTU", transport: strata_jumbo, large_datagrams: false },
        Variant { name: "+ large datagrams", transport: strata_jumbo, large_datagrams: true },
        Variant { name: "9000-byte packets", transport: strata_9000, large_datagrams: true },
    ];
    // results[variant][pattern] = (MB/s samples, CPU s per GiB samples)
    let mut results = vec![[(Vec::new(), Vec::new()), (Vec::new(), Vec::new())]; variants.len()];
    for round in 0..rounds {
        for (v, variant) in variants.iter().enumerate() {
            let (server_ep, addr, ca) = server(variant).await?;
            let conn = client(variant, addr, &ca).await?;
            for (p, pattern) in ["one stream", "1 MiB requests x8"].iter().enumerate() {
                let s = if p == 0 { measure(one_stream(&conn, bytes)).await? } else { measure(requests(&conn, bytes)).await? };
                let mbps = bytes as f64 / s.wall.as_secs_f64() / 1e6;
                let cpu_per_gib = s.cpu.as_secs_f64() / (bytes as f64 / (1u64 << 30) as f64);
                eprintln!("round {round}: {:<20} {pattern:<18} {mbps:>7.0} MB/s {cpu_per_gib:>5.2} CPU-s/GiB", variant.name);
                results[v][p].0.push(mbps);
                results[v][p].1.push(cpu_per_gib);
            }
            conn.close(0u32.into(), b"done");
            server_ep.close(0u32.into(), b"done");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("\nQUIC over loopback, {gib} GiB per measurement, medians of {rounds} rounds (CPU covers both ends)");
    println!("{:<20} {:>16} {:>14} {:>18} {:>14}", "variant", "1 stream MB/s", "CPU-s/GiB", "requests MB/s", "CPU-s/GiB");
    for (v, variant) in variants.iter().enumerate() {
        let [(a_mb, a_cpu), (b_mb, b_cpu)] = results[v].clone();
        println!("{:<20} {:>16.0} {:>14.2} {:>18.0} {:>14.2}", variant.name, median(a_mb), median(a_cpu), median(b_mb), median(b_cpu));
    }
    Ok(())
}
