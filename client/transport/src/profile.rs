//! Client profiles: which cluster to talk to and with which credentials, as a TOML file.
//!
//! A profile names the cluster CA certificate, a few node addresses to start from and the tenant token (plus,
//! for operators, an operator token). `strata-node dev` writes one for its demo tenant. Paths in a profile are
//! relative to the profile's own directory. Profiles hold secrets and are written with mode 0600.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_proto::Secret;

/// Environment variable naming the profile file.
pub const PROFILE_ENV: &str = "STRATA_PROFILE";

/// A client profile. `Debug` never shows its tokens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Cluster CA certificate (PEM file); the only certificate authority the client trusts.
    pub ca_cert: PathBuf,
    /// Node addresses (`host:port`) to contact first; the rest are learned from the cluster map.
    pub nodes: Vec<String>,
    /// Tenant token used for backups and restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Operator token used by `strata admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<String>,
    /// Local copy of the tenant's wrapped key [default: next to the profile, with the extension `.key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Deadline for one request, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Directory the profile was loaded from (paths are relative to it).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_request_timeout_ms() -> u64 {
    60_000
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("Profile")
            .field("ca_cert", &self.ca_cert)
            .field("nodes", &self.nodes)
            .field("token", &redacted(&self.token))
            .field("operator_token", &redacted(&self.operator_token))
            .field("key_file", &self.key_file)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No profile path was given and none exists at the default location.
    #[error("no profile: pass --profile PATH or set {PROFILE_ENV} (looked for {0})")]
    Missing(String),
    /// The file cannot be read.
    #[error("cannot read profile {path}: {reason}")]
    Read {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML for a profile.
    #[error("profile {path} is invalid: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Parser's explanation, naming the field.
        reason: String,
    },
    /// A field has an unusable value.
    #[error("profile {path}: field `{field}` {reason}")]
    Field {
        /// File.
        path: String,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Profile {
    /// Default profile location: `$XDG_CONFIG_HOME/strata/profile.toml` or `~/.config/strata/profile.toml`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("strata").join("profile.toml"))
    }

    /// Finds the profile: explicit path, then `STRATA_PROFILE`, then the default location.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ProfileError> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        if let Some(p) = std::env::var_os(PROFILE_ENV) {
            return Ok(PathBuf::from(p));
        }
        match Self::default_path() {
            Some(p) if p.exists() => Ok(p),
            Some(p) => Err(ProfileError::Missing(p.display().to_string())),
            None => Err(ProfileError::Missing("$HOME/.config/strata/profile.toml".into())),
        }
    }

    /// Reads and validates a profile.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Read { path: shown.clone(), reason: e.to_string() })?;
        let mut p: Profile = toml::from_str(&text).map_err(|e| ProfileError::Parse { path: shown.clone(), reason: e.to_string() })?;
        p.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        p.validate(&shown)?;
        Ok(p)
    }

    fn validate(&self, shown: &str) -> Result<(), ProfileError> {
        let field = |field, reason: String| ProfileError::Field { path: shown.into(), field, reason };
        if self.nodes.is_empty() {
            return Err(field("nodes", "must list at least one node address".into()));
        }
        if let Some(bad) = self.nodes.iter().find(|a| a.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())) {
            return Err(field("nodes", format!("entry {bad:?} is not host:port")));
        }
        if self.request_timeout_ms == 0 {
            return Err(field("request_timeout_ms", "must be greater than 0".into()));
        }
        let ca = self.ca_cert_path();
        if !ca.is_file() {
            return Err(field("ca_cert", format!("names {}, which is not a readable file", ca.display())));
        }
        Ok(())
    }

    /// Absolute path of the CA certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.base_dir.join(&self.ca_cert)
    }

    /// The tenant token, if any.
    pub fn tenant_token(&self) -> Option<Secret> {
        self.token.clone().map(Secret)
    }

    /// The operator token, if any.
    pub fn operator_secret(&self) -> Option<Secret> {
        self.operator_token.clone().map(Secret)
    }

    /// Writes the profile with owner-only permissions.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "# Strata client profile. It holds secrets: keep it private.\n{}",
            toml::to_string_pretty(self).map_err(std::io::Error::other)?
        );
        write_private(path, text.as_bytes())
    }
}

/// Where a new version of `path` is written before it is renamed over it: named after the whole file name
/// and this process, so that files sharing a stem (`profile.toml`, `profile.key`, `profile.nodes`) and two
/// processes writing at once never share a temporary file.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes a file readable only by its owner (0600 on Unix), replacing it atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        std::fs::write(dir.join("ca.pem"), "x").unwrap();
        let p = dir.join("p.toml");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn files_sharing_a_stem_never_share_a_temporary_file() {
        let d = Path::new("/home/u/.config/strata");
        let temps: std::collections::BTreeSet<PathBuf> =
            ["profile.toml", "profile.key", "profile.nodes"].iter().map(|f| temp_path(&d.join(f))).collect();
        assert_eq!(temps.len(), 3, "{temps:?}");
        assert!(temps.iter().all(|t| t.parent() == Some(d)));
    }

    #[test]
    fn loads_relative_paths() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "ca_cert = \"ca.pem\"\nnodes = [\"127.0.0.1:7401\"]\ntoken = \"t\"\n");
        let prof = Profile::load(&p).unwrap();
        assert_eq!(prof.ca_cert_path(), d.path().join("ca.pem"));
        assert_eq!(prof.request_timeout_ms, 60_000);
    }

    #[test]
    fn debug_never_shows_tokens() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "ca_cert = \"ca.pem\"\nnodes = [\"a:1\"]\ntoken = \"stk1_secret_tenant\"\noperator_token = \"stk1_secret_op\"\n",
        );
        let shown = format!("{:?}", Profile::load(&p).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn errors_name_the_field() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("ca_cert = \"ca.pem\"\nnodes = []\n", "`nodes`"),
            ("ca_cert = \"ca.pem\"\nnodes = [\"nohost\"]\n", "`nodes`"),
            ("ca_cert = \"missing.pem\"\nnodes = [\"a:1\"]\n", "`ca_cert`"),
            ("ca_cert = \"ca.pem\"\nnodes = [\"a:1\"]\nrequest_timeout_ms = 0\n", "`request_timeout_ms`"),
            ("ca_cert = \"ca.pem\"\nnodes = [\"a:1\"]\ntokn = \"x\"\n", "tokn"),
        ];
        for (body, needle) in cases {
            let err = Profile::load(&write(d.path(), body)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn saved_profiles_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "ca_cert = \"ca.pem\"\nnodes = [\"a:1\"]\n");
        let prof = Profile::load(&p).unwrap();
        prof.save(&d.path().join("out.toml")).unwrap();
        let mode = std::fs::metadata(d.path().join("out.toml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
