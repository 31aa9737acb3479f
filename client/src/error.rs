//! The client library's error type and the CLI's exit codes.

use strata_proto::ErrorCode;

use strata_transport::profile::ProfileError;
use strata_transport::rpc::RpcError;
use strata_transport::tls::TlsError;

/// Errors from the client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The profile is missing or invalid.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A request failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// No node of the cluster could be reached.
    #[error("no node of the cluster answered (tried {tried}); last error: {last}")]
    Unreachable {
        /// Addresses tried.
        tried: String,
        /// The last failure.
        last: String,
    },
    /// The profile lacks a credential this command needs.
    #[error("the profile has no {0}; add it to the profile or pass it on the command line")]
    MissingCredential(&'static str),
    /// The cluster answered with something this client does not expect.
    #[error("unexpected reply from the cluster: {0}")]
    Unexpected(String),
    /// Local I/O failed.
    #[error("{0}")]
    Io(String),
}

/// Exit codes of the `strata` CLI, stable for scripts.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Generic failure.
    pub const FAILURE: i32 = 1;
    /// Command-line usage error (clap uses 2 as well).
    pub const USAGE: i32 = 2;
    /// The profile is missing or invalid.
    pub const PROFILE: i32 = 10;
    /// The cluster could not be reached.
    pub const UNREACHABLE: i32 = 11;
    /// Credentials were refused (unknown, expired or insufficient token).
    pub const AUTH: i32 = 12;
    /// The requested object does not exist.
    pub const NOT_FOUND: i32 = 13;
    /// The repository password is wrong.
    pub const WRONG_PASSWORD: i32 = 14;
    /// A backup completed, but some files could not be read (they are not in the snapshot) or changed while
    /// being read.
    pub const PARTIAL: i32 = 3;
}

impl ClientError {
    /// The CLI exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Profile(_) | ClientError::MissingCredential(_) | ClientError::Tls(_) => exit::PROFILE,
            ClientError::Unreachable { .. } => exit::UNREACHABLE,
            ClientError::Rpc(e) => match e.code() {
                Some(ErrorCode::Unauthenticated | ErrorCode::PermissionDenied | ErrorCode::TokenExpired) => exit::AUTH,
                Some(ErrorCode::NotFound) => exit::NOT_FOUND,
                None if e.is_unreachable() => exit::UNREACHABLE,
                _ => exit::FAILURE,
            },
            _ => exit::FAILURE,
        }
    }
}
