//! The cluster's private PKI: a CA created by `strata-node init`, node certificates signed by it.
//!
//! Node certificates carry two DNS names: `strata-node` (what every client asks for) and `node-<id>.strata`
//! (the node's identity, read back by peers to check who is calling, and the name a node asks for when it
//! calls a peer it knows by id). Both server and client authentication are allowed, since nodes call each
//! other. Keys are ECDSA P-256 generated with ring; joining and renewing nodes send a certificate signing
//! request, so a node's key never leaves it. Node certificates are short-lived (`DEFAULT_CERT_LIFETIME_SECS`)
//! and renewed while the node runs; the CA key is held by the Raft voters (`custody`).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateSigningRequestDer;
use strata_proto::NodeId;

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate or key could not be parsed.
    #[error("{0}")]
    Parse(String),
}

/// A CA certificate and its key (PEM).
pub struct CaMaterial {
    /// Certificate.
    pub cert_pem: String,
    /// Private key. Keep it on as few nodes as possible.
    pub key_pem: String,
}

/// A node certificate and its key (PEM).
pub struct NodeIdentity {
    /// Certificate.
    pub cert_pem: String,
    /// Private key.
    pub key_pem: String,
}

/// Lifetime of node certificates unless configured otherwise (`tls.cert_lifetime_secs`).
pub const DEFAULT_CERT_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// Valid from a day ago (clocks differ) for `secs`.
fn validity(params: &mut CertificateParams, secs: u64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2));
}

/// Creates a new cluster CA.
pub fn generate_ca(cluster_name: &str) -> Result<CaMaterial, PkiError> {
    generate_ca_named(&format!("Strata cluster CA ({cluster_name})"))
}

/// Creates a CA to replace `current` (a rotation) and the new CA's certificate signed by `current`'s key
/// (same name and key): sent by nodes during the rotation, it lets a client that trusts only the old CA
/// verify certificates the new one issues. The new CA's name carries the time, so it never shares a name
/// with the CA it replaces and certificate paths cannot mix them up.
pub fn generate_successor_ca(current: &CaMaterial, cluster_name: &str, now_ms: u64) -> Result<(CaMaterial, String), PkiError> {
    let key = KeyPair::generate()?;
    let params = ca_params(&format!("Strata cluster CA ({cluster_name}, from {now_ms})"))?;
    let cert = params.self_signed(&key)?;
    let cross = params.signed_by(&key, &issuer(current)?)?;
    Ok((CaMaterial { cert_pem: cert.pem(), key_pem: key.serialize_pem() }, cross.pem()))
}

fn generate_ca_named(common_name: &str) -> Result<CaMaterial, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(common_name)?.self_signed(&key)?;
    Ok(CaMaterial { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn ca_params(common_name: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 30 * 365 * 24 * 3600);
    Ok(params)
}

fn node_params(node: NodeId, lifetime_secs: u64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(vec![strata_transport::tls::SERVER_NAME.to_owned(), node_dns_name(node)])?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("strata {node}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, lifetime_secs);
    Ok(params)
}

fn issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, key)?)
}

/// The identity DNS name of a node.
pub fn node_dns_name(node: NodeId) -> String {
    format!("node-{}.strata", node.0)
}

/// Issues a certificate valid for `lifetime_secs` and a fresh key for `node` (used by `init` and `dev`, which
/// hold the CA).
pub fn issue_node_identity(ca: &CaMaterial, node: NodeId, lifetime_secs: u64) -> Result<NodeIdentity, PkiError> {
    let key = KeyPair::generate()?;
    let cert = node_params(node, lifetime_secs)?.signed_by(&key, &issuer(ca)?)?;
    Ok(NodeIdentity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A key pair and a signing request for it (the joining node's side).
pub fn new_csr() -> Result<(KeyPair, Vec<u8>), PkiError> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// Checks that `csr_der` is a well-formed, correctly self-signed certificate signing request.
pub fn check_csr(csr_der: &[u8]) -> Result<(), PkiError> {
    CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
        .map(|_| ())
        .map_err(|e| PkiError::Parse(format!("invalid certificate signing request: {e}")))
}

/// Signs a joining or renewing node's request for `lifetime_secs`; the names in the certificate are ours,
/// whatever the request asked for.
pub fn sign_csr(ca: &CaMaterial, csr_der: &[u8], node: NodeId, lifetime_secs: u64) -> Result<String, PkiError> {
    let mut csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
        .map_err(|e| PkiError::Parse(format!("invalid certificate signing request: {e}")))?;
    csr.params = node_params(node, lifetime_secs)?;
    Ok(csr.signed_by(&issuer(ca)?)?.pem())
}

/// The certificates in a PEM bundle, each as its own PEM text.
pub fn pem_blocks(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

/// Whether two PEM texts hold the same (first) certificate, whatever their formatting.
pub fn same_cert(a: &str, b: &str) -> bool {
    let first = |pem: &str| strata_transport::tls::certs_from_pem(pem, "certificate").ok().and_then(|c| c.into_iter().next());
    matches!((first(a), first(b)), (Some(x), Some(y)) if x == y)
}

/// Whether `cert_der` was issued by (names as its issuer) the CA whose certificate is `ca_pem`.
pub fn issued_by(cert_der: &[u8], ca_pem: &str) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok(cas) = strata_transport::tls::certs_from_pem(ca_pem, "CA") else { return false };
    let Some(ca_der) = cas.first() else { return false };
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(cert_der), X509Certificate::from_der(ca_der)) else { return false };
    cert.issuer().as_raw() == ca.subject().as_raw()
}

/// Whether the key of `ca` is the private key of its certificate.
pub fn key_matches_ca(ca: &CaMaterial) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok(key) = KeyPair::from_pem(&ca.key_pem) else { return false };
    let Ok(certs) = strata_transport::tls::certs_from_pem(&ca.cert_pem, "cluster CA") else { return false };
    let Some(der) = certs.first() else { return false };
    let Ok((_, cert)) = X509Certificate::from_der(der) else { return false };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

fn holder_message(node: NodeId, now_ms: u64) -> Vec<u8> {
    let mut m = b"strata 2026-12 CA key holder v1".to_vec();
    m.extend_from_slice(&node.0.to_le_bytes());
    m.extend_from_slice(&now_ms.to_le_bytes());
    m
}

/// A proof that the signer holds the CA key, for node `node` at `now_ms` (recorded with `RecordCaHolder`).
pub fn holder_proof(ca: &CaMaterial, node: NodeId, now_ms: u64) -> Result<Vec<u8>, PkiError> {
    use rcgen::SigningKey as _;
    Ok(KeyPair::from_pem(&ca.key_pem)?.sign(&holder_message(node, now_ms))?)
}

/// Whether `proof` was made with the key of the CA in `ca_pem` for `node` at `now_ms`.
pub fn verify_holder_proof(ca_pem: &str, node: NodeId, now_ms: u64, proof: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok(certs) = strata_transport::tls::certs_from_pem(ca_pem, "cluster CA") else { return false };
    let Some(der) = certs.first() else { return false };
    let Ok((_, cert)) = X509Certificate::from_der(der) else { return false };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        cert.public_key().subject_public_key.data.as_ref(),
    );
    key.verify(&holder_message(node, now_ms), proof).is_ok()
}

/// When a certificate expires, seconds since the Unix epoch.
pub fn not_after(cert_der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The fingerprint of the CA in `ca_pem` (what join tokens pin and custody records).
pub fn ca_fingerprint(ca_pem: &str) -> Result<[u8; 32], PkiError> {
    let certs = strata_transport::tls::certs_from_pem(ca_pem, "cluster CA").map_err(|e| PkiError::Parse(e.to_string()))?;
    certs.first().map(|c| strata_transport::tls::fingerprint(c)).ok_or_else(|| PkiError::Parse("no CA certificate".into()))
}

/// The node id a certificate was issued to, from its `node-<id>.strata` name.
pub fn node_id_of(cert_der: &[u8]) -> Option<NodeId> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(name) => name.strip_prefix("node-")?.strip_suffix(".strata")?.parse().ok().map(NodeId),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_and_csr_signed_certificates_name_the_node() {
        let ca = generate_ca("test").unwrap();
        let id = issue_node_identity(&ca, NodeId(7), 3600).unwrap();
        let der = strata_transport::tls::certs_from_pem(&id.cert_pem, "cert").unwrap();
        assert_eq!(node_id_of(&der[0]), Some(NodeId(7)));
        let (_key, csr) = new_csr().unwrap();
        let signed = sign_csr(&ca, &csr, NodeId(42), 600).unwrap();
        let der = strata_transport::tls::certs_from_pem(&signed, "cert").unwrap();
        assert_eq!(node_id_of(&der[0]), Some(NodeId(42)));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expiry = not_after(&der[0]).unwrap();
        assert!((now + 590..=now + 610).contains(&expiry), "valid for the 600 s asked: {}", expiry - now);
    }

    #[test]
    fn holder_proofs_bind_the_key_the_node_and_the_time() {
        let ca = generate_ca("one").unwrap();
        let proof = holder_proof(&ca, NodeId(4), 1000).unwrap();
        assert!(verify_holder_proof(&ca.cert_pem, NodeId(4), 1000, &proof));
        assert!(!verify_holder_proof(&ca.cert_pem, NodeId(5), 1000, &proof), "another node cannot reuse it");
        assert!(!verify_holder_proof(&ca.cert_pem, NodeId(4), 2000, &proof), "nor a later time");
        let other = generate_ca("two").unwrap();
        assert!(!verify_holder_proof(&ca.cert_pem, NodeId(4), 1000, &holder_proof(&other, NodeId(4), 1000).unwrap()));
        assert!(!verify_holder_proof(&ca.cert_pem, NodeId(4), 1000, b"junk"));
    }

    #[test]
    fn a_ca_key_is_recognised_as_its_own() {
        let ca = generate_ca("one").unwrap();
        assert!(key_matches_ca(&ca));
        let other = generate_ca("two").unwrap();
        assert!(!key_matches_ca(&CaMaterial { cert_pem: ca.cert_pem.clone(), key_pem: other.key_pem }));
        assert!(!key_matches_ca(&CaMaterial { cert_pem: ca.cert_pem, key_pem: "garbage".into() }));
    }

    /// Whether a client trusting `roots` accepts `leaf` presented with `intermediates`.
    fn accepted(roots: &[&str], leaf: &str, intermediates: &[&str]) -> bool {
        use rustls::client::danger::ServerCertVerifier as _;
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            for c in strata_transport::tls::certs_from_pem(r, "root").unwrap() {
                store.add(c).unwrap();
            }
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(store.into(), strata_transport::tls::provider()).build().unwrap();
        let leaf = strata_transport::tls::certs_from_pem(leaf, "leaf").unwrap().remove(0);
        let inter: Vec<_> = intermediates.iter().flat_map(|p| strata_transport::tls::certs_from_pem(p, "intermediate").unwrap()).collect();
        let name = rustls_pki_types::ServerName::try_from(strata_transport::tls::SERVER_NAME).unwrap();
        verifier.verify_server_cert(&leaf, &inter, &name, &[], rustls_pki_types::UnixTime::now()).is_ok()
    }

    #[test]
    fn a_cross_signed_successor_is_accepted_by_clients_of_either_ca() {
        let old = generate_ca("c").unwrap();
        let (new, cross) = generate_successor_ca(&old, "c", 42).unwrap();
        let leaf = issue_node_identity(&new, NodeId(3), 3600).unwrap().cert_pem;
        assert!(accepted(&[&old.cert_pem], &leaf, &[&cross]), "a client of the old CA, through the cross certificate");
        assert!(!accepted(&[&old.cert_pem], &leaf, &[]), "and not without it");
        assert!(accepted(&[&new.cert_pem], &leaf, &[&cross, &old.cert_pem, &new.cert_pem]), "a client of the new CA");
        let der = strata_transport::tls::certs_from_pem(&leaf, "leaf").unwrap().remove(0);
        assert!(issued_by(&der, &new.cert_pem) && !issued_by(&der, &old.cert_pem));
        // Once only the new CA is trusted, the old CA's certificates open nothing.
        let old_leaf = issue_node_identity(&old, NodeId(3), 3600).unwrap().cert_pem;
        assert!(!accepted(&[&new.cert_pem], &old_leaf, &[&cross]));
    }

    #[test]
    fn garbage_csr_is_an_error() {
        let ca = generate_ca("test").unwrap();
        assert!(sign_csr(&ca, b"not a csr", NodeId(1), 60).is_err());
        assert!(check_csr(b"not a csr").is_err());
        assert!(check_csr(&new_csr().unwrap().1).is_ok());
        assert_eq!(node_id_of(b"junk"), None);
    }
}
