//! The client verifier: webpki's chain check, then the revoked serials
//! ([`crate::revocation::Revoked`]). rustls calls it on full handshakes
//! only; a resumed session is checked after it, in the accept loop.
//!
//! Our own list rather than webpki's CRL support: a CRL must be signed by
//! the CA, whose key the collector holds only when enrollment is on, and
//! would have to be rebuilt into a new server config on every change.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::revocation::Revoked;

pub struct RevokingVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub revoked: Arc<Revoked>,
}

impl std::fmt::Debug for RevokingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevokingVerifier")
            .field("inner", &self.inner)
            .field("revoked", &self.revoked.len())
            .finish()
    }
}

/// The serial of a certificate, as the store keys it.
pub fn serial_of(cert: &CertificateDer<'_>) -> Option<String> {
    x509_parser::parse_x509_certificate(cert)
        .ok()
        .map(|(_, c)| crate::pki::serial_hex(c.raw_serial()))
}

impl ClientCertVerifier for RevokingVerifier {
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
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        // Parsed only when something is revoked: most days nothing is.
        if !self.revoked.is_empty()
            && serial_of(end_entity).is_some_and(|s| self.revoked.contains(&s))
        {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
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

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
