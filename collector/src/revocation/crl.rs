//! `pki crl`: the revocations as a standard X.509 CRL (RFC 5280) signed by
//! the collector's CA, for other tools that check agents' certificates
//! themselves (a VPN gateway, a proxy taking client certificates). The
//! collector itself does not need it: it reads the store.

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use crate::pki::{Ca, PkiError};
use crate::store::revocations::RevocationRow;

/// The CRL (PEM) listing `rows`, valid from `now` for `validity`: a tool
/// that reads it must fetch a new one before then. Its number is `now` in
/// seconds, so a later CRL always has a larger one.
pub fn build(
    ca: &Ca,
    rows: &[RevocationRow],
    now: OffsetDateTime,
    validity: time::Duration,
) -> Result<String, PkiError> {
    let revoked_certs = rows
        .iter()
        .map(|r| {
            let serial = unhex(&r.serial).ok_or_else(|| {
                PkiError::Pem(format!("revocation of a malformed serial {:?}", r.serial))
            })?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_ms / 1000)
                    .unwrap_or(now),
                // Enrollment with a `--replace` token revokes what it replaces.
                reason_code: (r.reason == "replaced").then_some(RevocationReason::Superseded),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + validity,
        crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(0)),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&ca.issuer()?)?.pem()?)
}

/// Writes the CRL over `path` by a rename: a tool reading the file never
/// sees half of one.
pub fn write(path: &std::path::Path, pem: &str) -> Result<(), PkiError> {
    crate::pki::write_file_atomically(path, pem.as_bytes(), 0o644)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_proto::identity::HostIdentity;
    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
    use std::sync::Arc;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn serial(cert: &CertificateDer<'_>) -> String {
        let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
        crate::pki::serial_hex(c.raw_serial())
    }

    #[test]
    fn webpki_refuses_what_the_crl_lists_and_accepts_the_rest() {
        let ca = Ca::generate("test CA", 1).unwrap();
        let revoked = der(&ca
            .issue_agent(&HostIdentity::new("pc-1", "site-1").unwrap(), 1)
            .unwrap()
            .cert_pem);
        let kept = der(&ca
            .issue_agent(&HostIdentity::new("pc-2", "site-1").unwrap(), 1)
            .unwrap()
            .cert_pem);
        let now = OffsetDateTime::now_utc();
        let rows = [RevocationRow {
            serial: serial(&revoked),
            host_id: Some("pc-1".into()),
            revoked_ms: now.unix_timestamp() * 1000,
            reason: "stolen".into(),
            not_after_ms: None,
        }];
        let pem = build(&ca, &rows, now, time::Duration::days(7)).unwrap();
        assert!(pem.starts_with("-----BEGIN X509 CRL-----"), "{pem}");

        // Another implementation reads it: webpki, as any rustls server would.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .with_crls([CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
        let at = UnixTime::now();
        assert!(matches!(
            verifier.verify_client_cert(&revoked, &[], at),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ));
        verifier.verify_client_cert(&kept, &[], at).unwrap();
    }

    #[test]
    fn a_malformed_serial_in_the_store_is_an_error_not_a_silent_gap() {
        let ca = Ca::generate("test CA", 1).unwrap();
        let rows = [RevocationRow {
            serial: "xyz".into(),
            host_id: None,
            revoked_ms: 0,
            reason: String::new(),
            not_after_ms: None,
        }];
        let now = OffsetDateTime::now_utc();
        assert!(build(&ca, &rows, now, time::Duration::days(1)).is_err());
    }
}
