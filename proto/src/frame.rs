//! Length-prefixed frames with a magic, a protocol version and a size limit.
//!
//! Every request and response starts with one frame: a fixed 12-byte header followed by a postcard-encoded
//! envelope. Large bodies (blobs, shards) follow the frame as raw bytes whose length the envelope declares, so
//! they can be streamed without being buffered twice. Decoding never panics and never allocates more than the
//! caller's limit: malformed, truncated, oversize and wrong-version input each return a distinct [`FrameError`].
//!
//! Header layout (big-endian): `magic "STRA" (4) | version u16 | kind u8 | flags u8 (0) | payload length u32`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The four bytes every Strata frame starts with.
pub const MAGIC: [u8; 4] = *b"STRA";
/// The protocol version this build speaks. Version 2 gave shards a stripe identity, tenant puts create-only
/// semantics and snapshots the digests of their reference lists; a version 1 peer is refused with
/// `UnsupportedVersion`.
pub const PROTOCOL_VERSION: u16 = 2;
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 12;
/// Default limit for one frame's payload (the envelope, not the streamed body).
pub const MAX_FRAME_BYTES_DEFAULT: u32 = 4 << 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A [`crate::RequestEnvelope`].
    Request,
    /// A [`crate::ResponseEnvelope`].
    Response,
}

impl FrameKind {
    fn to_u8(self) -> u8 {
        match self {
            FrameKind::Request => 1,
            FrameKind::Response => 2,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Response),
            _ => None,
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version of the sender.
    pub version: u16,
    /// Request or response.
    pub kind: FrameKind,
    /// Length of the payload that follows the header.
    pub payload_len: u32,
}

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not `STRA`: the peer does not speak Strata.
    #[error("not a Strata frame (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// The sender speaks another protocol version.
    #[error("unsupported protocol version {got}; this build speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// Version in the header.
        got: u16,
    },
    /// The kind byte is neither request nor response.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The flags byte is not zero (reserved for future use).
    #[error("reserved frame flags {0:#04x} set")]
    ReservedFlags(u8),
    /// A frame of the wrong kind arrived (a response where a request was expected, or the reverse).
    #[error("expected a {expected:?} frame, got {got:?}")]
    WrongKind {
        /// The kind the reader wanted.
        expected: FrameKind,
        /// The kind that arrived.
        got: FrameKind,
    },
    /// The declared payload exceeds the limit.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// Configured limit.
        max: u64,
    },
    /// The input ended before the frame did.
    #[error("truncated frame: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The payload is not a valid envelope.
    #[error("malformed frame payload: {0}")]
    Malformed(String),
    /// The payload decoded but bytes were left over.
    #[error("{0} unexpected bytes after the frame payload")]
    TrailingBytes(usize),
}

/// Encodes a header.
pub fn encode_header(kind: FrameKind, payload_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    h[6] = kind.to_u8();
    h[7] = 0;
    h[8..12].copy_from_slice(&payload_len.to_be_bytes());
    h
}

/// Decodes and checks a header against `max_payload`.
pub fn decode_header(bytes: &[u8], max_payload: u32) -> Result<FrameHeader, FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Truncated { needed: HEADER_LEN, got: bytes.len() });
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version });
    }
    let kind = FrameKind::from_u8(bytes[6]).ok_or(FrameError::UnknownKind(bytes[6]))?;
    if bytes[7] != 0 {
        return Err(FrameError::ReservedFlags(bytes[7]));
    }
    let payload_len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if payload_len > max_payload {
        return Err(FrameError::TooLarge { len: u64::from(payload_len), max: u64::from(max_payload) });
    }
    Ok(FrameHeader { version, kind, payload_len })
}

/// Encodes `msg` as a complete frame (header and payload).
pub fn encode<T: Serialize>(kind: FrameKind, msg: &T) -> Vec<u8> {
    // Serialising our own message types into a Vec cannot fail: they hold no maps with non-string keys
    // or other constructs postcard rejects.
    let payload = postcard::to_stdvec(msg).expect("postcard encoding of a Strata message");
    let len = u32::try_from(payload.len()).expect("frame payload over 4 GiB");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&encode_header(kind, len));
    out.extend_from_slice(&payload);
    out
}

/// Decodes a payload (the bytes after a header) into a message; the whole payload must be consumed.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Decodes one complete frame of `expected` kind from the front of `bytes`; returns it and the bytes consumed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], expected: FrameKind, max_payload: u32) -> Result<(T, usize), FrameError> {
    let header = decode_header(bytes, max_payload)?;
    if header.kind != expected {
        return Err(FrameError::WrongKind { expected, got: header.kind });
    }
    let end = HEADER_LEN + header.payload_len as usize;
    if bytes.len() < end {
        return Err(FrameError::Truncated { needed: end, got: bytes.len() });
    }
    Ok((decode_payload(&bytes[HEADER_LEN..end])?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Request, RequestEnvelope};

    fn ping() -> Vec<u8> {
        encode(FrameKind::Request, &RequestEnvelope { auth: None, body_len: 0, request: Request::Ping })
    }

    #[test]
    fn round_trip() {
        let bytes = ping();
        let (env, used): (RequestEnvelope, _) = decode(&bytes, FrameKind::Request, 1024).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(env.request, Request::Ping);
    }

    #[test]
    fn each_bad_header_has_its_own_error() {
        let good = ping();
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(decode_header(&b, 1024), Err(FrameError::BadMagic(_))));
        let mut b = good.clone();
        b[5] = 9;
        assert_eq!(decode_header(&b, 1024), Err(FrameError::UnsupportedVersion { got: 9 }));
        let mut b = good.clone();
        b[6] = 7;
        assert_eq!(decode_header(&b, 1024), Err(FrameError::UnknownKind(7)));
        let mut b = good.clone();
        b[7] = 1;
        assert_eq!(decode_header(&b, 1024), Err(FrameError::ReservedFlags(1)));
        let mut b = good.clone();
        b[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode_header(&b, 1024), Err(FrameError::TooLarge { .. })));
        assert!(matches!(decode::<RequestEnvelope>(&good[..good.len() - 1], FrameKind::Request, 1024), Err(FrameError::Truncated { .. })));
        assert!(matches!(decode::<RequestEnvelope>(&good, FrameKind::Response, 1024), Err(FrameError::WrongKind { .. })));
        assert!(matches!(decode_header(&good[..5], 1024), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn trailing_and_malformed_payloads_are_rejected() {
        let mut b = ping();
        b.push(0);
        let len = (b.len() - HEADER_LEN) as u32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(decode::<RequestEnvelope>(&b, FrameKind::Request, 1024), Err(FrameError::TrailingBytes(1))));
        let mut b = encode_header(FrameKind::Request, 3).to_vec();
        b.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(decode::<RequestEnvelope>(&b, FrameKind::Request, 1024), Err(FrameError::Malformed(_))));
    }
}
