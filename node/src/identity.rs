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
use strata_client::RpcPool;
use strata_client::tls::{ALPN, certs_from_pem, key_from_pem, provider};

use crate::config::Limits;
use crate::trust::{PeerClientVerifier, PeerServerVerifier, Revocations};

/// A node's certificate and key (PEM), with the cluster CA they chain to.
#[derive(Clone)]
pub struct Identity {
    /// Cluster CA certificate.
    pub ca_pem: String,
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

    /// Our chain: the certificate and the CA (so joining nodes can pin the CA by its fingerprint).
    fn chain(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let mut chain = certs_from_pem(&self.cert_pem, "tls.node_cert")?;
        chain.extend(self.ca()?);
        Ok(chain)
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
        cfg.transport_config(strata_client::transport::server_transport_config(
            limits.client_receive_window_bytes,
            limits.client_streams_per_connection,
        ));
        Ok(cfg)
    }

    /// The QUIC client configuration for calling peers: presents our certificate, checks theirs.
    pub fn client_config(&self, revocations: &Arc<Revocations>) -> anyhow::Result<quinn::ClientConfig> {
        let verifier = PeerServerVerifier::new(&self.ca()?, revocations.clone())?;
        Ok(strata_client::tls::client_config_verified(verifier, Some((self.chain()?, key_from_pem(&self.key_pem, "tls.node_key")?)))?)
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

    /// Writes the certificate and key to their files, replacing them atomically (the key first, readable by
    /// the owner only; a crash between the two leaves a pair the next renewal replaces).
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
        replace_file(key_path, self.key_pem.as_bytes(), true)?;
        replace_file(cert_path, self.cert_pem.as_bytes(), false)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, synced.
pub fn replace_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
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
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
