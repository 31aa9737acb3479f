//! Which certificates this node accepts from its peers, decided at every TLS handshake.
//!
//! A certificate must chain to the cluster CA (rustls' WebPKI verifier does that, expiry included), and the
//! node it names must not have been removed from the cluster: removing (revoking) a node makes every node
//! refuse its certificate at the next handshake, within the time it takes the removal to replicate, and its
//! open connections are closed then too (`server`). The set of removed nodes follows the applied cluster map.
//! The same policy guards connections this node accepts (client certificates, optional: callers without one
//! are clients) and connections it opens to peers (server certificates).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use strata_proto::{ClusterMap, NodeId, NodeState};

use crate::pki;

/// The node ids whose certificates are refused.
#[derive(Debug, Default)]
pub struct Revocations {
    removed: RwLock<BTreeSet<NodeId>>,
}

impl Revocations {
    /// Follows `map`: every node it marks Removed is refused from now on.
    pub fn update(&self, map: &ClusterMap) {
        let removed: BTreeSet<NodeId> = map.nodes.values().filter(|n| n.state == NodeState::Removed).map(|n| n.id).collect();
        *self.removed.write().unwrap_or_else(|e| e.into_inner()) = removed;
    }

    /// Whether `node` was removed.
    pub fn is_removed(&self, node: NodeId) -> bool {
        self.removed.read().unwrap_or_else(|e| e.into_inner()).contains(&node)
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match pki::node_id_of(cert) {
            Some(node) if self.is_removed(node) => {
                Err(rustls::Error::General(format!("{node} was removed from the cluster; its certificate is revoked")))
            }
            _ => Ok(()),
        }
    }
}

/// Verifies the certificates of callers: optional (clients have none), chained to the cluster CA, not revoked.
#[derive(Debug)]
pub struct PeerClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Arc<Revocations>,
}

/// Verifies the certificates of the peers this node calls: chained to the cluster CA, not revoked.
#[derive(Debug)]
pub struct PeerServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    revocations: Arc<Revocations>,
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, rustls::Error> {
    let mut store = RootCertStore::empty();
    for c in ca {
        store.add(c.clone()).map_err(|e| rustls::Error::General(format!("cluster CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

impl PeerClientVerifier {
    /// Trusting `ca`, refusing what `revocations` names.
    pub fn new(ca: &[CertificateDer<'static>], revocations: Arc<Revocations>) -> Result<Arc<Self>, rustls::Error> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots(ca)?, strata_transport::tls::provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Arc::new(PeerClientVerifier { inner, revocations }))
    }
}

impl PeerServerVerifier {
    /// Trusting `ca`, refusing what `revocations` names.
    pub fn new(ca: &[CertificateDer<'static>], revocations: Arc<Revocations>) -> Result<Arc<Self>, rustls::Error> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots(ca)?, strata_transport::tls::provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Arc::new(PeerServerVerifier { inner, revocations }))
    }
}

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.revocations.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.revocations.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::GenerationId;
    use strata_proto::cluster_map::NodeDescriptor;

    #[test]
    fn removed_nodes_are_refused_and_others_accepted() {
        let ca = pki::generate_ca("t").unwrap();
        let ca_der = strata_transport::tls::certs_from_pem(&ca.cert_pem, "ca").unwrap();
        let cert = |n| {
            strata_transport::tls::certs_from_pem(&pki::issue_node_identity(&ca, NodeId(n), 3600).unwrap().cert_pem, "c").unwrap().remove(0)
        };
        let revocations = Arc::new(Revocations::default());
        let verifier = PeerClientVerifier::new(&ca_der, revocations.clone()).unwrap();
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(&cert(3), &[], now).is_ok());
        let mut map = ClusterMap::new(0).unwrap();
        let node = |id, state| NodeDescriptor {
            id: NodeId(id),
            addr: "a:1".into(),
            zone: "z".into(),
            capacity_bytes: 1,
            generation: GenerationId(1),
            state,
        };
        map.nodes.insert(NodeId(3), node(3, NodeState::Removed));
        map.nodes.insert(NodeId(4), node(4, NodeState::Down));
        revocations.update(&map);
        let refused = verifier.verify_client_cert(&cert(3), &[], now).unwrap_err();
        assert!(refused.to_string().contains("node-3 was removed"), "{refused}");
        assert!(verifier.verify_client_cert(&cert(4), &[], now).is_ok(), "a Down node may come back");
        let servers = PeerServerVerifier::new(&ca_der, revocations).unwrap();
        let name = ServerName::try_from("strata-node").unwrap();
        assert!(servers.verify_server_cert(&cert(3), &[], &name, &[], now).is_err());
        assert!(servers.verify_server_cert(&cert(4), &[], &name, &[], now).is_ok());
        // Another cluster's certificate fails the chain check, as before.
        let other = pki::generate_ca("other").unwrap();
        let stranger =
            strata_transport::tls::certs_from_pem(&pki::issue_node_identity(&other, NodeId(4), 3600).unwrap().cert_pem, "c").unwrap();
        assert!(verifier.verify_client_cert(&stranger[0], &[], now).is_err());
    }
}
