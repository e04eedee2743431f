//! Verifying the collector before the agent trusts any CA: its chain must
//! hold the CA whose SHA-256 the enrollment token carries, and its
//! certificate must be valid for the collector's name under that CA.
//! Nothing is sent (no token) to a collector that fails this.

use std::fmt;
use std::sync::Arc;

use campanile_proto::enrollment::certificate_sha256;
use campanile_proto::hex;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore};

/// Trusts the one CA of the collector's chain whose SHA-256 is `pin`.
#[derive(Debug)]
pub struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Why the last verification failed: the connection error that
    /// reaches the caller is wrapped beyond recognition.
    refused: std::sync::Mutex<Option<String>>,
}

/// The collector's chain holds no CA of the token's fingerprint.
#[derive(Debug)]
pub struct PinMismatch {
    pub pin: [u8; 32],
    pub presented: Vec<[u8; 32]>,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the collector's chain holds no CA of the token's fingerprint sha256:{} (it presented {}): \
             this is not the collector the token was made for; the token was not sent",
            hex(&self.pin),
            if self.presented.is_empty() {
                "no CA".to_owned()
            } else {
                self.presented
                    .iter()
                    .map(|p| format!("sha256:{}", hex(p)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }
}

impl std::error::Error for PinMismatch {}

impl PinnedCa {
    pub fn new(pin: [u8; 32], provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin,
            provider,
            refused: std::sync::Mutex::new(None),
        }
    }

    /// Why the collector was not trusted, if it was not.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented: Vec<[u8; 32]> = intermediates
            .iter()
            .map(|c| certificate_sha256(c.as_ref()))
            .collect();
        let Some(ca) = intermediates
            .iter()
            .zip(&presented)
            .find(|(_, sha)| **sha == self.pin)
            .map(|(c, _)| c)
        else {
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    pin: self.pin,
                    presented,
                })),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| Error::General(format!("verifier for the pinned CA: {e}")))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let r = self.verify(end_entity, intermediates, server_name, ocsp_response, now);
        if let Err(e) = &r {
            let why = match e {
                Error::InvalidCertificate(CertificateError::Other(o)) => o.to_string(),
                other => format!("its certificate, under the pinned CA: {other}"),
            };
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
