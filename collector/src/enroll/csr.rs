//! What the collector accepts of an agent's CSR: a proof that the agent
//! holds a strong key, and at most the identity it asks for. The
//! certificate is built from the token and these checks alone; nothing
//! else of the CSR reaches it.

use campanile_proto::identity::{HOST_URI_PREFIX, SITE_URI_PREFIX, validate_id};
use rcgen::CertificateSigningRequestParams;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use super::refusal::Refusal;

/// Smallest RSA modulus accepted (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// A CSR that passed every check.
pub struct CheckedCsr {
    pub public_key: rcgen::PublicKey,
    /// The host id asked for, valid by the id rules.
    pub host_id: Option<String>,
    /// The site asked for (the caller compares it with the token's).
    pub site: Option<String>,
}

pub fn check(der: &[u8]) -> Result<CheckedCsr, Refusal> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Refusal::BadCsr(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Refusal::BadCsr(format!(
            "{} bytes after the request",
            rest.len()
        )));
    }
    check_key(&csr)?;
    let (mut host_id, mut site) = (None, None);
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(Refusal::CaRequested),
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    let GeneralName::URI(uri) = name else {
                        return Err(Refusal::ExtraSan(format!("{name}")));
                    };
                    if let Some(id) = uri.strip_prefix(HOST_URI_PREFIX) {
                        validate_id("host", id).map_err(|e| Refusal::BadHostId(e.to_string()))?;
                        if host_id.replace(id.to_owned()).is_some() {
                            return Err(Refusal::ExtraSan("a second host URI".into()));
                        }
                    } else if let Some(id) = uri.strip_prefix(SITE_URI_PREFIX) {
                        if site.replace(id.to_owned()).is_some() {
                            return Err(Refusal::ExtraSan("a second site URI".into()));
                        }
                    } else {
                        return Err(Refusal::ExtraSan((*uri).to_owned()));
                    }
                }
            }
            _ => {}
        }
    }
    // Verifies the signature (the agent holds the key) and takes the
    // public key. It refuses extensions beyond names and usages; a
    // BasicConstraints without CA is one of those, and refused here.
    let params = CertificateSigningRequestParams::from_der(&der.into()).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            Refusal::BadCsr("its signature does not verify".into())
        }
        other => Refusal::BadCsr(other.to_string()),
    })?;
    Ok(CheckedCsr {
        public_key: params.public_key,
        host_id,
        site,
    })
}

fn check_key(csr: &X509CertificationRequest<'_>) -> Result<(), Refusal> {
    let spki = &csr.certification_request_info.subject_pki;
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(c) => Err(Refusal::UnsupportedKey(format!("elliptic curve {c}"))),
            None => Err(Refusal::UnsupportedKey("elliptic curve not named".into())),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(());
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = spki
            .parsed()
            .map(|k| k.key_size())
            .map_err(|e| Refusal::BadCsr(format!("RSA key: {e}")))?;
        return if bits < MIN_RSA_BITS {
            Err(Refusal::WeakKey(format!(
                "RSA of {bits} bits (at least {MIN_RSA_BITS})"
            )))
        } else {
            Ok(())
        };
    }
    Err(Refusal::UnsupportedKey(format!("key algorithm {alg}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn csr(sans: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        for s in sans {
            params
                .subject_alt_names
                .push(SanType::URI((*s).try_into().unwrap()));
        }
        edit(&mut params);
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_csr_may_ask_for_one_host_and_one_site_and_nothing_else() {
        let ok = check(&csr(
            &["urn:campanile:host:pc-01", "urn:campanile:site:m"],
            |_| {},
        ))
        .unwrap();
        assert_eq!(ok.host_id.as_deref(), Some("pc-01"));
        assert_eq!(ok.site.as_deref(), Some("m"));
        let bare = check(&csr(&[], |_| {})).unwrap();
        assert_eq!((bare.host_id, bare.site), (None, None));

        let refused = |der: Vec<u8>| check(&der).err().map(|r| r.reason_label());
        assert_eq!(
            refused(csr(&["urn:campanile:host:PC 01"], |_| {})),
            Some("bad_host_id")
        );
        assert_eq!(
            refused(csr(
                &["urn:campanile:host:a", "https://evil.example"],
                |_| {}
            )),
            Some("extra_san")
        );
        assert_eq!(
            refused(csr(
                &["urn:campanile:host:a", "urn:campanile:host:b"],
                |_| {}
            )),
            Some("extra_san")
        );
        assert_eq!(
            refused(csr(&[], |p| p
                .subject_alt_names
                .push(SanType::DnsName("collector".try_into().unwrap())))),
            Some("extra_san")
        );
        assert_eq!(
            refused(include_bytes!("testdata/ca_true.csr.der").to_vec()),
            Some("ca_requested")
        );
        assert_eq!(refused(b"not a csr".to_vec()), Some("bad_csr"));
    }

    #[test]
    fn weak_and_unsupported_keys_are_refused() {
        let weak = check(include_bytes!("testdata/rsa1024.csr.der")).err();
        assert_eq!(weak.map(|r| r.reason_label()), Some("weak_key"));
        let p521 = check(include_bytes!("testdata/p521.csr.der")).err();
        assert_eq!(p521.map(|r| r.reason_label()), Some("unsupported_key"));
    }

    #[test]
    fn a_csr_whose_signature_does_not_verify_is_refused() {
        let mut der = csr(&[], |_| {});
        // The signature is the last bytes of the request.
        let n = der.len();
        der[n - 3] ^= 0x55;
        assert_eq!(check(&der).err().map(|r| r.reason_label()), Some("bad_csr"));
    }
}
