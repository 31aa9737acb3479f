//! Stable numeric error codes carried on the wire.
//!
//! A code, once assigned, never changes meaning: clients branch on codes, humans read the message. Unknown codes
//! from a newer peer decode to [`ErrorCode::Unknown`] instead of failing, so old clients keep working.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, as a stable number shared by every version of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request could not be decoded or violates the protocol.
    BadRequest,
    /// The peer speaks a protocol version this node does not.
    UnsupportedVersion,
    /// A frame or body is larger than the configured limit.
    TooLarge,
    /// No credentials, or credentials the cluster does not know.
    Unauthenticated,
    /// The credentials are valid but lack the role this request needs.
    PermissionDenied,
    /// The token was valid once but has expired.
    TokenExpired,
    /// The named object does not exist (for this tenant).
    NotFound,
    /// A node has no room left for the write (capacity limit or full disk).
    NoSpace,
    /// Not enough nodes are reachable to serve the request safely; retry later.
    Unavailable,
    /// This node is not the Raft leader; the message names the leader when known.
    NotLeader,
    /// Stored data failed its checksum and could not be rebuilt from other shards.
    Corrupt,
    /// A deadline passed before the request completed.
    Timeout,
    /// The caller used a cluster map older than the one the node requires.
    StaleEpoch,
    /// The cluster has not finished initialising (no map yet).
    NotReady,
    /// The request conflicts with existing state (for example, a name already taken).
    Conflict,
    /// An unexpected failure inside the node; the message has details.
    Internal,
    /// A code this build does not know, from a newer peer.
    Unknown(u16),
}

impl ErrorCode {
    /// The number sent on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::TooLarge => 3,
            ErrorCode::Unauthenticated => 4,
            ErrorCode::PermissionDenied => 5,
            ErrorCode::TokenExpired => 6,
            ErrorCode::NotFound => 7,
            ErrorCode::NoSpace => 8,
            ErrorCode::Unavailable => 9,
            ErrorCode::NotLeader => 10,
            ErrorCode::Corrupt => 11,
            ErrorCode::Timeout => 12,
            ErrorCode::StaleEpoch => 13,
            ErrorCode::NotReady => 14,
            ErrorCode::Conflict => 15,
            ErrorCode::Internal => 16,
            ErrorCode::Unknown(n) => n,
        }
    }

    /// Decodes a wire number; numbers this build does not know become [`ErrorCode::Unknown`].
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::BadRequest,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::TooLarge,
            4 => ErrorCode::Unauthenticated,
            5 => ErrorCode::PermissionDenied,
            6 => ErrorCode::TokenExpired,
            7 => ErrorCode::NotFound,
            8 => ErrorCode::NoSpace,
            9 => ErrorCode::Unavailable,
            10 => ErrorCode::NotLeader,
            11 => ErrorCode::Corrupt,
            12 => ErrorCode::Timeout,
            13 => ErrorCode::StaleEpoch,
            14 => ErrorCode::NotReady,
            15 => ErrorCode::Conflict,
            16 => ErrorCode::Internal,
            n => ErrorCode::Unknown(n),
        }
    }

    /// Whether a client may retry the same request later and expect it to succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::NotLeader | ErrorCode::Timeout | ErrorCode::StaleEpoch | ErrorCode::NotReady)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Unknown(n) => write!(f, "unknown error code {n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.to_u16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u16::deserialize(d).map(ErrorCode::from_u16)
    }
}

/// An error as it crosses the wire: a stable code and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct WireError {
    /// Stable, machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable explanation naming what was wrong.
    pub message: String,
}

impl WireError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_stable() {
        for n in 0..=64u16 {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
        // Pin a few numbers: changing them would break deployed clients.
        assert_eq!(ErrorCode::NotFound.to_u16(), 7);
        assert_eq!(ErrorCode::NoSpace.to_u16(), 8);
        assert_eq!(ErrorCode::Internal.to_u16(), 16);
    }

    #[test]
    fn unknown_code_survives_serde() {
        let e = WireError::new(ErrorCode::Unknown(999), "future");
        let bytes = postcard::to_stdvec(&e).unwrap();
        let back: WireError = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.code, ErrorCode::Unknown(999));
    }
}
