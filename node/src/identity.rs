//! This node's TLS identity: its certificate and key, the QUIC server and client configurations built from
//! them, and replacing them while the node runs.
//!
//! Node certificates are short-lived (`tls.cert_lifetime_secs`) and renewed by `renewal` before they expire;
//! a renewed identity is written to the node's files first (so a restart uses it) and then installed on the
//! endpoint and the connection pool, so new connections present it while open ones carry on. Peers'
//! certificates are checked by `trust` at every handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::CertificateDer;
use strata_transport::RpcPool;
use strata_transport::tls::{ALPN, certs_from_pem, key_from_pem, provider};

use crate::config::Limits;
use crate::trust::{PeerClientVerifier, PeerServerVerifier, Revocations};

/// A node's certificate and key (PEM), with the cluster CA they chain to.
#[derive(Clone)]
pub struct Identity {
    /// The trusted CA certificates (all of them during a CA rotation).
    pub ca_pem: String,
    /// During a CA rotation: the new CA signed by the old one, sent with our chain.
    pub cross_pem: Option<String>,
    /// This node's certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(<key redacted>)")
    }
}

impl Identity {
    fn ca(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        Ok(certs_from_pem(&self.ca_pem, "tls.ca_cert")?)
    }

    /// Our chain: the certificate, during a CA rotation the new CA signed by the old one (so clients that
    /// trust only the old CA accept a certificate from the new one), and the trusted CAs (so joining nodes can
    /// pin the CA by its fingerprint).
    fn chain(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let mut chain = certs_from_pem(&self.cert_pem, "tls.node_cert")?;
        if let Some(cross) = &self.cross_pem {
            chain.extend(certs_from_pem(cross, "the cross-signed CA certificate")?);
        }
        chain.extend(self.ca()?);
        Ok(chain)
    }

    /// Whether our certificate was issued by the CA whose certificate is `ca_pem`.
    pub fn issued_by(&self, ca_pem: &str) -> bool {
        certs_from_pem(&self.cert_pem, "tls.node_cert")
            .ok()
            .and_then(|c| c.into_iter().next())
            .is_some_and(|c| crate::pki::issued_by(&c, ca_pem))
    }

    /// When this certificate stops being valid, seconds since the Unix epoch.
    pub fn not_after(&self) -> anyhow::Result<i64> {
        let der = certs_from_pem(&self.cert_pem, "tls.node_cert")?;
        let first = der.first().context("tls.node_cert holds no certificate")?;
        crate::pki::not_after(first).context("tls.node_cert cannot be parsed")
    }

    /// The QUIC server configuration: our chain, optional client certificates checked by `revocations`, and
    /// the transport limits granted to callers until they show a node certificate.
    pub fn server_config(&self, limits: &Limits, revocations: &Arc<Revocations>) -> anyhow::Result<quinn::ServerConfig> {
        let verifier = PeerClientVerifier::new(&self.ca()?, revocations.clone())?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, key_from_pem(&self.key_pem, "tls.node_key")?)
            .context("node certificate and key do not match")?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // No session resumption: a resumed session skips the certificate check, and a revoked node must meet
        // it at every handshake.
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| anyhow::anyhow!("QUIC TLS config: {e}"))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        cfg.transport_config(strata_transport::endpoint::server_transport_config(
            limits.client_receive_window_bytes,
            limits.client_streams_per_connection,
        ));
        Ok(cfg)
    }

    /// The QUIC client configuration for calling peers: presents our certificate, checks theirs.
    pub fn client_config(&self, revocations: &Arc<Revocations>) -> anyhow::Result<quinn::ClientConfig> {
        let verifier = PeerServerVerifier::new(&self.ca()?, revocations.clone())?;
        Ok(strata_transport::tls::client_config_verified(verifier, Some((self.chain()?, key_from_pem(&self.key_pem, "tls.node_key")?)))?)
    }

    /// Installs this identity on a running node: new connections to and from it present it.
    pub fn install(
        &self,
        endpoint: &quinn::Endpoint,
        pool: &RpcPool,
        limits: &Limits,
        revocations: &Arc<Revocations>,
    ) -> anyhow::Result<()> {
        let server = self.server_config(limits, revocations)?;
        let client = self.client_config(revocations)?;
        endpoint.set_server_config(Some(server));
        pool.set_config(client);
        Ok(())
    }

    /// Writes the certificate and key to their files as a pair: both are first written completely beside the
    /// old ones (`.new`), then renamed into place, key first. A crash at any point leaves either the old pair
    /// intact or a complete new pair that [`Identity::finish_pending`] puts in place at the next start.
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
        replace_file(&pending(key_path), self.key_pem.as_bytes(), true)?;
        replace_file(&pending(cert_path), self.cert_pem.as_bytes(), false)?;
        Self::finish_pending(cert_path, key_path)
    }

    /// Completes a pair [`Identity::save`] had written but not yet renamed into place (a renewal a crash
    /// interrupted), or discards a half-written one. Run before reading the files.
    pub fn finish_pending(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
        let (cert_new, key_new) = (pending(cert_path), pending(key_path));
        if cert_new.exists() {
            // The certificate is written second: both are complete.
            if key_new.exists() {
                std::fs::rename(&key_new, key_path).with_context(|| format!("cannot replace {}", key_path.display()))?;
            }
            std::fs::rename(&cert_new, cert_path).with_context(|| format!("cannot replace {}", cert_path.display()))?;
            sync_dir(cert_path);
        } else if key_new.exists() {
            std::fs::remove_file(&key_new).with_context(|| format!("cannot remove {}", key_new.display()))?;
        }
        Ok(())
    }
}

/// Where a new file waits until its pair is complete.
fn pending(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, synced.
pub fn replace_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = strata_transport::profile::temp_path(path);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    sync_dir(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_renewal_completes_or_leaves_the_old_pair() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("node.pem"), d.path().join("node.key"));
        std::fs::write(&cert, "old cert").unwrap();
        std::fs::write(&key, "old key").unwrap();
        // Crash after the new key was written, before the certificate: the old pair stays.
        replace_file(&pending(&key), b"new key", true).unwrap();
        Identity::finish_pending(&cert, &key).unwrap();
        assert_eq!(
            (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap()),
            ("old cert".into(), "old key".into())
        );
        assert!(!pending(&key).exists());
        // Crash after both were written, and even after the key was renamed: the new pair is completed.
        replace_file(&pending(&key), b"new key", true).unwrap();
        replace_file(&pending(&cert), b"new cert", false).unwrap();
        std::fs::rename(pending(&key), &key).unwrap();
        Identity::finish_pending(&cert, &key).unwrap();
        assert_eq!(
            (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap()),
            ("new cert".into(), "new key".into())
        );
        let id = Identity { ca_pem: String::new(), cross_pem: None, cert_pem: "third cert".into(), key_pem: "third key".into() };
        id.save(&cert, &key).unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "third key");
        assert!(!pending(&cert).exists() && !pending(&key).exists());
    }
}
