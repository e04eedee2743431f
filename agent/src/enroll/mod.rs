//! Enrollment: the agent makes its key on this machine, proves it with a
//! CSR, and trades an enrollment token for a certificate, on a connection
//! that verifies the collector against the CA fingerprint the token
//! carries ([`pinned`]) before the token is sent.
//!
//! - [`cert_facts`]: the identity and validity of a certificate.
//! - [`files`]: writing the key, certificate and CA bundle.

pub mod cert_facts;
pub mod files;
pub mod pinned;
#[cfg(windows)]
pub mod windows_acl;

use std::sync::Arc;
use std::time::Duration;

use campanile_proto::enrollment::EnrollmentToken;
use campanile_proto::identity::{HOST_URI_PREFIX, validate_id};
use campanile_proto::v1::certificates_client::CertificatesClient;
use campanile_proto::v1::enrollment_client::EnrollmentClient;
use campanile_proto::v1::{EnrollRequest, IssuedCertificate, RenewRequest};
use rcgen::PublicKeyData;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use cert_facts::CertFacts;
pub use files::CertPaths;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("host id {0:?}: {1}")]
    HostId(String, String),
    #[error("cannot make a key and CSR: {0}")]
    Key(String),
    #[error("collector {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    /// The collector failed the pinned check: nothing was sent.
    #[error("collector {endpoint} is not trusted: {message}")]
    Untrusted { endpoint: String, message: String },
    /// The collector answered and refused: the token or the request must
    /// change, so retrying as is will not help.
    #[error("collector {endpoint} refused the enrollment ({code:?}): {message}")]
    Refused {
        endpoint: String,
        code: tonic::Code,
        message: String,
    },
    #[error("collector {endpoint} answered with {message}")]
    BadAnswer { endpoint: String, message: String },
    #[error(transparent)]
    Files(#[from] files::FilesError),
}

impl EnrollError {
    /// Worth trying again later: the collector could not be reached or
    /// could not record the enrollment now.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Refused { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::DeadlineExceeded
            ),
            _ => false,
        }
    }
}

/// Where to enroll and as what.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// `host:port` of the collector's gRPC port.
    pub authority: String,
    /// The name its certificate must be valid for.
    pub server_name: String,
    pub token: EnrollmentToken,
    /// The host id to ask for; `None`: the collector makes one from the
    /// hostname and the token's site.
    pub host_id: Option<String>,
    pub hostname: String,
    pub timeout: Duration,
}

/// Enrolls and writes the key, the certificate and the CA bundle.
pub async fn enroll(e: &Enrollment, paths: &CertPaths) -> Result<CertFacts, EnrollError> {
    if let Some(h) = &e.host_id {
        validate_id("host", h).map_err(|err| EnrollError::HostId(h.clone(), err.to_string()))?;
    }
    let endpoint = e.authority.clone();
    let connect_err = |message: String| EnrollError::Connect {
        endpoint: endpoint.clone(),
        message,
    };
    let bad_answer = |message: String| EnrollError::BadAnswer {
        endpoint: endpoint.clone(),
        message,
    };
    let (key, csr_der) = key_and_csr(e.host_id.as_deref())?;
    let verifier = Arc::new(pinned::PinnedCa::new(
        e.token.ca_sha256,
        Arc::new(rustls::crypto::ring::default_provider()),
    ));
    let channel = connect(e, verifier.clone()).map_err(|err| connect_err(err.to_string()))?;
    let answer = EnrollmentClient::new(channel)
        .enroll(EnrollRequest {
            token: e.token.credential(),
            csr_der,
            hostname: e.hostname.clone(),
        })
        .await;
    let issued = match answer {
        Ok(r) => r
            .into_inner()
            .certificate
            .ok_or_else(|| bad_answer("no certificate".into()))?,
        // The pinned check failed: the token was never sent.
        Err(_) if verifier.refused().is_some() => {
            return Err(EnrollError::Untrusted {
                endpoint: endpoint.clone(),
                message: verifier.refused().unwrap_or_default(),
            });
        }
        Err(status)
            if status.code() == tonic::Code::Unknown
                || status.code() == tonic::Code::Unavailable =>
        {
            // A transport failure (connection reset, TLS alert) comes back
            // as a status too.
            return Err(connect_err(format!(
                "{}{}",
                status.message(),
                crate::transport::source_suffix(&status)
            )));
        }
        Err(status) => {
            return Err(EnrollError::Refused {
                endpoint: endpoint.clone(),
                code: status.code(),
                message: status.message().to_owned(),
            });
        }
    };
    accept(&issued, &key, Some(&e.token.ca_sha256), paths, bad_answer)
}

/// Renews over the agent's own connection: a new key, a CSR naming
/// `identity`, the certificate checked to be for that key and identity,
/// then the three files replaced.
pub async fn renew(
    channel: tonic::transport::Channel,
    identity: &campanile_proto::identity::HostIdentity,
    paths: &CertPaths,
) -> Result<CertFacts, EnrollError> {
    let endpoint = "the collector".to_owned();
    let (key, csr_der) = key_and_csr(Some(&identity.host_id))?;
    let answer = CertificatesClient::new(channel)
        .renew(RenewRequest { csr_der })
        .await
        .map_err(|status| EnrollError::Refused {
            endpoint: endpoint.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        })?;
    let issued = answer
        .into_inner()
        .certificate
        .ok_or_else(|| EnrollError::BadAnswer {
            endpoint: endpoint.clone(),
            message: "no certificate".into(),
        })?;
    if issued.host_id != identity.host_id || issued.site != identity.site {
        return Err(EnrollError::BadAnswer {
            endpoint,
            message: format!(
                "a certificate for {} (site {}), not for this agent",
                issued.host_id, issued.site
            ),
        });
    }
    accept(&issued, &key, None, paths, |message| {
        EnrollError::BadAnswer {
            endpoint: endpoint.clone(),
            message,
        }
    })
}

/// Checks what the collector signed (for `key`, with a bundle holding the
/// pinned CA if there is one) and writes it with the key.
fn accept(
    issued: &IssuedCertificate,
    key: &rcgen::KeyPair,
    pin: Option<&[u8; 32]>,
    paths: &CertPaths,
    bad: impl Fn(String) -> EnrollError,
) -> Result<CertFacts, EnrollError> {
    let facts = CertFacts::from_pem(issued.certificate_pem.as_bytes())
        .map_err(|m| bad(format!("a certificate that does not read: {m}")))?;
    let der = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes())
        .map_err(|err| bad(format!("a certificate that does not read: {err}")))?;
    if !certifies_key(&der, key) {
        return Err(bad(
            "a certificate for another key than the one this agent made".into(),
        ));
    }
    if pin.is_some_and(|pin| !bundle_holds(&issued.ca_bundle_pem, pin)) {
        return Err(bad("a CA bundle without the CA the token names".into()));
    }
    if CertificateDer::pem_slice_iter(issued.ca_bundle_pem.as_bytes())
        .filter_map(Result::ok)
        .next()
        .is_none()
    {
        return Err(bad("no CA bundle".into()));
    }
    files::write_credentials(
        paths,
        key.serialize_pem().as_bytes(),
        issued.certificate_pem.as_bytes(),
        issued.ca_bundle_pem.as_bytes(),
    )?;
    Ok(facts)
}

/// Enrolls, trying again with backoff while the collector cannot be
/// reached or cannot record the enrollment (an unattended install may
/// start before the network or the collector); a refusal ends it. `None`
/// when `shutdown` came first.
pub async fn enroll_until_done(
    e: &Enrollment,
    paths: &CertPaths,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Option<CertFacts>, EnrollError> {
    tokio::pin!(shutdown);
    let mut backoff =
        crate::transport::Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    loop {
        match enroll(e, paths).await {
            Ok(facts) => return Ok(Some(facts)),
            Err(err) if err.is_transient() => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %err, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "enrollment failed; trying again");
                tokio::select! {
                    () = &mut shutdown => return Ok(None),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// A new P-256 key and a CSR for it, asking for `host_id` if given.
fn key_and_csr(host_id: Option<&str>) -> Result<(rcgen::KeyPair, Vec<u8>), EnrollError> {
    let key = rcgen::KeyPair::generate().map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    if let Some(h) = host_id {
        let uri = format!("{HOST_URI_PREFIX}{h}");
        params.subject_alt_names.push(rcgen::SanType::URI(
            uri.as_str()
                .try_into()
                .map_err(|e: rcgen::Error| EnrollError::Key(e.to_string()))?,
        ));
    }
    let csr = params
        .serialize_request(&key)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok((key, csr.der().to_vec()))
}

/// A channel over TLS that trusts only the pinned CA and presents no
/// certificate; it connects at the first call.
fn connect(
    e: &Enrollment,
    verifier: Arc<pinned::PinnedCa>,
) -> Result<tonic::transport::Channel, Box<dyn std::error::Error + Send + Sync>> {
    let tls = crate::dial::client_config(|b| {
        Ok(b.dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    })?;
    let channel = crate::dial::channel(
        &crate::dial::Dial {
            authority: e.authority.clone(),
            server_name: e.server_name.clone(),
            connect_timeout: e.timeout,
            request_timeout: e.timeout,
        },
        Arc::new(tls),
    )?;
    Ok(channel)
}

/// Whether `cert` is for `key`'s public key.
fn certifies_key(cert: &CertificateDer<'_>, key: &rcgen::KeyPair) -> bool {
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| {
        c.subject_public_key_info().as_ref() == key.subject_public_key_info().as_slice()
    })
}

/// Whether a PEM bundle holds the CA of SHA-256 `pin`.
fn bundle_holds(bundle: &str, pin: &[u8; 32]) -> bool {
    CertificateDer::pem_slice_iter(bundle.as_bytes())
        .filter_map(Result::ok)
        .any(|c| campanile_proto::enrollment::certificate_sha256(c.as_ref()) == *pin)
}
