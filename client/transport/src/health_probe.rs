//! Reading a node's `/health` endpoint (plain HTTP on loopback or the operator network), used by
//! `strata-node dev` and the chaos harness to wait until nodes are ready.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The HTTP status and body of `GET /health` on `addr`, or why it could not be read.
pub async fn get_health(addr: &str, timeout: Duration) -> Result<(u16, String), String> {
    get_path(addr, "/health", timeout).await
}

/// The HTTP status and body of `GET path` on a node's HTTP endpoint (`/health` or `/metrics`).
pub async fn get_path(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("malformed HTTP response")?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fetch).await.unwrap_or_else(|_| Err("timed out".into()))
}
