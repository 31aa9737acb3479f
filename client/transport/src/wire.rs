//! Frames and bodies on QUIC streams: the async edge of the sans-IO codec in `strata_proto::frame`.
//!
//! Readers enforce two limits before allocating anything: the frame payload limit and the body limit, so a
//! peer cannot make us buffer more than configured. A stream that ends early is reported as truncated.

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_proto::frame::{self, FrameError, FrameKind, HEADER_LEN};

/// Failures while moving frames or bodies over a stream.
#[derive(Debug, thiserror::Error)]
pub enum WireIoError {
    /// The bytes received are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The declared body exceeds the limit.
    #[error("body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Declared length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// The stream ended before the declared bytes arrived.
    #[error("stream ended early: expected {expected} more bytes")]
    Truncated {
        /// Bytes still expected.
        expected: u64,
    },
    /// The QUIC stream or connection failed.
    #[error("stream error: {0}")]
    Stream(String),
}

fn map_read_exact(e: quinn::ReadExactError, expected: u64) -> WireIoError {
    match e {
        quinn::ReadExactError::FinishedEarly(got) => WireIoError::Truncated { expected: expected - got as u64 },
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => WireIoError::Stream(describe_connection_error(&c)),
        quinn::ReadExactError::ReadError(e) => WireIoError::Stream(e.to_string()),
    }
}

fn map_write(e: quinn::WriteError) -> WireIoError {
    match e {
        quinn::WriteError::ConnectionLost(c) => WireIoError::Stream(describe_connection_error(&c)),
        other => WireIoError::Stream(other.to_string()),
    }
}

/// Explains a lost connection, spelling out TLS refusals (which with TLS 1.3 client certificates arrive
/// only after the client believes the handshake is done).
pub fn describe_connection_error(e: &quinn::ConnectionError) -> String {
    let text = e.to_string();
    if text.contains("crypto") || text.contains("certificate") || text.contains("handshake") {
        format!("the peer refused our TLS credentials ({text}): the certificate is not from this cluster's CA")
    } else {
        format!("connection lost: {text}")
    }
}

/// Sends one frame followed by `body`, then finishes the stream.
pub async fn send<T: Serialize>(send: &mut SendStream, kind: FrameKind, msg: &T, body: Bytes) -> Result<(), WireIoError> {
    let framed = frame::encode(kind, msg);
    if body.is_empty() {
        send.write_chunk(Bytes::from(framed)).await.map_err(map_write)?;
    } else {
        send.write_all_chunks(&mut [Bytes::from(framed), body]).await.map_err(map_write)?;
    }
    // Finishing fails only if the stream was already reset; the peer will see that as an error itself.
    let _ = send.finish();
    Ok(())
}

/// Fills `buf` from the stream; a stream that ends first is reported as truncated.
pub async fn read_exact(recv: &mut RecvStream, buf: &mut [u8]) -> Result<(), WireIoError> {
    recv.read_exact(buf).await.map_err(|e| map_read_exact(e, buf.len() as u64))
}

/// Reads one frame of `kind` with a payload of at most `max_payload` bytes.
pub async fn read_frame<T: DeserializeOwned>(recv: &mut RecvStream, kind: FrameKind, max_payload: u32) -> Result<T, WireIoError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await.map_err(|e| map_read_exact(e, HEADER_LEN as u64))?;
    let h = frame::decode_header(&header, max_payload)?;
    if h.kind != kind {
        return Err(FrameError::WrongKind { expected: kind, got: h.kind }.into());
    }
    let mut payload = vec![0u8; h.payload_len as usize];
    recv.read_exact(&mut payload).await.map_err(|e| map_read_exact(e, u64::from(h.payload_len)))?;
    Ok(frame::decode_payload(&payload)?)
}

/// Reads a body of exactly `len` bytes, refusing more than `max`.
pub async fn read_body(recv: &mut RecvStream, len: u64, max: u64) -> Result<Vec<u8>, WireIoError> {
    if len > max {
        return Err(WireIoError::BodyTooLarge { len, max });
    }
    let mut body = vec![0u8; len as usize];
    recv.read_exact(&mut body).await.map_err(|e| map_read_exact(e, len))?;
    Ok(body)
}
